"""Sample-quality figures for the lite GAN: k-NN precision/recall and Frechet distance.

Usage::

    from rosetta_lite.gan_quality import knn_precision_recall, frechet_distance
    p, r = knn_precision_recall(real_feats, fake_feats, k=3)
    fd = frechet_distance(real_feats, fake_feats)

``real_feats`` and ``fake_feats`` are (N, D) feature arrays (torch tensors or numpy
arrays), e.g. a classifier's penultimate features of world images and of generated
images. Precision and recall follow Kynkaanniemi et al., "Improved Precision and
Recall Metric for Assessing Generative Models" (NeurIPS 2019): each set's manifold is
the union of balls centred on its points whose radius is the distance to the point's
k-th nearest neighbour within the same set.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["knn_radii", "manifold_coverage", "knn_precision_recall", "frechet_distance"]


def _as_tensor(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, D) array, got shape {tuple(t.shape)}")
    return t.detach().to(torch.float64).cpu()


def knn_radii(feats, k: int = 3, chunk: int = 1024) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (self excluded)."""
    x = _as_tensor(feats)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N-1]; got k={k} with N={n}")
    out = torch.empty(n, dtype=torch.float64)
    for s in range(0, n, chunk):
        d = torch.cdist(x[s:s + chunk], x)
        # the smallest distance is the point itself (0); the k-th neighbour is index k
        out[s:s + chunk] = d.kthvalue(k + 1, dim=1).values
    return out


def manifold_coverage(support, radii: torch.Tensor, queries, chunk: int = 1024) -> float:
    """Fraction of ``queries`` that lie inside at least one ball (support[i], radii[i])."""
    s, q = _as_tensor(support), _as_tensor(queries)
    if s.shape[1] != q.shape[1]:
        raise ValueError(f"feature sizes differ: {s.shape[1]} vs {q.shape[1]}")
    inside = 0
    for a in range(0, q.shape[0], chunk):
        d = torch.cdist(q[a:a + chunk], s)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / q.shape[0]


def knn_precision_recall(real_feats, fake_feats, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    precision: fraction of fake points inside the real manifold;
    recall: fraction of real points inside the fake manifold.
    """
    real_r = knn_radii(real_feats, k)
    fake_r = knn_radii(fake_feats, k)
    precision = manifold_coverage(real_feats, real_r, fake_feats)
    recall = manifold_coverage(fake_feats, fake_r, real_feats)
    return precision, recall


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a, b) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets.

    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))``; the trace of the matrix
    square root is computed as ``tr((C_a^(1/2) C_b C_a^(1/2))^(1/2))``, which is exact
    for positive semi-definite covariances and needs no complex arithmetic.
    """
    x, y = _as_tensor(a).numpy(), _as_tensor(b).numpy()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    mu_x, mu_y = x.mean(0), y.mean(0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    cx, cy = np.atleast_2d(cx), np.atleast_2d(cy)
    sx = _sqrt_psd(cx)
    m = sx @ cy @ sx
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    fd = float(((mu_x - mu_y) ** 2).sum() + np.trace(cx) + np.trace(cy) - 2 * tr_sqrt)
    return max(fd, 0.0)
