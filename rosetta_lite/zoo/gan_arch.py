"""Architecture of the lite GAN: a small style-modulated generator and its discriminator.

    from rosetta_lite.zoo.gan_arch import LiteGenerator
    g = LiteGenerator()                       # z_dim=64, 32 x 32 RGB output in [0, 1]
    images = g(torch.randn(8, g.z_dim))       # (8, 3, 32, 32), differentiable in z
    # units to mine: g.b4, g.b8, g.b16, g.b32 return (B, C, H, W) maps at 4, 8, 16, 32 px

The generator follows StyleGAN-2 in miniature: a mapping network z -> w, a learned
constant 4 x 4 input, and one modulated (style-scaled, demodulated) 3 x 3 convolution
per resolution, with two coordinate channels (x, y in [-1, 1]) appended to the input
of every convolution (CoordConv) so that position-dependent structure (sky above,
ground below, object outlines) is easy to draw. RGB is summed from every resolution
("skip" generator) and squashed into [0, 1] with a sigmoid. There is no noise input:
``G(z)`` is a deterministic function of ``z``, as mining and inversion need.

Layers use equalised learning rates (weights drawn from N(0, 1) and scaled at run
time by 1/sqrt(fan_in)), as in StyleGAN.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LiteGenerator", "LiteDiscriminator", "GENERATOR_LAYERS"]

#: names of the generator modules whose outputs are the units to mine, coarse to fine
GENERATOR_LAYERS: tuple[str, ...] = ("b4", "b8", "b16", "b32")


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * math.sqrt(2.0)


def _coords(n: int, size: int, device, dtype) -> torch.Tensor:
    """(n, 2, size, size) pixel-centre coordinates in [-1, 1]: channel 0 is x, 1 is y."""
    c = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size * 2 - 1
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xs, ys]).unsqueeze(0).expand(n, -1, -1, -1)


class EqLinear(nn.Module):
    """Linear layer with equalised learning rate and an optional leaky-ReLU."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 act: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(cin), lr_mul, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return _lrelu(x) if self.act else x


class EqConv2d(nn.Module):
    """Convolution with equalised learning rate and an optional leaky-ReLU."""

    def __init__(self, cin: int, cout: int, k: int, act: bool = True, stride: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale, self.pad, self.act, self.stride = 1 / math.sqrt(cin * k * k), k // 2, act, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.pad)
        return _lrelu(x) if self.act else x


class ModConv2d(nn.Module):
    """Style-modulated convolution (StyleGAN-2), computed without grouped convolutions:
    scale input channels by the style, convolve, then demodulate output channels."""

    def __init__(self, cin: int, cout: int, w_dim: int, k: int = 3, demodulate: bool = True) -> None:
        super().__init__()
        self.affine = EqLinear(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.scale, self.pad, self.demodulate = 1 / math.sqrt(cin * k * k), k // 2, demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w)  # (B, cin)
        weight = self.weight * self.scale
        x = F.conv2d(x * s[:, :, None, None], weight, padding=self.pad)
        if self.demodulate:
            d = torch.rsqrt((s * s) @ weight.pow(2).sum((2, 3)).t() + 1e-8)  # (B, cout)
            x = x * d[:, :, None, None]
        return x


class StyleBlock(nn.Module):
    """One resolution of the synthesis network: (optional 2x nearest upsampling), then
    ``convs`` modulated 3 x 3 convolutions with coordinate channels. Its output (B, C, H, W)
    after the last activation is the map that mining records."""

    def __init__(self, cin: int, cout: int, w_dim: int, up: bool, convs: int = 1) -> None:
        super().__init__()
        self.up = up
        self.convs = nn.ModuleList(
            ModConv2d((cin if i == 0 else cout) + 2, cout, w_dim) for i in range(convs))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(cout)) for _ in range(convs))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        for conv, bias in zip(self.convs, self.biases):
            xy = _coords(x.shape[0], x.shape[-1], x.device, x.dtype)
            x = _lrelu(conv(torch.cat([x, xy], 1), w) + bias[None, :, None, None])
        return x


class ToRGB(nn.Module):
    def __init__(self, cin: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModConv2d(cin, 3, w_dim, k=1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class LiteGenerator(nn.Module):
    """Unconditional generator z -> 32 x 32 RGB image in [0, 1].

        g = LiteGenerator(z_dim=64, w_dim=128, channels=(64, 64, 32, 16))
        x = g(torch.randn(4, 64))              # (4, 3, 32, 32)
        w = g.mapping(z); x = g.synthesis(w)   # the same, through w space

    Modules ``b4, b8, b16, b32`` output (B, channels[i], r, r) maps, r = 4, 8, 16, 32.
    ``truncation_psi < 1`` pulls w towards ``w_avg`` (tracked during training).
    """

    def __init__(self, z_dim: int = 64, w_dim: int = 128, channels: tuple[int, ...] = (64, 64, 32, 16),
                 mapping_layers: int = 2, convs_per_block: int = 1, mapping_lr_mul: float = 0.01) -> None:
        super().__init__()
        if len(channels) != len(GENERATOR_LAYERS):
            raise ValueError(f"channels needs one width per layer {GENERATOR_LAYERS}, got {channels}")
        self.z_dim, self.w_dim, self.channels = z_dim, w_dim, tuple(channels)
        self.config = dict(z_dim=z_dim, w_dim=w_dim, channels=list(channels), mapping_layers=mapping_layers,
                           convs_per_block=convs_per_block, mapping_lr_mul=mapping_lr_mul)
        dims = [z_dim] + [w_dim] * mapping_layers
        self.mapping_net = nn.Sequential(*(EqLinear(a, b, lr_mul=mapping_lr_mul, act=True)
                                           for a, b in zip(dims[:-1], dims[1:])))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.const = nn.Parameter(torch.randn(channels[0], 4, 4))
        cins = (channels[0],) + tuple(channels[:-1])
        for name, cin, cout in zip(GENERATOR_LAYERS, cins, channels):
            setattr(self, name, StyleBlock(cin, cout, w_dim, up=name != "b4", convs=convs_per_block))
            setattr(self, "rgb" + name[1:], ToRGB(cout, w_dim))

    @property
    def resolution(self) -> int:
        return 32

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)  # normalise z to the sphere
        w = self.mapping_net(z)
        if truncation_psi != 1.0:
            w = self.w_avg + truncation_psi * (w - self.w_avg)
        return w

    def synthesis_logits(self, w: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid RGB, (B, 3, 32, 32): the sum of every resolution's ToRGB."""
        x = self.const.unsqueeze(0).expand(w.shape[0], -1, -1, -1)
        rgb = None
        for name in GENERATOR_LAYERS:
            x = getattr(self, name)(x, w)
            y = getattr(self, "rgb" + name[1:])(x, w)
            rgb = y if rgb is None else F.interpolate(rgb, scale_factor=2, mode="bilinear",
                                                      align_corners=False) + y
        return rgb

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.synthesis_logits(w))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi))


class MinibatchStd(nn.Module):
    """Appends the mean over channels/positions of per-group feature std (StyleGAN)."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group, b)
        if b % g:
            g = 1
        y = x.reshape(g, -1, c, h, w)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (b/g,)
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], 1)


class DBlock(nn.Module):
    """Residual discriminator block: 3 x 3 conv, then a stride-2 3 x 3 conv halving the size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = EqConv2d(cin, cin, 3)
        self.conv2 = EqConv2d(cin, cout, 3, stride=2)
        self.skip = EqConv2d(cin, cout, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        s = self.skip(F.avg_pool2d(x, 2))
        return (y + s) / math.sqrt(2)


class LiteDiscriminator(nn.Module):
    """Residual discriminator for 32 x 32 images in [0, 1] (coordinate channels appended).

        d = LiteDiscriminator(); logits = d(images)   # (B,)
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128), mbstd_group: int = 4) -> None:
        super().__init__()
        self.frgb = EqConv2d(3 + 2, channels[0], 1)
        self.blocks = nn.Sequential(*(DBlock(a, b) for a, b in zip(channels[:-1], channels[1:])))
        self.mbstd = MinibatchStd(mbstd_group)
        c = channels[-1]
        self.conv = EqConv2d(c + 1, c, 3)
        self.fc = EqLinear(c * 16, c, act=True)
        self.out = EqLinear(c, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img * 2 - 1
        x = self.frgb(torch.cat([x, _coords(x.shape[0], x.shape[-1], x.device, x.dtype)], 1))
        x = self.conv(self.mbstd(self.blocks(x)))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
