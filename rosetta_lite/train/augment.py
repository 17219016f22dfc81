"""Seeded image augmentations of the lite recipes: crops, flips, colour, grey, posterize.

    views = augment(images, torch.Generator().manual_seed(0), colour=0.8, grey=0.2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, gen: torch.Generator, *, scale: tuple[float, float] = (0.4, 1.0),
            flip: bool = True, colour: float = 0.0, grey: float = 0.0, posterize: int = 0) -> torch.Tensor:
    """Random resized crops (area fraction in ``scale``), horizontal flips and colour changes.

    Images are (B, 3, H, W) in [0, 1]; the result has the same size and range. Crops are
    taken by one batched ``grid_sample`` (bilinear, border padding). ``colour`` in [0, 1]
    sets the strength of colour changes: random channel permutation (with probability
    ``colour``), brightness and contrast jitter of +-0.4 ``colour``. ``grey`` is the
    probability of turning an image grey. ``posterize`` > 0 then rounds every channel to
    ``2 ** posterize`` even levels (2: 0, 1/3, 2/3, 1); it draws nothing from ``gen``.
    Never rotates: a square turned 45 degrees is a diamond.
    """
    if isinstance(posterize, bool) or not isinstance(posterize, int) or not 0 <= posterize <= 8:
        raise ValueError(f"posterize keeps 1 to 8 bits per channel (0: off), got {posterize!r}")
    b = images.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    area = scale[0] + (scale[1] - scale[0]) * rand(b)
    side = area.sqrt()  # crop side as a fraction of the image
    tx = (1 - side) * (2 * rand(b) - 1)  # crop centre, in [-1, 1] coordinates
    ty = (1 - side) * (2 * rand(b) - 1)
    sx = side * torch.where(rand(b) < 0.5, -1.0, 1.0) if flip else side
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, tx
    theta[:, 1, 1], theta[:, 1, 2] = side, ty
    # random draws stay on the CPU generator (same stream on any device); only results move
    device = images.device
    grid = F.affine_grid(theta.to(device), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if colour > 0:
        perms = torch.stack([torch.randperm(3, generator=gen) for _ in range(b)])
        keep = rand(b) >= colour
        perms[keep] = torch.arange(3)
        out = torch.gather(out, 1, perms.to(device)[:, :, None, None].expand_as(out))
        bright = 1 + 0.4 * colour * (2 * rand(b, 1, 1, 1).to(device) - 1)
        contrast = 1 + 0.4 * colour * (2 * rand(b, 1, 1, 1).to(device) - 1)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * contrast + mean) * bright
    if grey > 0:
        g = (0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]).unsqueeze(1).expand_as(out)
        out = torch.where((rand(b) < grey).to(device)[:, None, None, None], g, out)
    out = out.clamp(0, 1)
    if posterize:
        levels = 2 ** posterize - 1
        out = torch.floor(out * levels + 0.5) / levels
    return out
