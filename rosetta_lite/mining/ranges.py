"""Which latents a run has counted: sorted, disjoint, half-open intervals [a, b).

    counted = add_range([[0, 96]], 192, 288)   # [[0, 96], [192, 288]]
    missing_ranges(counted, 0, 288)             # [[96, 192]]

A run's progress is the list of latent ranges its accumulators hold, not a batch counter,
so that a folder that holds a merge continues only what is missing and no latent is ever
counted twice.
"""

from __future__ import annotations

Ranges = list[list[int]]


def add_range(ranges: Ranges, start: int, stop: int) -> Ranges:
    """``ranges`` with [start, stop) added (touching ranges joined); a ValueError if it overlaps one.

        add_range([[0, 32]], 32, 64)   # [[0, 64]]
    """
    if not 0 <= start < stop:
        raise ValueError(f"a latent range needs 0 <= start < stop, got [{start}, {stop})")
    clash = [r for r in ranges if r[0] < stop and start < r[1]]
    if clash:
        raise ValueError(f"latents [{start}, {stop}) were counted already (in {clash}): "
                         "a latent range can be counted once")
    out = sorted([list(r) for r in ranges] + [[start, stop]])
    joined = [out[0]]
    for a, b in out[1:]:
        if a == joined[-1][1]:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    return joined


def union(a: Ranges, b: Ranges) -> Ranges:
    """Both lists of ranges as one; a ValueError naming the overlap if they share a latent."""
    out = [list(r) for r in a]
    for start, stop in b:
        out = add_range(out, start, stop)
    return out


def missing_ranges(ranges: Ranges, start: int, stop: int) -> Ranges:
    """The parts of [start, stop) that ``ranges`` do not cover, in order.

        missing_ranges([[10, 20]], 0, 30)   # [[0, 10], [20, 30]]
    """
    gaps, at = [], start
    for a, b in ranges:
        if b <= at or a >= stop:
            continue
        if a > at:
            gaps.append([at, a])
        at = max(at, b)
    if at < stop:
        gaps.append([at, stop])
    return gaps


def count(ranges: Ranges) -> int:
    """How many latents the ranges hold."""
    return sum(b - a for a, b in ranges)
