"""Mutual information of binarised maps: a similarity selectable beside Pearson.

    result = mine(gan, encoders, images=500, similarity="mi")     # the one mining pass
    table = result.similarity("lite-clip")                         # (n_g, n_d) MI, nats
    pairs = best_buddies(table, k=3)

Each unit is binarised at a top quantile of its values (``x > threshold``), the threshold
fixed once from calibration images and then frozen, as network dissection does. The
joint 2x2 counts of every unit pair are streamed: per batch, one matrix multiply of the
binary rows (``A^T @ B`` counts both-on; the other three cells follow from the per-unit
on-counts and the number of rows). MI follows from the 2x2 tables. The counts are
integers, so shards and processes merge exactly.
"""

from __future__ import annotations

import math

import torch

from rosetta_lite.stats.moments import Centred, dead_units


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
        self.n_a, self.n_b = n_a, n_b
        self.both = torch.zeros(n_a, n_b, dtype=torch.float64)
        self.on_a = torch.zeros(n_a, dtype=torch.float64)
        self.on_b = torch.zeros(n_b, dtype=torch.float64)
        self.count = 0

    def to(self, device: torch.device | str) -> "JointCounts":
        """Move the counts to ``device`` (in place); returns self."""
        for name in ("both", "on_a", "on_b"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def update(self, binary_a: torch.Tensor, binary_b: torch.Tensor) -> None:
        """Add a batch of rows: ``binary_a`` (N, n_a), ``binary_b`` (N, n_b), bool or 0/1."""
        if binary_a.shape[0] != binary_b.shape[0]:
            raise ValueError(f"row counts differ: {binary_a.shape[0]} and {binary_b.shape[0]}")
        if binary_a.shape[1] != self.n_a or binary_b.shape[1] != self.n_b:
            raise ValueError(f"expected rows (N, {self.n_a}) and (N, {self.n_b}), got {tuple(binary_a.shape)} "
                             f"and {tuple(binary_b.shape)}")
        if binary_a.shape[0] >= 2 ** 24:
            raise ValueError("a batch must have fewer than 2**24 rows for exact float32 counts")
        # 0/1 in float32 (also under TF32: 0 and 1 are exact there) and sums under 2**24: exact integers
        a, b = binary_a.float(), binary_b.float()
        if self.both.device != a.device and self.count == 0:
            self.to(a.device)
        self.both += a.T @ b
        self.on_a += a.sum(0)
        self.on_b += b.sum(0)
        self.count += a.shape[0]

    def merge(self, other: "JointCounts") -> "JointCounts":
        """Fold in counts of disjoint rows (same thresholds)."""
        if (other.n_a, other.n_b) != (self.n_a, self.n_b):
            raise ValueError(f"cannot merge ({other.n_a}, {other.n_b}) counts into ({self.n_a}, {self.n_b})")
        device = self.both.device
        self.both += other.both.to(device)
        self.on_a += other.on_a.to(device)
        self.on_b += other.on_b.to(device)
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
        return mutual_information_from_tables(self.tables(), base).cpu()

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Tensors for saving (safetensors), on the CPU."""
        state = {"count": torch.tensor([self.count], dtype=torch.int64), "both": self.both,
                 "on_a": self.on_a, "on_b": self.on_b}
        return {prefix + k: v.contiguous().cpu() for k, v in state.items()}

    def _load(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        self.count = int(state[prefix + "count"][0])
        self.both = state[prefix + "both"].double().clone()
        self.on_a, self.on_b = state[prefix + "on_a"].double().clone(), state[prefix + "on_b"].double().clone()


class BinaryMoments(JointCounts):
    """Joint counts of binarised units, plus each unit's mean and variance: the mining accumulator of MI.

        acc = BinaryMoments(n_a, n_b); acc.update_rows(bin_a, bin_b, centred_a, centred_b); acc.similarity()

    The counts give the MI table; the moments (of the maps on the pair's grid, before
    binarisation) give the per-unit statistics a dictionary stores for normalising maps.
    It answers the same questions as :class:`rosetta_lite.stats.moments.CoMoments` (means,
    variances, dead units, the table), so best buddies and dictionaries have one code path.
    """

    def __init__(self, n_a: int, n_b: int) -> None:
        super().__init__(n_a, n_b)
        f64 = dict(dtype=torch.float64)
        self.mean_a, self.m2_a = torch.zeros(n_a, **f64), torch.zeros(n_a, **f64)
        self.mean_b, self.m2_b = torch.zeros(n_b, **f64), torch.zeros(n_b, **f64)
        self.moments_count = 0

    def to(self, device: torch.device | str) -> "BinaryMoments":
        """Move counts and moments to ``device`` (in place); returns self."""
        super().to(device)
        for name in ("mean_a", "m2_a", "mean_b", "m2_b"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def update_rows(self, binary_a: torch.Tensor, binary_b: torch.Tensor, a: Centred, b: Centred) -> None:
        """Add a batch: binary rows (counts) and the same rows' batch statistics (moments)."""
        self.update(binary_a, binary_b)
        self._merge_moments(a.count, a.mean, a.m2, b.mean, b.m2)

    def _merge_moments(self, n: int, mean_a, m2_a, mean_b, m2_b) -> None:
        total = self.moments_count + n
        if total == 0:
            return
        weight = self.moments_count * n / total
        for name, mean, m2 in (("a", mean_a, m2_a), ("b", mean_b, m2_b)):
            old_mean, old_m2 = getattr(self, "mean_" + name), getattr(self, "m2_" + name)
            delta = mean.to(old_mean.device) - old_mean
            old_m2 += m2.to(old_m2.device) + weight * delta.square()
            old_mean += delta * (n / total)
        self.moments_count = total

    def merge(self, other: "BinaryMoments") -> "BinaryMoments":
        """Fold in an accumulator of disjoint rows binarised with the same thresholds; returns self."""
        if not isinstance(other, BinaryMoments):
            raise ValueError(f"cannot merge a {type(other).__name__} into mutual-information counts")
        super().merge(other)
        self._merge_moments(other.moments_count, other.mean_a, other.m2_a, other.mean_b, other.m2_b)
        return self

    def variance_a(self) -> torch.Tensor:
        return self.m2_a / max(self.moments_count, 1)

    def variance_b(self) -> torch.Tensor:
        return self.m2_b / max(self.moments_count, 1)

    def dead_a(self) -> torch.Tensor:
        """Units of a that are constant, as maps or once binarised: no MI is defined for them."""
        return dead_units(self.variance_a(), self.mean_a) | self.constant_a()

    def dead_b(self) -> torch.Tensor:
        return dead_units(self.variance_b(), self.mean_b) | self.constant_b()

    def similarity(self) -> torch.Tensor:
        """The table best buddies rank: mutual information in nats, (n_a, n_b), float64, on the CPU."""
        return self.mutual_information()

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Tensors for saving (safetensors), on the CPU."""
        state = super().state_dict(prefix)
        moments = {"moments_count": torch.tensor([self.moments_count], dtype=torch.int64), "mean_a": self.mean_a,
                   "m2_a": self.m2_a, "mean_b": self.mean_b, "m2_b": self.m2_b}
        state.update({prefix + k: v.contiguous().cpu() for k, v in moments.items()})
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str = "") -> "BinaryMoments":
        """Rebuild an accumulator saved with ``state_dict``."""
        both = state[prefix + "both"]
        acc = cls(both.shape[0], both.shape[1])
        acc._load(state, prefix)
        acc.moments_count = int(state[prefix + "moments_count"][0])
        for name in ("mean_a", "m2_a", "mean_b", "m2_b"):
            setattr(acc, name, state[prefix + name].double().clone())
        return acc


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


