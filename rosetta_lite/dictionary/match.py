"""Best buddies, Rosetta neurons and their clusters, from correlation tables.

    pairs = best_buddies(corr_gd, k=3)                 # [(g_unit, d_unit), ...]
    rosetta = rosetta_units({"clip": pairs_clip, "dino": pairs_dino})
    clusters = cluster_units(rosetta, corr_gg, k=3)

Paper, section 3: KNN(j; K) are the K units of the other model most correlated with j;
BB(a, b; K) keeps (j, k) when each is in the other's K nearest (mutual). A Rosetta neuron
is a generator unit with a best buddy in every encoder; two Rosetta neurons share a
cluster when their generator units are best buddies of the generator against itself.
"""

from __future__ import annotations

import torch


def _top_k(table: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Boolean mask of the k largest entries along ``dim`` (ties broken by index)."""
    k = min(k, table.shape[dim])
    index = table.topk(k, dim=dim).indices
    mask = torch.zeros_like(table, dtype=torch.bool)
    return mask.scatter_(dim, index, True)


def _masked(corr: torch.Tensor, dead_a: torch.Tensor | None, dead_b: torch.Tensor | None) -> torch.Tensor:
    table = corr.clone()
    if dead_a is not None:
        table[dead_a] = -torch.inf
    if dead_b is not None:
        table[:, dead_b] = -torch.inf
    return table


def best_buddies(corr: torch.Tensor, k: int = 1, *, mode: str = "mutual", k_other: int = 5,
                 dead_a: torch.Tensor | None = None, dead_b: torch.Tensor | None = None,
                 exclude_self: bool = False) -> list[tuple[int, int]]:
    """Best-buddy pairs (row unit, column unit) of a correlation table, sorted by correlation.

        best_buddies(corr, k=3)                              # mutual K nearest neighbours
        best_buddies(corr, mode="asymmetric", k_other=5)     # the official code's variant

    ``mutual``: j in the top k of i's row and i in the top k of j's column.
    ``asymmetric``: j is i's top-1 and i is in j's top ``k_other``.
    Dead units never pair; ``exclude_self`` drops the diagonal (a model against itself).
    """
    if mode not in ("mutual", "asymmetric"):
        raise ValueError(f"mode must be 'mutual' or 'asymmetric', got {mode!r}")
    if k < 1 or k_other < 1:
        raise ValueError(f"k and k_other must be at least 1, got k={k}, k_other={k_other}")
    table = _masked(corr, dead_a, dead_b)
    if exclude_self:
        table.fill_diagonal_(-torch.inf)
    row_k, col_k = (k, k) if mode == "mutual" else (1, k_other)
    keep = _top_k(table, row_k, 1) & _top_k(table, col_k, 0) & torch.isfinite(table)
    rows, cols = keep.nonzero(as_tuple=True)
    order = corr[rows, cols].argsort(descending=True)
    return [(int(rows[i]), int(cols[i])) for i in order]


def rosetta_units(buddies: dict[str, list[tuple[int, int]]]) -> dict[int, dict[str, list[int]]]:
    """Generator units with a best buddy in every encoder: {g_unit: {encoder: [units]}}.

        rosetta_units({"clip": [(3, 10)], "dino": [(3, 7), (5, 1)]})  # {3: {"clip": [10], "dino": [7]}}
    """
    if not buddies:
        return {}
    per_encoder: dict[str, dict[int, list[int]]] = {}
    for encoder, pairs in buddies.items():
        table: dict[int, list[int]] = {}
        for g_unit, d_unit in pairs:
            table.setdefault(g_unit, []).append(d_unit)
        per_encoder[encoder] = table
    common = set.intersection(*(set(t) for t in per_encoder.values()))
    return {g: {e: per_encoder[e][g] for e in buddies} for g in sorted(common)}


def connected_components(nodes: list[int], edges: list[tuple[int, int]]) -> list[list[int]]:
    """Components of an undirected graph (union-find), each sorted, in order of first node."""
    parent = {n: n for n in nodes}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        if a in parent and b in parent:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for n in nodes:
        groups.setdefault(root(n), []).append(n)
    return [sorted(g) for g in groups.values()]


def cluster_units(rosetta: dict[int, dict[str, list[int]]], corr_gg: torch.Tensor, k: int = 1, *,
                  dead_g: torch.Tensor | None = None, mode: str = "mutual") -> list[list[int]]:
    """Group Rosetta generator units whose units are best buddies in BB(G, G; k), self excluded.

        cluster_units(rosetta, corr_gg, k=3)   # [[g1, g2], [g3], ...]
    """
    nodes = sorted(rosetta)
    pairs = best_buddies(corr_gg, k, mode=mode, dead_a=dead_g, dead_b=dead_g, exclude_self=True)
    return connected_components(nodes, pairs)
