"""Sample-quality figures for the lite generators: k-NN precision/recall and Frechet distance.

Usage::

    from rosetta_lite.train.gan_quality import knn_precision_recall, frechet_distance
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

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from rosetta_lite.train.checkpoints import load_weights
from rosetta_lite.train.quality import encode
from rosetta_lite.world import EVAL_SEED, ShapesWorld
from rosetta_lite.zoo import lite_arch
from rosetta_lite.zoo.lite import generator_model

__all__ = ["knn_radii", "manifold_coverage", "knn_precision_recall", "frechet_distance"]


def _as_tensor(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, D) array, got shape {tuple(t.shape)}")
    return t.detach().to(torch.float64).cpu()


def knn_radii(feats: np.ndarray | torch.Tensor, k: int = 3, chunk: int = 1024) -> torch.Tensor:
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


def manifold_coverage(support: np.ndarray | torch.Tensor, radii: torch.Tensor, queries: np.ndarray | torch.Tensor,
                      chunk: int = 1024) -> float:
    """Fraction of ``queries`` that lie inside at least one ball (support[i], radii[i])."""
    s, q = _as_tensor(support), _as_tensor(queries)
    if s.shape[1] != q.shape[1]:
        raise ValueError(f"feature sizes differ: {s.shape[1]} vs {q.shape[1]}")
    inside = 0
    for a in range(0, q.shape[0], chunk):
        d = torch.cdist(q[a:a + chunk], s)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / q.shape[0]


def knn_precision_recall(real_feats: np.ndarray | torch.Tensor, fake_feats: np.ndarray | torch.Tensor,
                         k: int = 3) -> tuple[float, float]:
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


def frechet_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
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


def generator_quality(name: str, generator_weights: Path, classifier_weights: Path, n: int = 2000,
                      seed: int = EVAL_SEED) -> dict:
    """Precision/recall (k = 3) and Frechet distance of ``n`` samples of the lite generator ``name``.

        generator_quality("lite-gan", Path("runs/zoo/lite-gan.safetensors"), Path("runs/zoo/lite-resnet-sup.safetensors"))

    The samples' latents are drawn with ``seed``; they are judged by ``image_set_quality``.
    """
    generator = generator_model(name, generator_weights)
    with torch.no_grad():
        latents = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
        fake = torch.cat([generator(z).clamp(0, 1) for z in latents.split(500)])
    # a renderer of the textured world is judged against that world, by a classifier trained on it
    return image_set_quality(fake, classifier_weights, seed=seed, **getattr(generator, "world", {}))


def image_set_quality(images_bchw: torch.Tensor, classifier_weights: Path, seed: int = EVAL_SEED,
                      **world_settings: Any) -> dict:
    """The GAN's gate figures for any set of 32 x 32 images in [0, 1], judged in
    ``lite-resnet-sup``'s penultimate features against as many world images.

        image_set_quality(ShapesWorld(32).batch(2000, seed=8).images, Path("lite-resnet-sup.safetensors"))

    Figures for the images against world scenes of ``seed``, beside the same figures for
    two disjoint sets of world images (scenes of ``seed`` and ``seed + 1``); class
    frequencies judged by the classifier. Scored on world images degraded on purpose, it
    shows what the gates ask for.
    """
    if images_bchw.ndim != 4 or tuple(images_bchw.shape[1:]) != (3, 32, 32) or len(images_bchw) < 4:
        raise ValueError(f"images must be a (N >= 4, 3, 32, 32) batch in [0, 1], got shape {tuple(images_bchw.shape)}")
    n = len(images_bchw)
    state = load_file(str(classifier_weights))
    classifier = load_weights(lite_arch.build_member("lite-resnet-sup", state), classifier_weights).eval()
    world = ShapesWorld(32, **world_settings)
    classes = len(world.class_names)
    if classifier.fc.out_features != classes:
        raise ValueError(f"{classifier_weights} classifies {classifier.fc.out_features} classes, this world has "
                         f"{classes}: judge a generator with a classifier trained on its own world")

    def features(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, labels = [], []
        with torch.no_grad():
            for part in images.split(500):
                feats.append(encode(classifier, "lite-resnet-sup", part))
                labels.append(classifier(lite_arch.normalize(part, "lite-resnet-sup")).argmax(1))
        return torch.cat(feats), torch.cat(labels)

    real_a, labels_a = features(world.batch(n, seed=seed).images)
    real_b, _ = features(world.batch(n, seed=seed + 1).images)
    fake_f, labels_f = features(images_bchw.float())
    p0, r0 = knn_precision_recall(real_a, real_b, k=3)
    p, r = knn_precision_recall(real_a, fake_f, k=3)
    freq_world = torch.bincount(labels_a, minlength=classes).double() / n
    freq_gan = torch.bincount(labels_f, minlength=classes).double() / n
    gap = float((freq_world - freq_gan).abs().max())
    return {"precision": round(p, 4), "recall": round(r, 4), "precision_world": round(p0, 4),
            "recall_world": round(r0, 4), "precision_ratio": round(p / p0, 4), "recall_ratio": round(r / r0, 4),
            "frechet": round(frechet_distance(real_a, fake_f), 3),
            "frechet_world": round(frechet_distance(real_a, real_b), 3),
            "class_frequency_gap_max": -round(gap, 4),  # negated so that higher is better, like the others
            "class_frequency_world": [round(float(x), 3) for x in freq_world],
            "class_frequency_gan": [round(float(x), 3) for x in freq_gan]}
