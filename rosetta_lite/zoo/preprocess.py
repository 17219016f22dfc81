"""Each model's own input preparation: resize, then normalise, from images in [0, 1].

    prep = Preprocess(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD); x = prep(images_bchw)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocess:
    """Resize (bicubic, as the paper) to ``size`` and normalise; differentiable, batched.

        Preprocess(size=32, mean=CLIP_MEAN, std=CLIP_STD)(images_bchw)
    """

    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def __call__(self, images_bchw: torch.Tensor) -> torch.Tensor:
        if images_bchw.dim() != 4 or images_bchw.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) in [0, 1], got shape {tuple(images_bchw.shape)}")
        x = images_bchw
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode=self.interpolation,
                              align_corners=False, antialias=True).clamp(0, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std
