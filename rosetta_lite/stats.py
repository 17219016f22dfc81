"""Streaming co-moments of two sets of units: the exact Pearson correlation in one pass.

    acc = CoMoments(n_a, n_b); acc.update(rows_a, rows_b); corr = acc.correlation()

Each ``update`` takes a batch of samples as rows (samples = images x positions): one
matrix multiply of the batch-centred data, in float32, then a float64 merge of means and
centred co-moments (Chan, Golub and LeVeque's pairwise update). The result is the
Pearson correlation over every sample ever seen, not an average of per-batch scores,
and two accumulators over disjoint data merge exactly (``merge``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: a unit is dead when its standard deviation is at most this fraction of its mean's size
#: (or zero): a constant up to float32 rounding, whatever the scale of the model's units
DEAD_RELATIVE_STD = 1e-6


def _dead(variance: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return (variance <= 0) | (variance <= (DEAD_RELATIVE_STD * mean).square())


@dataclass
class Centred:
    """A batch of rows centred once, to meet several accumulators.

        c = centre(rows_g); acc_clip.update(c, rows_clip); acc_dino.update(c, rows_dino)
    """

    count: int
    rows: torch.Tensor  # (N, units) float32, rows minus an approximate mean
    mean: torch.Tensor  # (units,) float64, exact batch mean
    m2: torch.Tensor  # (units,) float64, sum of squared deviations from the batch mean
    residual: torch.Tensor  # (units,) float64, column sums of ``rows`` (0 up to rounding)


def centre(rows: torch.Tensor, *, in_place: bool = False, chunk: int = 2048) -> Centred:
    """Centre rows (N, units) about their float32 mean; exact statistics in float64.

        c = centre(torch.randn(1000, 8))

    ``in_place=True`` overwrites ``rows`` (for fresh matrices: no second one of the full
    size is allocated); squares are summed in chunks of rows for the same reason.
    """
    rows = rows.float()
    approx = rows.mean(0)
    centred = rows.sub_(approx) if in_place else rows - approx
    residual = centred.sum(0).double().cpu()
    count = rows.shape[0]
    squares = torch.zeros(rows.shape[1], dtype=torch.float64)
    for part in centred.split(chunk):
        squares += (part * part).sum(0).double().cpu()
    mean = approx.double().cpu() + residual / count
    return Centred(count, centred, mean, squares - residual.square() / count, residual)


@dataclass
class CoMoments:
    """Count, means, centred sums of squares and cross-products of units a and b.

        acc = CoMoments(3, 4); acc.update(torch.randn(100, 3), torch.randn(100, 4))

    ``same=True`` declares that b is a (the G x G table): the cross-product is then also
    the sums of squares, and ``update`` takes a single matrix.
    """

    n_a: int
    n_b: int
    same: bool = False
    count: int = 0
    mean_a: torch.Tensor | None = None  # (n_a,) float64
    mean_b: torch.Tensor | None = None  # (n_b,)
    m2_a: torch.Tensor | None = None  # (n_a,) sum of squared deviations
    m2_b: torch.Tensor | None = None  # (n_b,)
    cross: torch.Tensor | None = None  # (n_a, n_b) sum of products of deviations

    def __post_init__(self) -> None:
        if self.same and self.n_a != self.n_b:
            raise ValueError("same=True needs n_a == n_b")
        if self.mean_a is None:
            f64 = dict(dtype=torch.float64)
            self.mean_a, self.m2_a = torch.zeros(self.n_a, **f64), torch.zeros(self.n_a, **f64)
            self.mean_b, self.m2_b = torch.zeros(self.n_b, **f64), torch.zeros(self.n_b, **f64)
            self.cross = torch.zeros(self.n_a, self.n_b, **f64)

    def update(self, rows_a: "torch.Tensor | Centred", rows_b: "torch.Tensor | Centred | None" = None) -> None:
        """Add a batch: rows (N, n_a) and (N, n_b), one sample per row, raw or already centred.

        Centre a matrix once with :func:`centre` when it meets several others (the
        generator's rows meet every encoder's): the centring is then not repeated.
        """
        a = rows_a if isinstance(rows_a, Centred) else centre(rows_a)
        b = a if self.same else (rows_b if isinstance(rows_b, Centred) else centre(rows_b))
        if a.rows.shape[1] != self.n_a or b.rows.shape[1] != self.n_b or a.rows.shape[0] != b.rows.shape[0]:
            raise ValueError(f"expected rows (N, {self.n_a}) and (N, {self.n_b}), got {tuple(a.rows.shape)} "
                             f"and {tuple(b.rows.shape)}")
        self.update_blocks([(a, b, slice(None))])

    def update_blocks(self, blocks: list[tuple[Centred, Centred, "slice | torch.Tensor"]]) -> None:
        """Add a batch whose b units come in column blocks, each meeting its own view of a.

            acc.update_blocks([(g_on_8x8, vit_rows, slice(0, 2048))])

        Every block's ``a`` carries the same statistics (one batch of a, possibly carried
        to another raster by :class:`rosetta_lite.resample.Resampler`); one multiply per
        block, on centred float32 rows. The residual sums correct for the float32 mean
        not being exactly the batch mean.
        """
        first = blocks[0][0]
        count = first.count
        cross = torch.empty(self.n_a, self.n_b, dtype=torch.float64)
        mean_b, m2_b = torch.empty(self.n_b, dtype=torch.float64), torch.empty(self.n_b, dtype=torch.float64)
        for a, b, columns in blocks:
            if a.count != count or b.count != count:
                raise ValueError("every block of a batch must count the same samples")
            product = (a.rows.T @ b.rows).to(torch.float64).cpu()
            cross[:, columns] = product - torch.outer(a.residual, b.residual) / count
            mean_b[columns], m2_b[columns] = b.mean, b.m2
        self._merge(count, first.mean, mean_b, first.m2, m2_b, cross)

    def _merge(self, n, mean_a, mean_b, m2_a, m2_b, cross) -> None:
        total = self.count + n
        if total == 0:
            return
        weight = self.count * n / total
        delta_a, delta_b = mean_a - self.mean_a, mean_b - self.mean_b
        self.cross += cross + weight * torch.outer(delta_a, delta_b)
        self.m2_a += m2_a + weight * delta_a.square()
        self.m2_b += m2_b + weight * delta_b.square()
        self.mean_a += delta_a * (n / total)
        self.mean_b += delta_b * (n / total)
        self.count = total

    def merge(self, other: "CoMoments") -> "CoMoments":
        """Fold in an accumulator of disjoint data (shards, other processes); returns self."""
        if (other.n_a, other.n_b, other.same) != (self.n_a, self.n_b, self.same):
            raise ValueError(f"cannot merge a ({other.n_a}, {other.n_b}) accumulator into ({self.n_a}, {self.n_b})")
        self._merge(other.count, other.mean_a, other.mean_b, other.m2_a, other.m2_b, other.cross)
        return self

    def variance_a(self) -> torch.Tensor:
        return self.m2_a / max(self.count, 1)

    def variance_b(self) -> torch.Tensor:
        return self.m2_b / max(self.count, 1)

    def dead_a(self) -> torch.Tensor:
        """Units of a that are constant (up to rounding): no correlation is defined for them."""
        return _dead(self.variance_a(), self.mean_a)

    def dead_b(self) -> torch.Tensor:
        return _dead(self.variance_b(), self.mean_b)

    def correlation(self) -> torch.Tensor:
        """Pearson correlation (n_a, n_b), float64; rows and columns of dead units are 0."""
        if self.count < 2:
            raise ValueError(f"need at least 2 samples for a correlation, have {self.count}")
        dead_a, dead_b = self.dead_a(), self.dead_b()
        scale_a = torch.where(dead_a, torch.inf, self.m2_a).rsqrt()
        scale_b = torch.where(dead_b, torch.inf, self.m2_b).rsqrt()
        corr = self.cross * scale_a[:, None] * scale_b[None, :]
        return corr.clamp_(-1.0, 1.0)

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Tensors for saving (safetensors); the count is a 1-element int64 tensor."""
        state = {"count": torch.tensor([self.count], dtype=torch.int64), "mean_a": self.mean_a,
                 "m2_a": self.m2_a, "cross": self.cross}
        if not self.same:
            state.update(mean_b=self.mean_b, m2_b=self.m2_b)
        return {prefix + k: v.contiguous() for k, v in state.items()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str = "", same: bool = False) -> "CoMoments":
        """Rebuild an accumulator saved with ``state_dict``."""
        cross = state[prefix + "cross"].double()
        mean_a, m2_a = state[prefix + "mean_a"].double(), state[prefix + "m2_a"].double()
        mean_b = mean_a if same else state[prefix + "mean_b"].double()
        m2_b = m2_a if same else state[prefix + "m2_b"].double()
        acc = cls(cross.shape[0], cross.shape[1], same, int(state[prefix + "count"][0]),
                  mean_a.clone(), mean_b.clone(), m2_a.clone(), m2_b.clone(), cross.clone())
        return acc
