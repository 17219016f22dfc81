"""All-reduce primitives for the accumulators under torchrun; they import only ``torch.distributed``.

    reduce_comoments(acc)         # every process now holds the co-moments of all processes' rows
    reduce_binary_moments(acc)

Means and second moments are combined with Chan's parallel formula; counts are summed exactly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from rosetta_lite.stats.binary import BinaryMoments
from rosetta_lite.stats.moments import CoMoments


def _sum(tensor: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _count(local: int, device: torch.device) -> int:
    return int(_sum(torch.tensor([float(local)], dtype=torch.float64, device=device)).item())


def _reduce_moments(n: int, total: int, mean: torch.Tensor, m2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                        torch.Tensor]:
    """Global mean and m2 of per-process (n, mean, m2); also this process's shift mean - global mean."""
    global_mean = _sum(mean * n) / max(total, 1)
    shift = mean - global_mean
    return global_mean, _sum(m2 + n * shift.square()), shift


def reduce_comoments(acc: CoMoments) -> None:
    """Sum :class:`~rosetta_lite.stats.moments.CoMoments` of disjoint rows over all processes, in place.

        reduce_comoments(result.pairs["lite-clip"])

    cross = sum_r [cross_r + n_r (mean_a_r - mean_a)(mean_b_r - mean_b)^T]: one all-reduce of
    the table, after two small ones for the counts and means.
    """
    device = acc.cross.device
    n, total = acc.count, _count(acc.count, device)
    mean_a, m2_a, shift_a = _reduce_moments(n, total, acc.mean_a, acc.m2_a)
    mean_b, m2_b, shift_b = _reduce_moments(n, total, acc.mean_b, acc.m2_b)
    cross = acc.cross.addr(shift_a, shift_b, alpha=float(n))
    acc.cross = _sum(cross)
    acc.mean_a, acc.m2_a, acc.mean_b, acc.m2_b, acc.count = mean_a, m2_a, mean_b, m2_b, total


def reduce_binary_moments(acc: BinaryMoments) -> None:
    """Sum :class:`~rosetta_lite.stats.binary.BinaryMoments` over all processes, in place (counts are exact)."""
    device = acc.both.device
    for name in ("both", "on_a", "on_b"):
        setattr(acc, name, _sum(getattr(acc, name).contiguous()))
    acc.count = _count(acc.count, device)
    n, total = acc.moments_count, _count(acc.moments_count, device)
    acc.mean_a, acc.m2_a, _ = _reduce_moments(n, total, acc.mean_a, acc.m2_a)
    acc.mean_b, acc.m2_b, _ = _reduce_moments(n, total, acc.mean_b, acc.m2_b)
    acc.moments_count = total
