"""Architecture of the lite GAN: a small coordinate-aware generator and its discriminator.

    from rosetta_lite.zoo.gan_arch import LiteGenerator
    g = LiteGenerator().eval()                # z_dim=64, 32 x 32 RGB output in [0, 1]
    images = g(torch.randn(8, g.z_dim))       # (8, 3, 32, 32), differentiable in z
    # units to mine: g.b4, g.b8, g.b16, g.b32 return (B, C, H, W) maps at 4, 8, 16, 32 px

The generator is DCGAN-shaped (a linear layer to a 4 x 4 map, then three 4 x 4
stride-2 transposed convolutions, each followed by batch norm and ReLU and, with
``convs_per_block=2``, by a 3 x 3 convolution, batch norm and ReLU at the new
resolution; the shipped member has one) with two coordinate channels (x, y in [-1, 1])
appended to the input of every convolution (CoordConv), so that position-dependent
structure (sky above, ground below) is easy to draw and the convolutions can spend
their capacity on edges. A 3 x 3 convolution and a sigmoid turn the 32 x 32 map into
RGB in [0, 1]; with ``object_layers=K`` a ``LayeredHead`` instead paints a background
that varies only from row to row and K one-coloured object layers under soft masks
(screened, not shipped). In eval mode batch norm uses stored
statistics (recomputed for the saved EMA weights), so ``G(z)`` is a deterministic
function of ``z`` per sample, as mining and inversion need.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from rosetta_lite.files import atomic_path
from rosetta_lite.zoo.lite_arch import normalize

__all__ = ["LiteGenerator", "LiteDiscriminator", "FeatureDiscriminator", "GENERATOR_LAYERS"]

#: names of the generator modules whose outputs are the units to mine, coarse to fine
GENERATOR_LAYERS: tuple[str, ...] = ("b4", "b8", "b16", "b32")


def _coords(n: int, size: int, device, dtype) -> torch.Tensor:
    """(n, 2, size, size) pixel-centre coordinates in [-1, 1]: channel 0 is x, 1 is y."""
    c = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size * 2 - 1
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xs, ys]).unsqueeze(0).expand(n, -1, -1, -1)


def _with_coords(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, _coords(x.shape[0], x.shape[-1], x.device, x.dtype)], 1)


class InputBlock(nn.Module):
    """z (after the mapping MLP) -> (B, C, 4, 4): linear, batch norm, ReLU."""

    def __init__(self, w_dim: int, cout: int) -> None:
        super().__init__()
        self.cout = cout
        self.fc = nn.Linear(w_dim, cout * 16, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.fc(w).view(-1, self.cout, 4, 4)))


class UpBlock(nn.Module):
    """(B, cin, r, r) -> (B, cout, 2r, 2r): coordinates appended, 4 x 4 stride-2 transposed
    convolution, batch norm, ReLU; with ``convs=2`` a 3 x 3 convolution (coordinates
    appended), batch norm and ReLU follow at the new resolution. Its output is the map
    that mining records."""

    def __init__(self, cin: int, cout: int, convs: int = 1) -> None:
        super().__init__()
        if convs not in (1, 2):
            raise ValueError(f"convs per block must be 1 or 2, got {convs}")
        self.conv = nn.ConvTranspose2d(cin + 2, cout, 4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.refine = nn.Sequential(nn.Conv2d(cout + 2, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                    nn.ReLU()) if convs == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(_with_coords(x))))
        return x if self.refine is None else self.refine(_with_coords(x))


def _mean_colour(rgb_bchw: torch.Tensor, weight_b1hw: torch.Tensor) -> torch.Tensor:
    """(B, 3, 1, 1): the mean of ``rgb_bchw`` weighted by ``weight_b1hw`` (a layer's mask)."""
    weight = weight_b1hw + 1e-4  # an empty mask still gets a colour (and a gradient)
    return (rgb_bchw * weight).sum((2, 3), keepdim=True) / weight.sum((2, 3), keepdim=True)


class LayeredHead(nn.Module):
    """32 px features -> RGB in [0, 1] painted as layers: a background that varies only
    from row to row (the mean over each row of a colour map: skies and grounds, no blobs),
    then ``layers`` objects in order, each a mask filled with one colour (the mean of the
    layer's own colour map under its mask), so that an object cannot be multi-coloured.
    Masks are soft (a sigmoid): masks of 0 or 1 with straight-through gradients drew
    ragged fragments.
    Layered generators: LR-GAN (Yang et al. 2017).

        head = LayeredHead(32, layers=3); rgb = head(features_b32hw)   # (B, 3, 32, 32)
    """

    def __init__(self, cin: int, layers: int) -> None:
        super().__init__()
        self.layers = layers
        self.conv = nn.Conv2d(cin + 2, 3 + 4 * layers, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(_with_coords(x))
        image = torch.sigmoid(out[:, :3]).mean(3, keepdim=True)  # (B, 3, H, 1), broadcast along rows
        for j in range(self.layers):
            alpha = torch.sigmoid(out[:, 3 + 4 * j:4 + 4 * j])
            colour = _mean_colour(torch.sigmoid(out[:, 4 + 4 * j:7 + 4 * j]), alpha)
            image = image * (1 - alpha) + colour * alpha
        return image


class LiteGenerator(nn.Module):
    """Unconditional generator z -> 32 x 32 RGB image in [0, 1].

        g = LiteGenerator(z_dim=64, w_dim=128, channels=(256, 128, 64, 32)).eval()
        x = g(torch.randn(4, 64))              # (4, 3, 32, 32)

    Modules ``b4, b8, b16, b32`` output (B, channels[i], r, r) maps, r = 4, 8, 16, 32.
    ``mapping`` is a small MLP z -> w (w_dim) before the first block.
    """

    def __init__(self, z_dim: int = 64, w_dim: int = 128, channels: tuple[int, ...] = (256, 128, 64, 32),
                 mapping_layers: int = 1, convs_per_block: int = 1, object_layers: int = 0) -> None:
        super().__init__()
        if len(channels) != len(GENERATOR_LAYERS):
            raise ValueError(f"channels needs one width per layer {GENERATOR_LAYERS}, got {channels}")
        self.z_dim, self.w_dim, self.channels = z_dim, w_dim, tuple(channels)
        self.config = dict(z_dim=z_dim, w_dim=w_dim, channels=list(channels), mapping_layers=mapping_layers)
        if convs_per_block != 1:  # recorded only when set, so earlier weight files keep their config
            self.config["convs_per_block"] = convs_per_block
        if not 0 <= object_layers <= 8:
            raise ValueError(f"object_layers must be from 0 (a plain RGB head) to 8, got {object_layers}")
        if object_layers:
            self.config["object_layers"] = object_layers
        layers, d = [], z_dim
        for _ in range(mapping_layers):
            layers += [nn.Linear(d, w_dim), nn.LeakyReLU(0.2)]
            d = w_dim
        self.mapping = nn.Sequential(*layers)
        self.b4 = InputBlock(d, channels[0])
        self.b8 = UpBlock(channels[0], channels[1], convs_per_block)
        self.b16 = UpBlock(channels[1], channels[2], convs_per_block)
        self.b32 = UpBlock(channels[2], channels[3], convs_per_block)
        self.to_rgb = (LayeredHead(channels[3], object_layers) if object_layers
                       else nn.Conv2d(channels[3] + 2, 3, 3, padding=1))

    @property
    def resolution(self) -> int:
        return 32

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.b32(self.b16(self.b8(self.b4(self.mapping(z)))))
        if isinstance(self.to_rgb, LayeredHead):
            return self.to_rgb(x)
        return torch.sigmoid(self.to_rgb(_with_coords(x)))


class LiteDiscriminator(nn.Module):
    """Spectrally normalised CNN discriminator for 32 x 32 images in [0, 1] (coordinate
    channels appended): a 3 x 3 conv at 32 px, then 4 x 4 stride-2 convs to 4 x 4.

        d = LiteDiscriminator(); logits = d(images)   # (B,)
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        convs = [spectral_norm(nn.Conv2d(3 + 2, channels[0], 3, padding=1))]
        for a, b in zip(channels[:-1], channels[1:]):
            convs.append(spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)))
        self.convs = nn.ModuleList(convs)
        self.fc = spectral_norm(nn.Linear(channels[-1] * 16, 1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = _with_coords(img * 2 - 1)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
        return self.fc(x.flatten(1)).squeeze(1)


class FeatureDiscriminator(nn.Module):
    """A discriminator on a frozen encoder's features (vision-aided GAN, Kumari et al. 2022).

        fd = FeatureDiscriminator(clip_model.visual, "lite-clip"); logits = fd(images)  # list of (B, N)

    The encoder (a ModifiedResNet image tower, e.g. ``lite-clip``'s) stays frozen in eval
    mode; small trainable spectrally normalised heads read its 16, 8 and 4 px maps (one
    logit per position) and its pooled embedding. It knows shapes before training starts;
    switched on from the first step it lets the generator collapse onto one image that
    fools the frozen tower, so the recipe adds it after 500 steps, with weight 0.1.
    """

    def __init__(self, visual: nn.Module, member: str, layers: tuple[str, ...] = ("layer2", "layer3", "layer4"),
                 hidden: int = 64) -> None:
        super().__init__()
        self.member, self.layers = member, tuple(layers)
        self.visual = visual.eval().requires_grad_(False)
        with torch.no_grad():
            maps, embedding = self.features(torch.zeros(1, 3, 32, 32))
        self.heads = nn.ModuleList(
            nn.Sequential(spectral_norm(nn.Conv2d(m.shape[1], hidden, 3, padding=1)), nn.LeakyReLU(0.1),
                          spectral_norm(nn.Conv2d(hidden, 1, 1))) for m in maps)
        self.embedding_head = nn.Sequential(spectral_norm(nn.Linear(embedding.shape[1], hidden)),
                                            nn.LeakyReLU(0.1), spectral_norm(nn.Linear(hidden, 1)))

    def train(self, mode: bool = True) -> "FeatureDiscriminator":
        super().train(mode)
        self.visual.eval()  # frozen: batch norm keeps the encoder's own statistics
        return self

    def features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.visual.stem(normalize(images, self.member))
        maps = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self.visual, name)(x)
            if name in self.layers:
                maps.append(x)
        return maps, self.visual.attnpool(x)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps, embedding = self.features(images)
        logits = [head(m).flatten(1) for head, m in zip(self.heads, maps)]
        return logits + [self.embedding_head(embedding)]


def save_generator(g: LiteGenerator, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``g``'s weights (float32) as safetensors with its constructor config in the
    metadata; atomic (tmp file then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"architecture": "LiteGenerator", "config": json.dumps(g.config)}
    if extra:
        meta.update({k: json.dumps(v) for k, v in extra.items()})
    tensors = {k: v.detach().float().contiguous().clone() for k, v in g.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return path


def load_generator(path: str | os.PathLike) -> LiteGenerator:
    """Rebuild a ``LiteGenerator`` from a safetensors file written by ``save_generator``;
    returned in eval mode with gradients off for its parameters."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("architecture") != "LiteGenerator" or "config" not in meta:
        raise ValueError(f"{path} is not a LiteGenerator weights file (metadata: {sorted(meta)})")
    g = LiteGenerator(**json.loads(meta["config"]))
    g.load_state_dict(load_file(str(path)))
    g.eval().requires_grad_(False)
    return g
