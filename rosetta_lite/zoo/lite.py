"""The lite zoo: two generators and five encoders trained by the project on the Shapes World.

    member = zoo.load("lite-vit-dino"); model = generator_model("lite-renderer", "runs/zoo/lite-renderer.safetensors")
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from rosetta_lite.world import world_settings
from rosetta_lite.zoo import lite_arch
from rosetta_lite.zoo.gan_arch import GENERATOR_LAYERS, LiteGenerator, load_generator
from rosetta_lite.zoo.member import Member, Spec, ZooError
from rosetta_lite.zoo.preprocess import Preprocess
from rosetta_lite.zoo.renderer_arch import RENDERER_LAYERS, SceneRenderer, latent_fills
from rosetta_lite.zoo.weights import check_finite, entry, retrain_command, verified_file, verified_state_dict

TRAINED_FOR = {
    "lite-renderer": ("drawing a Shapes World scene from its description (a learned renderer, trained by "
                      "reconstruction with the slots' masks; its latent is the world's scene description)"),
    "lite-gan": ("generating Shapes World scenes (adversarial; coordinate-conv DCGAN, hinge loss, "
                 "plus a discriminator on lite-clip's frozen features)"),
    "lite-resnet-sup": "shape classification with labels (paper: class-supervised ResNet50)",
    "lite-resnet-dino": "self-supervised, no labels (paper: DINO ResNet50)",
    "lite-vit-dino": "self-supervised, no labels (paper: DINO ViT)",
    "lite-vit-mae": "masked-patch pixel reconstruction (paper: MAE ViT)",
    "lite-clip": "matching images with captions, contrastive (paper: CLIP ResNet50)",
}


def _clip_images(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.encode_image(x)


GENERATORS = ("lite-renderer", "lite-gan")
_LAYERS = {"lite-renderer": RENDERER_LAYERS, "lite-gan": GENERATOR_LAYERS}


def generator_model(name: str, path: str | os.PathLike | None = None) -> torch.nn.Module:
    """A lite generator's network from a weights file (the shipped one, checksum verified, by default).

        g = generator_model("lite-gan"); images = g(torch.randn(4, g.z_dim))
    """
    if name not in GENERATORS:
        raise ZooError(f"{name!r} is not a lite generator; they are {list(GENERATORS)}")
    path = verified_file(name) if path is None else path
    if name == "lite-gan":
        return load_generator(path)  # its constructor config is in the file
    state = load_file(str(path))
    check_finite(state, str(path))
    model = SceneRenderer(fills=latent_fills(state["reader.head.3.weight"].shape[0]))  # its latent's width says
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def _state_from(weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A candidate's weights file (a training run's output, not checksummed in the manifest)."""
    if not Path(weights).is_file():
        raise ZooError(f"no weights file {str(weights)!r}; a lite member's candidate weights are the "
                       "<member>.safetensors a train run writes")
    return load_file(str(weights))


def _build_generator(name: str, pretrained: bool, seed: int, weights: str | None = None,
                     world: str = "plain") -> Member:
    info = entry(name) if pretrained and weights is None else {}
    if world != "plain" and (name != "lite-renderer" or pretrained):
        raise ZooError(f"world= builds an untrained lite-renderer that draws that world (pretrained=False); "
                       f"{name} (pretrained={pretrained}) takes none")
    torch.manual_seed(seed)
    if weights is not None:
        _state_from(weights)  # a clear error for a missing file
        model = generator_model(name, weights)
    elif pretrained:
        model = generator_model(name)
    else:
        fills = len(world_settings(world).get("fills", ("plain",)))
        model = LiteGenerator() if name == "lite-gan" else SceneRenderer(fills=fills)
    return Member(name, "generator", "lite", model.eval(), list(_LAYERS[name]),
                  trained_for=TRAINED_FOR[name], pretrained=pretrained,
                  quality=info.get("quality", {}), z_dim=model.z_dim, reader=getattr(model, "read", None))


def _build_encoder(name: str, pretrained: bool, seed: int, weights: str | None = None) -> Member:
    info = entry(name) if pretrained and weights is None else {}
    state = None
    if weights is not None:
        state = _state_from(weights)
    elif pretrained:
        state = verified_state_dict(name)
    if state is not None:
        check_finite(state, weights or f"of {name} (shipped)")
    torch.manual_seed(seed)
    model = lite_arch.build_member(name, state)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            source = weights or "the shipped file"
            raise ZooError(f"weights of {name!r} in {source} do not fit its architecture (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}); retrain with: {retrain_command(name)}")
    settings = lite_arch.PREPROCESS[name]
    return Member(name, "encoder", "lite", model.eval(), list(lite_arch.DEFAULT_LAYERS[name]),
                  Preprocess(size=settings["size"], mean=settings["mean"], std=settings["std"]),
                  trained_for=TRAINED_FOR[name], pretrained=pretrained, quality=info.get("quality", {}),
                  forward=_clip_images if name == "lite-clip" else None)


def _spec(name: str) -> Spec:
    kind = "generator" if name in GENERATORS else "encoder"

    def build(pretrained: bool = True, seed: int = 0, weights: str | None = None, **options) -> Member:
        if kind == "generator":
            return _build_generator(name, pretrained, seed, weights, **options)
        return _build_encoder(name, pretrained, seed, weights)

    # the renderer's untrained copy can be built for another world (its latent has the fills)
    return Spec(name, kind, "lite", TRAINED_FOR[name], build, options=("world",) if name == "lite-renderer" else ())


SPECS = [_spec(name) for name in TRAINED_FOR]
