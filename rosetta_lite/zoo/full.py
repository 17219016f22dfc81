"""The full-scale zoo: the paper's ImageNet models through timm, open_clip and BigGAN.

    member = zoo.load("dino-vitb16", pretrained=False)   # real shapes, untrained weights

Encoders: class-supervised ResNet50, DINO ResNet50, DINO ViT-B/16, MAE ViT-B/16 (timm),
CLIP RN50 (open_clip): the default set of ``zoo="full"``; beside them DINO ViT-B/8
(``dino-vitb8``, a 28 x 28 token grid), mined when named. Generators: BigGAN-deep at 256 px
(the paper's, and the default of ``zoo="full"``) and at 128 px (4x cheaper, for a free
Colab GPU), see :mod:`rosetta_lite.zoo.biggan`; StyleGAN2 for LSUN cats, horses, churches,
cars and FFHQ faces (``stylegan2-cat`` ...), see :mod:`rosetta_lite.zoo.stylegan2`.

Pretrained weights are a download from the model hubs: they load where the hub is
reachable (e.g. Colab) or from a local file (``zoo.load(name, weights="file")``).
Offline, asking for them fails at once with a message that says so.
"""

from __future__ import annotations

import warnings

import torch

from rosetta_lite.zoo import biggan, stylegan2
from rosetta_lite.zoo.hub import cached_download, hub_unavailable_reason, offline_error, read_state_dict
from rosetta_lite.zoo.member import Member, Spec, ZooError
from rosetta_lite.zoo.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocess
from rosetta_lite.zoo.weights import check_finite

RESNET_LAYERS = [f"layer{i}" for i in range(1, 5)]
VIT_B_LAYERS = [f"blocks.{i}.mlp.act" for i in range(12)]
DINO_RESNET50_URL = "https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth"

# name: (timm architecture, timm pretrained tag or None, default layers, trained for)
TIMM_MEMBERS = {
    # the paper's supervised ResNet50 is torchvision's ImageNet model: timm's tv_in1k, same architecture
    "resnet50": ("resnet50", "tv_in1k", RESNET_LAYERS, "ImageNet classification (class-supervised)"),
    "dino-resnet50": ("resnet50", None, RESNET_LAYERS, "DINO self-supervision (weights: DINO's release)"),
    "dino-vitb16": ("vit_base_patch16_224", "dino", VIT_B_LAYERS, "DINO self-supervision"),
    "mae-vitb16": ("vit_base_patch16_224", "mae", VIT_B_LAYERS, "masked autoencoding (MAE)"),
    # patches of 8 px: a 28 x 28 token grid, 4x the positions of ViT-B/16 (the official code offers both)
    "dino-vitb8": ("vit_base_patch8_224", "dino", VIT_B_LAYERS, "DINO self-supervision (ViT-B/8)"),
}
#: encoders mined only when named: the default full zoo stays the paper's five
NOT_DEFAULT = ("dino-vitb8",)


def load_backbone(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a backbone's weights: refused when they fill under 95% of the model's tensors, else any gap named.

        load_backbone(timm.create_model("resnet50", num_classes=0), torch.load("r50.pth"), "r50.pth")

    Keys of a classifier head the backbone does not have (``fc.``, ``head.``) are ignored.
    """
    check_finite(state, source)
    result = model.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(("fc.", "head.", "head_drop."))]
    total = len(model.state_dict())
    if len(result.missing_keys) > 0.05 * total:
        raise ZooError(f"weights {source} do not fit {type(model).__name__}: {len(result.missing_keys)} of its "
                       f"{total} tensors are missing (e.g. {result.missing_keys[:3]}), {len(unexpected)} keys "
                       f"are unknown (e.g. {unexpected[:3]}); is it a checkpoint of another model, or are its "
                       "keys prefixed?")
    if result.missing_keys or unexpected:
        warnings.warn(f"weights {source}: {type(model).__name__} keeps its initial values for "
                      f"{result.missing_keys}; unknown keys ignored: {unexpected}", UserWarning, stacklevel=3)


def _dino_resnet50_state(name: str) -> dict[str, torch.Tensor]:
    """DINO's ResNet50 weights: from the torch hub cache when downloaded before, else from its release site."""
    cached = cached_download(DINO_RESNET50_URL)
    if cached is not None:
        return read_state_dict(str(cached))
    reason = hub_unavailable_reason("dl.fbaipublicfiles.com")
    if reason:
        raise offline_error(name, reason, DINO_RESNET50_URL)
    return torch.hub.load_state_dict_from_url(DINO_RESNET50_URL, map_location="cpu", weights_only=True)


def _timm_pretrained(name: str, tagged: str) -> torch.nn.Module:
    """A timm model with its hub weights; offline (HF_HUB_OFFLINE) from the Hugging Face cache, if it is there."""
    import timm

    reason = hub_unavailable_reason("huggingface.co")
    if reason:
        cached = _hf_cached(tagged)
        if cached is None:
            raise offline_error(name, reason + f", and {tagged} is not in the Hugging Face cache")
        return timm.create_model(tagged, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": cached})
    try:
        return timm.create_model(tagged, pretrained=True, num_classes=0)
    except Exception as error:  # noqa: BLE001 - any download failure: say what to do instead
        raise ZooError(f"{name}: loading {tagged} from the Hugging Face hub failed ({error})") from error


def _hf_cached(tagged: str) -> str | None:
    """The weights file of timm's ``tagged`` model in the Hugging Face cache, or None (never a download)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(f"timm/{tagged}", filename)
        if isinstance(path, str):
            return path
    return None


def _timm_member(name: str, pretrained: bool, seed: int, weights: str | None) -> Member:
    import timm

    arch, tag, layers, trained_for = TIMM_MEMBERS[name]
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    if weights is not None:
        load_backbone(model, read_state_dict(weights), weights)
    elif pretrained and tag is None:
        load_backbone(model, _dino_resnet50_state(name), DINO_RESNET50_URL)
    elif pretrained:
        model = _timm_pretrained(name, f"{arch}.{tag}")
    # all four were trained on ImageNet-normalised inputs; timm's default ViT config (0.5, 0.5) is another model's
    prep = Preprocess(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return Member(name, "encoder", "full", model.eval(), list(layers), prep, trained_for=trained_for,
                  pretrained=pretrained or weights is not None)


def _clip_member(pretrained: bool, seed: int, weights: str | None) -> Member:
    import open_clip

    torch.manual_seed(seed)
    source = weights
    if weights is None and pretrained:
        reason = hub_unavailable_reason()
        if reason:
            raise offline_error("clip-rn50", reason)
        source = "openai"
    model = open_clip.create_model("RN50", pretrained=source)
    return Member("clip-rn50", "encoder", "full", model.eval(), [f"visual.layer{i}" for i in range(1, 5)],
                  Preprocess(size=224, mean=CLIP_MEAN, std=CLIP_STD),
                  trained_for="matching images with captions (CLIP, OpenAI weights)",
                  pretrained=source is not None, forward=lambda m, x: m.encode_image(x))


def _spec(name: str, kind: str, trained_for: str, build) -> Spec:
    def wrapped(pretrained: bool = True, seed: int = 0, weights: str | None = None) -> Member:
        return build(name, pretrained, seed, weights)

    return Spec(name, kind, "full", trained_for, wrapped, default=name not in NOT_DEFAULT)


def _gan_spec(name: str) -> Spec:
    def wrapped(pretrained: bool = True, seed: int = 0, weights: str | None = None, **options) -> Member:
        return biggan.build(name, pretrained, seed, weights, **options)

    return Spec(name, "generator", "full", biggan.TRAINED_FOR[name], wrapped, options=biggan.GAN_OPTIONS)


def _style_spec(name: str) -> Spec:
    def wrapped(pretrained: bool = True, seed: int = 0, weights: str | None = None, **options) -> Member:
        return stylegan2.build(name, pretrained, seed, weights, **options)

    return Spec(name, "generator", "full", stylegan2.CHECKPOINTS[name].trained_for, wrapped,
                options=stylegan2.STYLE_OPTIONS)


# the 256 px GAN comes first: it is the one zoo="full" picks (the paper's generator)
SPECS = [_gan_spec(name) for name in biggan.CONFIGS]
SPECS += [_style_spec(name) for name in stylegan2.CHECKPOINTS]
SPECS += [_spec(name, "encoder", spec[3], _timm_member) for name, spec in TIMM_MEMBERS.items()]
SPECS.append(_spec("clip-rn50", "encoder", "matching images with captions (CLIP, OpenAI weights)",
                   lambda name, pretrained, seed, weights: _clip_member(pretrained, seed, weights)))
