"""How far best buddies by mutual information agree with Pearson's.

    result = mine(gan, encoders, images=256, similarity="mi")
    overlap = buddy_overlap(pearson_dictionary, {e: result.similarity(e) for e in result.pairs})
"""

from __future__ import annotations

import torch

from rosetta_lite.dictionary.match import best_buddies
from rosetta_lite.dictionary.rosetta import RosettaDictionary


def buddy_overlap(dictionary: RosettaDictionary, tables: dict[str, torch.Tensor], k: int | None = None) -> dict[str, dict]:
    """Per encoder, how the MI best buddies overlap the dictionary's Pearson best buddies.

        buddy_overlap(d, {e: mi.similarity(e) for e in mi.pairs})   # mi = mine(..., similarity="mi")
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
