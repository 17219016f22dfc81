"""StyleGAN2 (config-f): the paper's LSUN cat, horse and car generators, with church and FFHQ.

    gan = zoo.load("stylegan2-cat", pretrained=False)   # real shapes, untrained weights
    z = gan.sample_latents(4, seed=0)                   # (4, 512): the normal latents z
    images = gan.generate(z)                            # (4, 3, 256, 256) in [0, 1]
    w = gan.search_latents(z)                           # (4, 14 * 512): W+, what inversion optimises

The generator is written here in plain PyTorch (no custom CUDA ops: the fused leaky ReLU
and ``upfirdn2d`` are a few native operations) with the module and parameter names of
rosinality's port, ``stylegan2-pytorch/model.py`` (github.com/rosinality/stylegan2-pytorch,
the code the paper's official repository vendors as ``stylegan2/model.py``), so that the
published checkpoints, ``{"g_ema": state_dict, "latent_avg": ...}`` converted from
NVIDIA's TensorFlow release, load into it key for key: ``style.{1..8}`` (the mapping
network after a PixelNorm), ``input.input``, ``conv1`` and ``to_rgb1`` at 4 x 4, then per
resolution two style convolutions ``convs.{i}`` (each ``conv.weight``,
``conv.modulation``, ``noise.weight``, ``activate.bias``) and a ``to_rgbs.{i}``, and the
fixed noise maps ``noises.noise_{i}``. (rosinality's empty ``upsamples`` list holds no
tensors and is left out.) Loading is strict: every tensor of the file must fill one of
the model's, with its shape; anything else is refused with the keys named. Files are
read with ``weights_only=True`` (or safetensors): nothing pickled is ever executed.

Latents. ``sample_latents`` draws z (a normal, or the official code's normal truncated to
[-1, 1] with ``noise_bound=1``); the mapping network gives w, truncated towards the mean
w of 4,096 seeded latents (rosinality's ``mean_latent(4096)``) by ``truncation``, and
repeated once per style input: W+ (``n_latent`` vectors, 14 at 256 px). Inversion and
editing optimise W+, as the StyleGAN projectors do: :meth:`StyleGenerator.search_latents`
gives the W+ of sampled latents as one row each, measured from the mean w in units of w's
spread per coordinate (so that sampled rows have a mean square of ``truncation**2`` on
average, the scale the inversion's regulariser expects of a latent); ``generate`` takes z or
those rows. The noise inputs are the model's fixed ``noises`` buffers (the checkpoint's
own, seeded for untrained weights), so generation is deterministic and differentiable.

The official Rosetta code (``match_utils``) mines these generators with z from a normal
truncated to [-1, 1], the activations of every ``convs.{i}`` style convolution and the
output of every ``to_rgbs.{i}`` convolution (``layers="official"``; the 4 x 4 ``conv1``
and ``to_rgb1`` fall outside its name filter: ``layers="all"`` adds them). It calls
``gan([z], 0.7, mean_latent)``, meaning truncation 0.7, but in that signature 0.7 is
``return_latents`` and the truncation stays 1, with fresh random noise on every call:
:data:`OFFICIAL` is what the runs did; the default truncation here is the 0.7 they meant
(also rosinality's and NVIDIA's usual value). Its FFHQ model is built at 512 px from the
1024 px checkpoint (``strict=False`` drops the last block); here FFHQ is the checkpoint's
own 1024 px generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rosetta_lite.zoo.biggan import truncated_noise
from rosetta_lite.zoo.hub import cached_download, hub_unavailable_reason, offline_error, read_state_dict
from rosetta_lite.zoo.member import Member, ZooError, member_options
from rosetta_lite.zoo.weights import check_finite, sha256

#: which layers are mined: the official code's (every style convolution's activation but the 4 x 4 one,
#: every to-RGB convolution but the 4 x 4 one), or those with the 4 x 4 ones
LAYER_SETS = ("official", "all")
DEFAULT_TRUNCATION = 0.7
#: what the official runs amounted to (see the module's docstring): no truncation, z within [-1, 1]
OFFICIAL = {"truncation": 1.0, "noise_bound": 1.0, "layers": "official"}
#: latents whose mapped mean is the truncation's centre and whose spread scales W+ (rosinality: 4096)
MEAN_LATENTS = 4096
_STATISTICS_SEED = 20230607  # fixed: the same weights always give the same mean w
#: rosinality's conversions of NVIDIA's config-f checkpoints, as published with their SHA-256
WEIGHTS_URL = "https://github.com/clibdev/stylegan2-pytorch/releases/latest/download/{file}"


@dataclass(frozen=True)
class StyleGAN2Config:
    """The shape of a StyleGAN2 generator (rosinality's ``Generator(size, style_dim, n_mlp, channel_multiplier)``).

        StyleGAN2Config(size=32, style_dim=16, n_mlp=2, max_channels=16)   # a tiny one for tests
    """

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2  # config-f: 2
    max_channels: int = 512  # rosinality's table caps every resolution at 512; smaller only for tests
    lr_mlp: float = 0.01

    def channels(self, resolution: int) -> int:
        """Channels at ``resolution`` px: rosinality's table (512 up to 32 px, then halving), capped."""
        return min(self.max_channels, 16384 // resolution * self.channel_multiplier)


@dataclass(frozen=True)
class Checkpoint:
    """A published generator: its shape, file name, SHA-256 and what it was trained for."""

    config: StyleGAN2Config
    file: str
    sha256: str
    trained_for: str


# name: (what it generates, side in px, SHA-256 of the published ``<name>-config-f.pt``)
_RELEASES = {
    "stylegan2-cat": ("LSUN cats", 256, "af199066967dcaa3bdf51e396084970c447799f593fcfb93d9c2c655475e39bb"),
    "stylegan2-horse": ("LSUN horses", 256, "c4bfc90b2e855dad434dafc02e74a4906b2f07fecd7006159147d45dc7c42fd4"),
    "stylegan2-church": ("LSUN churches", 256, "59fd45db3f66219f947aa5273ea981fd543e899d00e6b8690b1be9c66d4a1a36"),
    "stylegan2-car": ("LSUN cars", 512, "7dcf0b90bf687a75293ba8df8d923be34ee134b183029d9f426634b079f85c9d"),
    "stylegan2-ffhq": ("faces (FFHQ)", 1024, "37dd0b9722af1788f016f1472416cfdbf6628777ddd8345d57cca15efdac4e89"),
}
CHECKPOINTS: dict[str, Checkpoint] = {
    name: Checkpoint(StyleGAN2Config(size), f"{name}-config-f.pt", digest,
                     f"generating {domain} at {size} px (adversarial; StyleGAN2 config-f)")
    for name, (domain, size, digest) in _RELEASES.items()
}


# ---- the native operations that replace rosinality's CUDA kernels ----

def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2, gain: float = 2 ** 0.5) -> torch.Tensor:
    """Leaky ReLU of ``x + bias`` (bias per channel, dim 1) times ``gain``: StyleGAN2's activation.

        fused_leaky_relu(torch.randn(2, 8, 4, 4), torch.zeros(8))
    """
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return F.leaky_relu(x + bias.view(shape), slope) * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (both axes alike), and filter each channel with ``kernel`` (a true convolution).

        upfirdn2d(torch.ones(1, 3, 4, 4), make_kernel([1, 3, 3, 1]) * 4, up=2, pad=(2, 1))   # (1, 3, 8, 8)
    """
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    taps = torch.flip(kernel, [0, 1]).to(x.dtype)
    return F.conv2d(x, taps.expand(c, 1, *taps.shape), groups=c)


def make_kernel(taps: list[int]) -> torch.Tensor:
    """The normalised 2-D blur kernel (outer product) of 1-D ``taps``.

        make_kernel([1, 3, 3, 1])   # (4, 4), summing to 1
    """
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


# ---- rosinality's modules, by name and tensor ----

class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """A linear layer with equalised learning rate (weights scaled at run time), optionally the fused activation."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(in_dim), lr_mul, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class FusedLeakyReLU(nn.Module):
    """The activation of a style convolution: bias, leaky ReLU, gain; recorded as ``convs.{i}.activate``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    def __init__(self, taps: list[int], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """The skip connection's 2x upsampling of the RGB image: zero insertion, then the blur kernel."""

    def __init__(self, taps: list[int], factor: int = 2) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * factor ** 2)
        p = len(taps) - factor
        self.factor, self.pad = factor, ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """A convolution whose input channels are scaled by a style, then (optionally) demodulated.

    Computed as NVIDIA's non-fused form: the input is modulated and convolved with the
    shared weight, and each output channel scaled by its demodulation coefficient; the
    same result as rosinality's grouped convolution with per-sample weights.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, taps: tuple[int, ...] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            p = (len(taps) - 2) - (kernel_size - 1)
            self.blur = Blur(list(taps), pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding, self.upsample, self.demodulate = kernel_size // 2, upsample, demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.modulation(style)  # (B, in)
        weight = self.weight[0] * self.scale  # (out, in, k, k)
        x = x * s[:, :, None, None]
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum over (in, k, k) of (weight * s)^2 per sample and output channel, without the per-sample weights
            coefficients = torch.rsqrt(s.square() @ weight.square().sum((2, 3)).t() + 1e-8)
            out = out * coefficients[:, :, None, None]
        return out


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample([1, 3, 3, 1])
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class StyleGAN2(nn.Module):
    """rosinality's ``Generator``, by module names and tensors; ``forward(latents)`` gives images in about [-1, 1].

        model = StyleGAN2(StyleGAN2Config(256)); images = model(torch.randn(2, 512), truncation=0.7)

    ``latents`` are z (B, style_dim) or standardised W+ rows (B, n_latent * style_dim), see
    :meth:`w_plus`; one tensor in, so that ``capture.list_layers(model, z)`` lists its layers.
    """

    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        if config.size < 8 or config.size & (config.size - 1):
            raise ValueError(f"a StyleGAN2 generates a power of two of at least 8 px, got {config.size}")
        self.config, self.style_dim = config, config.style_dim
        self.log_size = int(math.log2(config.size))
        self.num_layers = (self.log_size - 2) * 2 + 1  # style convolutions, each with a noise map
        self.n_latent = self.log_size * 2 - 2  # style inputs: W+ holds one w per input
        mapping = [EqualLinear(config.style_dim, config.style_dim, lr_mul=config.lr_mlp, activation=True)
                   for _ in range(config.n_mlp)]
        self.style = nn.Sequential(PixelNorm(), *mapping)
        first = config.channels(4)
        self.input = ConstantInput(first)
        self.conv1 = StyledConv(first, first, config.style_dim)
        self.to_rgb1 = ToRGB(first, config.style_dim, upsample=False)
        self.convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        for index in range(self.num_layers):
            side = 2 ** ((index + 5) // 2)
            self.noises.register_buffer(f"noise_{index}", torch.randn(1, 1, side, side))
        in_channel = first
        for level in range(3, self.log_size + 1):
            out_channel = config.channels(2 ** level)
            self.convs.append(StyledConv(in_channel, out_channel, config.style_dim, upsample=True))
            self.convs.append(StyledConv(out_channel, out_channel, config.style_dim))
            self.to_rgbs.append(ToRGB(out_channel, config.style_dim))
            in_channel = out_channel
        # W's mean (the truncation's centre) and spread (W+'s unit), from the weights: never part of a checkpoint
        self.register_buffer("w_mean", torch.zeros(config.style_dim), persistent=False)
        self.register_buffer("w_std", torch.ones(config.style_dim), persistent=False)

    @torch.no_grad()
    def settle_statistics(self, count: int = MEAN_LATENTS) -> None:
        """Set W's mean and spread from ``count`` seeded latents (call after loading weights)."""
        z = torch.randn(count, self.style_dim, generator=torch.Generator().manual_seed(_STATISTICS_SEED))
        w = self.style(z.to(self.w_mean.device))
        self.w_mean.copy_(w.mean(0))
        self.w_std.copy_(w.std(0).clamp_min(1e-6))

    def w_plus(self, latents: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """W+ (B, n_latent, style_dim) of z (mapped, truncated, repeated) or of standardised W+ rows (as they are)."""
        if latents.dim() == 2 and latents.shape[1] == self.style_dim:
            w = self.style(latents)
            w = self.w_mean + truncation * (w - self.w_mean)
            return w.unsqueeze(1).expand(-1, self.n_latent, -1)
        if latents.dim() == 2 and latents.shape[1] == self.n_latent * self.style_dim:
            return self.w_mean + self.w_std * latents.view(-1, self.n_latent, self.style_dim)
        raise ValueError(f"StyleGAN2 latents are z (B, {self.style_dim}) or W+ rows (B, {self.n_latent} x "
                         f"{self.style_dim} = {self.n_latent * self.style_dim}), got {tuple(latents.shape)}")

    def standardised(self, w_plus: torch.Tensor) -> torch.Tensor:
        """W+ (B, n_latent, style_dim) as rows (B, n_latent * style_dim) in units of W's spread from its mean."""
        return ((w_plus - self.w_mean) / self.w_std).flatten(1)

    def synthesis(self, w_plus: torch.Tensor) -> torch.Tensor:
        """The image of W+ (B, n_latent, style_dim), with the fixed noise maps."""
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        out = self.conv1(self.input(w_plus.shape[0]), w_plus[:, 0], noise[0])
        skip = self.to_rgb1(out, w_plus[:, 1])
        index = 1
        for up, conv, noise_up, noise_conv, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2],
                                                          noise[2::2], self.to_rgbs):
            out = conv(up(out, w_plus[:, index], noise_up), w_plus[:, index + 1], noise_conv)
            skip = to_rgb(out, w_plus[:, index + 2], skip)
            index += 2
        return skip

    def forward(self, latents: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.w_plus(latents, truncation))


# ---- the member ----

@dataclass
class StyleGenerator(Member):
    """A StyleGAN2 member: samples z, generates from z or W+, and offers W+ to inversion and editing.

        gan = zoo.load("stylegan2-cat", pretrained=False)
        w = gan.search_latents(gan.sample_latents(2, seed=0)); images = gan.generate(w)   # as from z

    ``truncation`` in (0, 1] pulls w towards W's mean when z is mapped; ``noise_bound``
    (None: a plain normal) truncates z's normal to [-noise_bound, noise_bound].
    """

    truncation: float = DEFAULT_TRUNCATION
    noise_bound: float | None = None

    def sample_latents(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` seeded latents z (n, style_dim), on the member's device.

            z = gan.sample_latents(8, seed=0)
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        generator = torch.Generator().manual_seed(seed)
        if self.noise_bound is None:
            z = torch.randn(n, self.z_dim, generator=generator)
        else:
            z = truncated_noise(n, 1.0, generator, self.z_dim, float(self.noise_bound))
        return z.to(self.device)

    def generate(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 3, R, R), from z (B, style_dim) or W+ rows; differentiable in either."""
        # the synthesis ends in RGB about [-1, 1]: to the zoo's image convention
        return (self.model(latents, self._checked_truncation()) + 1) / 2

    def search_latents(self, z: torch.Tensor) -> torch.Tensor:
        """W+ rows (B, n_latent * style_dim) of latents z, truncated; W+ rows come back as they are.

            w = gan.search_latents(gan.sample_latents(4, seed=0))   # what invert optimises
        """
        z = z.to(self.device)
        if z.dim() == 2 and z.shape[1] == self.model.n_latent * self.model.style_dim:
            return z
        with torch.no_grad():
            return self.model.standardised(self.model.w_plus(z, self._checked_truncation()))

    def w_plus(self, latents: torch.Tensor) -> torch.Tensor:
        """W+ itself, (B, n_latent, style_dim), of z or W+ rows: the w fed to each style input.

            gan.w_plus(result.z)   # the W+ an inversion found; gan.w_plus(z)[:, 0] is W

        The W of z is truncated with the member's ``truncation``.
        """
        return self.model.w_plus(latents, self._checked_truncation())

    def _checked_truncation(self) -> float:
        truncation = float(self.truncation)
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1] (1: none), got {self.truncation}")
        return truncation


def style_layers(model: nn.Module, which: str = "official") -> list[str]:
    """The layers to mine: the official code's name filter, or with the 4 x 4 stage too (``"all"``).

        style_layers(gan.model)   # ['convs.0.activate', ..., 'convs.11.activate', 'to_rgbs.0.conv', ...]
    """
    if which not in LAYER_SETS:
        raise ValueError(f"layers must be one of {list(LAYER_SETS)}, got {which!r}")
    chosen = []
    for name, _ in model.named_modules():
        official = (name.startswith("convs.") and name.endswith(".activate")) or \
                   (name.startswith("to_rgbs.") and name.endswith(".conv"))
        if official or (which == "all" and name in ("conv1.activate", "to_rgb1.conv")):
            chosen.append(name)
    return chosen


# ---- weights: safe and strict ----

def checkpoint_state(path: str) -> dict[str, torch.Tensor]:
    """The generator's tensors of a checkpoint file: its ``g_ema`` entry, or the file itself if it is one state dict.

        state = checkpoint_state("stylegan2-cat-config-f.pt")   # {"style.1.weight": ..., ...}

    Read with ``weights_only=True`` (or as safetensors): a file holding other objects is refused unread.
    """
    raw = read_state_dict(path)
    if isinstance(raw.get("g_ema"), dict):
        return raw["g_ema"]
    if raw and all(torch.is_tensor(value) for value in raw.values()):
        return raw
    raise ZooError(f"weights file {path!r} is not a StyleGAN2 checkpoint in rosinality's layout: it has no 'g_ema' "
                   f"state dict (its entries: {sorted(raw)[:8]})")


def load_strictly(model: StyleGAN2, state: dict[str, torch.Tensor], source: str, name: str) -> None:
    """Fill every tensor of ``model`` from ``state``, or raise a ZooError naming the keys or shapes that differ.

        load_strictly(StyleGAN2(StyleGAN2Config(256)), checkpoint_state(path), path, "stylegan2-cat")
    """
    check_finite(state, source)
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    if missing or unexpected:
        raise ZooError(f"weights {source!r} do not fit {name} ({model.config.size} px): {len(missing)} tensors "
                       f"missing {_some(missing)}, {len(unexpected)} unexpected {_some(unexpected)}"
                       f"{_size_hint(state, model.config.size)}")
    wrong = [(key, tuple(state[key].shape), tuple(value.shape)) for key, value in own.items()
             if tuple(state[key].shape) != tuple(value.shape)]
    if wrong:
        key, found, expected = wrong[0]
        raise ZooError(f"weights {source!r} do not fit {name}: {len(wrong)} tensors have another shape, e.g. "
                       f"{key!r} is {found} in the file and {expected} in the model (another channel_multiplier "
                       "or style size?)")
    model.load_state_dict(state, strict=True)


def _some(keys: list[str], shown: int = 4) -> str:
    return "[]" if not keys else str(keys[:shown])[:-1] + (f", ... {len(keys) - shown} more]" if len(keys) > shown
                                                         else "]")


def _size_hint(state: dict[str, torch.Tensor], size: int) -> str:
    """Which resolution the file's generator has, when it has another one (read from its to_rgbs)."""
    stages = {key.split(".")[1] for key in state if key.startswith("to_rgbs.")}
    if not stages or "to_rgb1.conv.weight" not in state:
        return "; is it a StyleGAN2 generator's state dict in rosinality's layout?"
    found = 2 ** (len(stages) + 2)
    return f"; the file is a {found} px generator" if found != size else ""


def _pretrained_state(name: str, weights: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The generator's checkpoint (``weights``, the download cache, or the published address) and where it came from."""
    if weights is not None:
        return checkpoint_state(weights), weights
    checkpoint = CHECKPOINTS[name]
    url = WEIGHTS_URL.format(file=checkpoint.file)
    cached = cached_download(url, checkpoint.file)
    if cached is not None:  # downloaded before: no network needed
        return checkpoint_state(str(cached)), str(cached)
    reason = hub_unavailable_reason("github.com")
    if reason:
        raise offline_error(name, reason, url)
    return checkpoint_state(str(_download(name, url, checkpoint))), url


def _download(name: str, url: str, checkpoint: Checkpoint) -> Path:
    """The published file, saved where :func:`cached_download` finds it, after its SHA-256 is checked."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / checkpoint.file
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=True)
    except Exception as error:  # any network or storage failure: say what to do instead
        raise ZooError(f"{name}: downloading {url} failed ({error}). Download it by hand and pass "
                       f"zoo.load({name!r}, weights='path/to/{checkpoint.file}')") from error
    digest = sha256(target)
    if digest != checkpoint.sha256:
        target.unlink()
        raise ZooError(f"{name}: the file at {url} has SHA-256 {digest}, not the published {checkpoint.sha256}; "
                       "it was removed. Check the release, or pass weights= a file you trust")
    return target


# ---- options and building ----

@dataclass(frozen=True)
class StyleOptions:
    """The settings of a StyleGAN2 member (``zoo.load``'s options): how it samples and which layers are mined.

        build("stylegan2-cat", pretrained=False, options=StyleOptions(**OFFICIAL))
    """

    truncation: float = DEFAULT_TRUNCATION  # in (0, 1]: w pulled towards W's mean; the official runs: 1
    noise_bound: float | None = None  # z's normal truncated to [-bound, bound]; None: none; the official code: 1
    layers: str = "official"  # one of LAYER_SETS

    def check(self) -> None:
        """Raise a ValueError naming the setting that is out of range and what is allowed."""
        if isinstance(self.truncation, bool) or not isinstance(self.truncation, (int, float)) \
                or not 0 < self.truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1] (1: none; the usual StyleGAN2 value 0.7), "
                             f"got {self.truncation!r}")
        if self.noise_bound is not None and (isinstance(self.noise_bound, bool) or not isinstance(
                self.noise_bound, (int, float)) or not 0 < self.noise_bound <= 10):
            raise ValueError(f"noise_bound must be None (a plain normal) or a number in (0, 10] (the official "
                             f"code: 1), got {self.noise_bound!r}")
        if self.layers not in LAYER_SETS:
            raise ValueError(f"layers must be one of {list(LAYER_SETS)} (the official code's style convolutions "
                             f"and to-RGB convolutions, or with the 4 x 4 ones), got {self.layers!r}")


#: the option names ``zoo.load`` accepts for a StyleGAN2 member
STYLE_OPTIONS = tuple(f.name for f in fields(StyleOptions))


def build(name: str, pretrained: bool = True, seed: int = 0, weights: str | None = None,
          options: StyleOptions | None = None, config: StyleGAN2Config | None = None,
          **changes: Any) -> StyleGenerator:
    """Build a StyleGAN2 member in eval mode; ``pretrained=False`` gives seeded untrained weights.

        gan = build("stylegan2-cat", pretrained=False, seed=1, truncation=0.5)

    ``changes`` named like a field of :class:`StyleOptions` apply to ``options``; ``config``
    (default: the checkpoint's) builds another shape under the same name, e.g. a tiny one.
    """
    if name not in CHECKPOINTS:
        raise ZooError(f"unknown StyleGAN2 member {name!r}; known: {list(CHECKPOINTS)}")
    options = member_options(name, options or StyleOptions(), changes)
    # fetch (or fail to fetch) the weights before spending seconds on building the model
    state, source = _pretrained_state(name, weights) if pretrained or weights is not None else (None, "")
    torch.manual_seed(seed)
    model = StyleGAN2(config or CHECKPOINTS[name].config)
    if state is not None:
        load_strictly(model, state, source, name)
    model.settle_statistics()
    model.eval()
    return StyleGenerator(name, "generator", "full", model, style_layers(model, options.layers),
                          trained_for=CHECKPOINTS[name].trained_for, pretrained=state is not None,
                          z_dim=model.style_dim, truncation=float(options.truncation),
                          noise_bound=None if options.noise_bound is None else float(options.noise_bound))
