"""Mutual information of binarised maps: a similarity selectable beside Pearson.

    tables = mine_mutual_information(gan, encoders, images=500)   # {encoder: (n_g, n_d) MI, nats}
    pairs = best_buddies(tables["lite-clip"], k=3)

Each unit is binarised at a top quantile of its values (``x > threshold``), the threshold
fixed once from the first batch(es) and then frozen, as network dissection does. The
joint 2x2 counts of every unit pair are streamed: per batch, one matrix multiply of the
binary rows (``A^T @ B`` counts both-on; the other three cells follow from the per-unit
on-counts and the number of rows). MI follows from the 2x2 tables.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from rosetta_lite.mine import latents, maps_to_rows, plan, record_encoder, record_generator
from rosetta_lite.zoo.member import Member


def top_quantile_thresholds(rows: torch.Tensor, quantile: float = 0.9) -> torch.Tensor:
    """Per column, the value below which a fraction ``quantile`` of the rows lie: (units,).

        thresholds = top_quantile_thresholds(rows_nu, 0.9)   # binary = rows_nu > thresholds
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    n = rows.shape[0]
    k = min(n, max(1, math.ceil(quantile * n)))
    return rows.float().kthvalue(k, dim=0).values  # torch.quantile refuses large inputs


class JointCounts:
    """Streaming 2x2 contingency tables of every (a unit, b unit) pair of binary maps.

        acc = JointCounts(n_a, n_b); acc.update(rows_a > t_a, rows_b > t_b); mi = acc.mutual_information()

    ``both[i, j]`` counts rows where a_i and b_j are both on; ``on_a``, ``on_b`` count each
    unit's on rows; ``count`` the rows. Accumulated in float64 (exact up to 2^53 rows);
    each batch is one float32 matrix multiply, exact while a batch has under 2^24 rows.
    """

    def __init__(self, n_a: int, n_b: int) -> None:
        self.both = torch.zeros(n_a, n_b, dtype=torch.float64)
        self.on_a = torch.zeros(n_a, dtype=torch.float64)
        self.on_b = torch.zeros(n_b, dtype=torch.float64)
        self.count = 0

    def update(self, binary_a: torch.Tensor, binary_b: torch.Tensor) -> None:
        """Add a batch of rows: ``binary_a`` (N, n_a), ``binary_b`` (N, n_b), bool or 0/1."""
        if binary_a.shape[0] != binary_b.shape[0]:
            raise ValueError(f"row counts differ: {binary_a.shape[0]} and {binary_b.shape[0]}")
        if binary_a.shape[0] >= 2 ** 24:
            raise ValueError("a batch must have fewer than 2**24 rows for exact float32 counts")
        a, b = binary_a.float(), binary_b.float()
        self.both += (a.T @ b).double()
        self.on_a += a.sum(0).double()
        self.on_b += b.sum(0).double()
        self.count += a.shape[0]

    def merge(self, other: "JointCounts") -> "JointCounts":
        """Fold in counts of disjoint rows (same thresholds)."""
        self.both += other.both
        self.on_a += other.on_a
        self.on_b += other.on_b
        self.count += other.count
        return self

    def tables(self) -> torch.Tensor:
        """The 2x2 tables as (n_a, n_b, 2, 2) counts, index [a_on, b_on]."""
        n11 = self.both
        n10 = self.on_a[:, None] - n11
        n01 = self.on_b[None, :] - n11
        n00 = self.count - self.on_a[:, None] - self.on_b[None, :] + n11
        return torch.stack([torch.stack([n00, n01], -1), torch.stack([n10, n11], -1)], -2)

    def constant_a(self) -> torch.Tensor:
        """Units of a that are always on or always off: their MI with anything is 0."""
        return (self.on_a == 0) | (self.on_a == self.count)

    def constant_b(self) -> torch.Tensor:
        return (self.on_b == 0) | (self.on_b == self.count)

    def mutual_information(self, base: float = math.e) -> torch.Tensor:
        """MI of every pair, (n_a, n_b), float64; nats by default, ``base=2`` for bits."""
        if self.count == 0:
            raise ValueError("no rows counted yet")
        return mutual_information_from_tables(self.tables(), base)


def mutual_information_from_tables(tables: torch.Tensor, base: float = math.e) -> torch.Tensor:
    """MI of (..., 2, 2) contingency tables of counts, in units of ``log(base)``.

        mutual_information_from_tables(torch.tensor([[50., 0.], [0., 50.]]), base=2)   # 1 bit
    """
    tables = tables.double()
    total = tables.sum((-2, -1), keepdim=True)
    p = tables / total
    px = p.sum(-1, keepdim=True)
    py = p.sum(-2, keepdim=True)
    ratio = p / (px * py)
    terms = torch.where(p > 0, p * torch.log(ratio.clamp_min(1e-300)), torch.zeros_like(p))
    return (terms.sum((-2, -1)) / math.log(base)).clamp_min(0.0)


def entropy_bits(p: float) -> float:
    """Binary entropy in bits of an on-probability ``p`` (the MI of a unit with itself).

        entropy_bits(0.1)   # 0.469
    """
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def mine_mutual_information(generator: Member, encoders: list[Member], images: int, *, batch_size: int = 32,
                            seed: int = 0, start: int = 0, quantile: float = 0.9, calibration_batches: int = 1,
                            base: float = math.e, grid: int | None = None, progress: bool = False,
                            return_counts: bool = False) -> dict:
    """MI tables (n_g, n_d) of the generator against every encoder, from binarised maps, streamed.

        mi = mine_mutual_information(gan, encoders, images=500, quantile=0.9)   # {"lite-clip": tensor}

    The same images as :func:`rosetta_lite.mine.mine` with the same ``seed`` and ``start``;
    maps brought to the same grid (bilinear). Thresholds: per unit, the ``quantile`` of its
    values over the first ``calibration_batches`` batches, then frozen. With
    ``return_counts`` the values are the :class:`JointCounts` instead of MI tables.
    """
    if images < batch_size:
        raise ValueError(f"images ({images}) must be at least one batch ({batch_size})")
    if not encoders:
        raise ValueError("need at least one encoder")
    layers, _, _, grids = plan(generator, encoders, grid)
    batches = (images + batch_size - 1) // batch_size
    calibration_batches = max(1, min(calibration_batches, batches))
    counts: dict[str, JointCounts] = {}
    thresholds: dict[tuple[str, int], torch.Tensor] = {}  # (model, grid) -> per unit
    held: list[dict] = []
    bar = tqdm(total=images, desc="mutual information", unit="img", disable=not progress)

    def rows_of(batch: int) -> dict:
        first = start + batch * batch_size
        count = min(batch_size, start + images - first)
        z = latents(generator, seed, first, count)
        generated, g_maps = record_generator(generator, z)
        rows = {}
        for e in encoders:
            g_key = (generator.name, grids[e.name])
            if g_key not in rows:
                rows[g_key] = maps_to_rows(g_maps, layers[generator.name], grids[e.name])
            rows[e.name, grids[e.name]] = maps_to_rows(record_encoder(e, generated), layers[e.name], grids[e.name])
        bar.update(count)
        return rows

    def count_batch(rows: dict) -> None:
        binary = {key: value > thresholds[key] for key, value in rows.items()}
        for e in encoders:
            g_bin, d_bin = binary[generator.name, grids[e.name]], binary[e.name, grids[e.name]]
            if e.name not in counts:
                counts[e.name] = JointCounts(g_bin.shape[1], d_bin.shape[1])
            counts[e.name].update(g_bin, d_bin)

    with torch.no_grad():
        for batch in range(calibration_batches):
            held.append(rows_of(batch))
        for key in held[0]:
            thresholds[key] = top_quantile_thresholds(torch.cat([h[key] for h in held]), quantile)
        for rows in held:
            count_batch(rows)
        held.clear()
        for batch in range(calibration_batches, batches):
            count_batch(rows_of(batch))
    bar.close()
    if return_counts:
        return counts
    return {name: acc.mutual_information(base) for name, acc in counts.items()}


def buddy_overlap(dictionary, tables: dict[str, torch.Tensor], k: int | None = None) -> dict[str, dict]:
    """Per encoder, how the MI best buddies overlap the dictionary's Pearson best buddies.

        buddy_overlap(d, mine_mutual_information(gan, encoders, images=500))
        # {"lite-clip": {"pearson": 117, "mi": 130, "both": 33, "jaccard": 0.15, "rosetta_kept": 3}, ...}

    Best buddies on the MI tables use the dictionary's K (or ``k``) and mode; dead units of
    the dictionary are excluded. ``rosetta_kept`` counts the dictionary's Rosetta pairs of
    that encoder that are also MI best buddies.
    """
    from rosetta_lite.match import best_buddies

    k = k or dictionary.settings["k"]
    g_dead = torch.zeros(next(iter(tables.values())).shape[0], dtype=torch.bool)
    g_dead[dictionary.dead[dictionary.generator]] = True
    rosetta = {u for c in dictionary.clusters for u in c.generator_units}
    out = {}
    for encoder, table in tables.items():
        if encoder not in dictionary.buddies:
            continue
        d_dead = torch.zeros(table.shape[1], dtype=torch.bool)
        d_dead[dictionary.dead[encoder]] = True
        mi = set(best_buddies(table, k, mode=dictionary.settings["mode"], k_other=dictionary.settings.get("k_other", 5),
                              dead_a=g_dead, dead_b=d_dead))
        pearson = {(int(a), int(b)) for a, b, _ in dictionary.buddies[encoder]}
        union = len(mi | pearson)
        out[encoder] = {"pearson": len(pearson), "mi": len(mi), "both": len(mi & pearson),
                        "jaccard": round(len(mi & pearson) / union, 4) if union else 1.0,
                        "rosetta_pairs": sum(a in rosetta for a, _ in pearson),
                        "rosetta_kept": sum(a in rosetta and (a, b) in mi for a, b in pearson)}
    return out
