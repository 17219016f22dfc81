"""The full-scale zoo: the paper's ImageNet models through timm, open_clip and BigGAN.

    member = zoo.load("dino-vitb16", pretrained=False)   # real shapes, untrained weights

Encoders: class-supervised ResNet50, DINO ResNet50, DINO ViT-B/16, MAE ViT-B/16 (timm),
CLIP RN50 (open_clip). Generators: BigGAN-deep at 256 px (the paper's, and the default of
``zoo="full"``) and at 128 px (4x cheaper, for a free Colab GPU), see
:mod:`rosetta_lite.zoo.biggan`.

Pretrained weights are a download from the model hubs: they load where the hub is
reachable (e.g. Colab) or from a local file (``zoo.load(name, weights="file")``).
Offline, asking for them fails at once with a message that says so.
"""

from __future__ import annotations

import torch

from rosetta_lite.zoo import biggan
from rosetta_lite.zoo.hub import _offline_error, _state_dict, hub_unavailable_reason
from rosetta_lite.zoo.member import Member, Spec
from rosetta_lite.zoo.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocess

RESNET_LAYERS = [f"layer{i}" for i in range(1, 5)]
VIT_B_LAYERS = [f"blocks.{i}.mlp.act" for i in range(12)]
DINO_RESNET50_URL = "https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth"

# name: (timm architecture, timm pretrained tag or None, default layers, trained for)
TIMM_MEMBERS = {
    "resnet50": ("resnet50", "a1_in1k", RESNET_LAYERS, "ImageNet classification (class-supervised)"),
    "dino-resnet50": ("resnet50", None, RESNET_LAYERS, "DINO self-supervision (weights: DINO's release)"),
    "dino-vitb16": ("vit_base_patch16_224", "dino", VIT_B_LAYERS, "DINO self-supervision"),
    "mae-vitb16": ("vit_base_patch16_224", "mae", VIT_B_LAYERS, "masked autoencoding (MAE)"),
}


def _timm_member(name: str, pretrained: bool, seed: int, weights: str | None) -> Member:
    import timm

    arch, tag, layers, trained_for = TIMM_MEMBERS[name]
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    if weights is not None:
        model.load_state_dict(_state_dict(weights), strict=False)
    elif pretrained:
        # DINO's ResNet50 comes from its own release site, the others from the Hugging Face hub
        reason = hub_unavailable_reason("dl.fbaipublicfiles.com" if tag is None else "huggingface.co")
        if reason:
            raise _offline_error(name, reason, DINO_RESNET50_URL if tag is None else None)
        if tag is None:
            state = torch.hub.load_state_dict_from_url(DINO_RESNET50_URL, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=False)
        else:
            model = timm.create_model(f"{arch}.{tag}", pretrained=True, num_classes=0)
    cfg = model.pretrained_cfg or {}
    prep = Preprocess(size=224, mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)))
    return Member(name, "encoder", "full", model.eval(), list(layers), prep, trained_for=trained_for,
                  pretrained=pretrained or weights is not None)


def _clip_member(pretrained: bool, seed: int, weights: str | None) -> Member:
    import open_clip

    torch.manual_seed(seed)
    source = weights
    if weights is None and pretrained:
        reason = hub_unavailable_reason()
        if reason:
            raise _offline_error("clip-rn50", reason)
        source = "openai"
    model = open_clip.create_model("RN50", pretrained=source)
    return Member("clip-rn50", "encoder", "full", model.eval(), [f"visual.layer{i}" for i in range(1, 5)],
                  Preprocess(size=224, mean=CLIP_MEAN, std=CLIP_STD),
                  trained_for="matching images with captions (CLIP, OpenAI weights)",
                  pretrained=source is not None, forward=lambda m, x: m.encode_image(x))


def _spec(name: str, kind: str, trained_for: str, build) -> Spec:
    def wrapped(pretrained: bool = True, seed: int = 0, weights: str | None = None) -> Member:
        return build(name, pretrained, seed, weights)

    return Spec(name, kind, "full", trained_for, wrapped)


def _gan_spec(name: str) -> Spec:
    def wrapped(pretrained: bool = True, seed: int = 0, weights: str | None = None, **options) -> Member:
        return biggan.build(name, pretrained, seed, weights, **options)

    return Spec(name, "generator", "full", biggan.TRAINED_FOR[name], wrapped, options=("truncation", "classes"))


# the 256 px GAN comes first: it is the one zoo="full" picks (the paper's generator)
SPECS = [_gan_spec(name) for name in biggan.CONFIGS]
SPECS += [_spec(name, "encoder", spec[3], _timm_member) for name, spec in TIMM_MEMBERS.items()]
SPECS.append(_spec("clip-rn50", "encoder", "matching images with captions (CLIP, OpenAI weights)",
                   lambda name, pretrained, seed, weights: _clip_member(pretrained, seed, weights)))
