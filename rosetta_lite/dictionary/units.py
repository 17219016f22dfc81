"""Maps of chosen units on chosen inputs, standardised with the mining statistics.

    maps_bnhw = unit_maps(gan, z, [12, 40], dictionary)   # generator: latents in
    maps_bnhw = unit_maps(clip, images, [7], dictionary)   # encoder: images in [0, 1] in
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rosetta_lite.capture import record_encoder, record_generator
from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.zoo.member import Member


def unit_maps(member: Member, inputs: torch.Tensor, units: list[int], dictionary: RosettaDictionary,
              size: int | None = None, name: str | None = None) -> torch.Tensor:
    """Maps (B, len(units), size, size) of flat unit indices, as z-scores of the mining statistics.

        unit_maps(gan, gan.sample_latents(4), d.clusters[0].generator_units, d)

    ``name`` is the member's name in the dictionary (default ``member.name``); ``size``
    defaults to the mining grid of the member.
    """
    name = name or member.name
    if name not in dictionary.models:
        raise ValueError(f"{name!r} is not in this dictionary; it has {list(dictionary.models)}")
    grid = dictionary.mining_grid(name)
    size = size or grid
    with torch.no_grad():
        maps = record_generator(member, inputs)[1] if member.is_generator else record_encoder(member, inputs)
    # standardise on the mining grid, where the statistics were taken, then show at ``size``
    standard = dictionary.standardise(name, units, maps, grid)
    if size == grid:
        return standard
    return F.interpolate(standard, size=(size, size), mode="bilinear", align_corners=False)


def strongest_latents(generator: Member, dictionary: RosettaDictionary, clusters: list, n: int = 3,
                      pool: int = 64, seed: int = 0) -> list[torch.Tensor]:
    """Per cluster, the ``n`` latents of a seeded pool whose images drive its generator units hardest: (n, z_dim) each.

        z_per_cluster = strongest_latents(gan, d, d.clusters, n=3)

    Strength is the peak over positions of the cluster's generator units' mean z-scored map,
    so every cluster is shown where its concept is present, not on one image for all.
    """
    if not 1 <= n <= pool:
        raise ValueError(f"n must be from 1 to pool ({pool}), got {n}")
    z = generator.sample_latents(pool, seed=seed)
    units = sorted({u for cluster in clusters for u in cluster.generator_units})
    if not units:
        return []
    maps = unit_maps(generator, z, units, dictionary)  # the pool recorded once for every cluster
    column = {u: i for i, u in enumerate(units)}
    chosen = []
    for cluster in clusters:
        mean = maps[:, [column[u] for u in cluster.generator_units]].mean(1)
        chosen.append(z[mean.flatten(1).amax(1).topk(n).indices])
    return chosen
