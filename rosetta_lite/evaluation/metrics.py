"""Image metrics and confidence intervals for the inversion and editing evaluations.

    psnr(a_bchw, b_bchw)   # per-image PSNR in dB, images in [0, 1]
    mean_ci([13.2, 14.1, 12.8])   # {"mean": ..., "ci95": [low, high], "n": 3}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Values = Sequence[float] | np.ndarray | torch.Tensor  # numbers torch.as_tensor reads


def psnr(a_bchw: torch.Tensor, b_bchw: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [0, 1], shape (B,).

        psnr(G(z), targets).mean()
    """
    mse = ((a_bchw.detach().float() - b_bchw.detach().float()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(eps))


def ssim(a_bchw: torch.Tensor, b_bchw: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (scikit-image, 7 x 7 Gaussian-free window, RGB), shape (B,).

        ssim(G(z), targets)
    """
    from skimage.metrics import structural_similarity

    a = a_bchw.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    b = b_bchw.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    win = min(7, a.shape[1], a.shape[2])
    win -= 1 - win % 2  # odd window
    return torch.tensor([structural_similarity(x, y, channel_axis=-1, data_range=1.0, win_size=win)
                         for x, y in zip(a, b)], device=a_bchw.device)


def mean_ci(values: Values, confidence: float = 0.95) -> dict:
    """Mean with a Student-t confidence interval.

        mean_ci([1.0, 2.0, 3.0])   # {"mean": 2.0, "ci95": [-0.48, 4.48], "n": 3}
    """
    from scipy import stats

    x = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu().numpy(), dtype=np.float64)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "ci95": [math.nan, math.nan], "n": n}
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": n}


def paired_difference(values: Values, baseline: Values, confidence: float = 0.95) -> dict:
    """Mean of ``values - baseline`` (same images, paired) with its confidence interval.

        paired_difference(psnr_guided, psnr_perceptual)   # {"mean": 0.4, "ci95": [...], "n": 50}
    """
    a = torch.as_tensor(values, dtype=torch.float64)
    b = torch.as_tensor(baseline, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    return mean_ci(a - b, confidence)


def rounded(summary: dict, digits: int = 4) -> dict:
    """A ``mean_ci`` summary with its numbers rounded (for JSON)."""
    return {"mean": round(summary["mean"], digits), "ci95": [round(v, digits) for v in summary["ci95"]],
            "n": summary["n"]}


#: the most images ``eval inversion`` and ``eval editing`` take. They work in batches (their
#: options' ``batch_size``), so memory does not bound the count; time does: each image is
#: optimised once per row of the table, measured at about 0.06 s per image, row, restart and
#: step with the lite zoo on 2 CPU cores, so 10,000 scenes at Table 1's defaults (7 rows, 2
#: restarts, 100 steps) take over a week. Kept for every image: its starting latents and scores.
MAX_EVAL_IMAGES = 10_000


def check_eval_images(images: int, what: str) -> None:
    """Refuse an image count outside 1 .. ``MAX_EVAL_IMAGES``, before any model loads.

        check_eval_images(50, "eval inversion")
    """
    if not isinstance(images, int) or isinstance(images, bool) or not 1 <= images <= MAX_EVAL_IMAGES:
        raise ValueError(f"{what} takes 1 to {MAX_EVAL_IMAGES} images (more would run for days; memory is bounded "
                         f"by --batch-size), got {images!r}")
