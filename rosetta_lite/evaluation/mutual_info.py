"""Best buddies by mutual information beside Pearson's, and how far the two agree.

    mi = mine_mutual_information(gan, encoders, images=256)
    overlap = buddy_overlap(pearson_dictionary, mi)
"""

from __future__ import annotations

import math

import torch

from rosetta_lite.dictionary.match import best_buddies
from rosetta_lite.mining.loop import mine
from rosetta_lite.zoo.member import Member


def mine_mutual_information(generator: Member, encoders: list[Member], images: int, *, batch_size: int = 32,
                            seed: int = 0, start: int = 0, quantile: float = 0.9, calibration_batches: int = 1,
                            base: float = math.e, grid: int | None = None, progress: bool = False,
                            return_counts: bool = False, device: str = "cpu") -> dict:
    """MI tables (n_g, n_d) of the generator against every encoder, from binarised maps, streamed.

        mi = mine_mutual_information(gan, encoders, images=500, quantile=0.9)   # {"lite-clip": tensor}

    The one mining pass, :func:`rosetta_lite.mining.loop.mine` with ``similarity="mi"``: the same
    images with the same ``seed`` and ``start``, maps brought to the same grid (bilinear).
    Thresholds: per unit, the ``quantile`` of its values over the calibration images, the
    first ``calibration_batches * batch_size`` latents of the stream ``seed`` (the first
    batches of the run when ``start`` is 0), then frozen. With ``return_counts`` the values
    are the :class:`JointCounts` instead of MI tables.
    """
    if calibration_batches < 1:
        raise ValueError(f"calibration_batches must be at least 1, got {calibration_batches}")
    result = mine(generator, encoders, images, batch_size=batch_size, seed=seed, start=start, grid=grid,
                  progress=progress, device=device, similarity="mi", quantile=quantile,
                  calibration_images=calibration_batches * batch_size)
    if return_counts:
        return dict(result.pairs)
    return {name: acc.mutual_information(base) for name, acc in result.pairs.items()}


def buddy_overlap(dictionary, tables: dict[str, torch.Tensor], k: int | None = None) -> dict[str, dict]:
    """Per encoder, how the MI best buddies overlap the dictionary's Pearson best buddies.

        buddy_overlap(d, mine_mutual_information(gan, encoders, images=500))
        # {"lite-clip": {"pearson": 117, "mi": 130, "both": 33, "jaccard": 0.15, "rosetta_kept": 3}, ...}

    Best buddies on the MI tables use the dictionary's K (or ``k``) and mode; dead units of
    the dictionary are excluded. ``rosetta_kept`` counts the dictionary's Rosetta pairs of
    that encoder that are also MI best buddies.
    """
    k = k or dictionary.settings["k"]
    g_dead = dictionary.dead_mask(dictionary.generator)
    rosetta = set(dictionary.rosetta_units())
    out = {}
    for encoder, table in tables.items():
        if encoder not in dictionary.buddies:
            continue
        d_dead = dictionary.dead_mask(encoder)
        mi = set(best_buddies(table, k, mode=dictionary.settings["mode"], k_other=dictionary.settings.get("k_other", 5),
                              dead_a=g_dead, dead_b=d_dead))
        pearson = {(int(a), int(b)) for a, b, _ in dictionary.buddies[encoder]}
        union = len(mi | pearson)
        out[encoder] = {"pearson": len(pearson), "mi": len(mi), "both": len(mi & pearson),
                        "jaccard": round(len(mi & pearson) / union, 4) if union else 1.0,
                        "rosetta_pairs": sum(a in rosetta for a, _ in pearson),
                        "rosetta_kept": sum(a in rosetta and (a, b) in mi for a, b in pearson)}
    return out
