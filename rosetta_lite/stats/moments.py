"""Streaming co-moments of two sets of units: the exact Pearson correlation in one pass.

    acc = CoMoments(n_a, n_b); acc.update(rows_a, rows_b); corr = acc.correlation()

Each ``update`` takes a batch of samples as rows (samples = images x positions): one
matrix multiply of the batch-centred data, in float32, then a float64 merge of means and
centred co-moments (Chan, Golub and LeVeque's pairwise update). The result is the
Pearson correlation over every sample ever seen, not an average of per-batch scores,
and two accumulators over disjoint data merge exactly (``merge``).

Accumulators live on the device of the rows they are given (float64 on a GPU too), so
that a batch never travels back to the CPU; ``state_dict`` returns CPU tensors. A table
too large for the GPU (full scale: 11,904 x 36,864 x 8 B = 3.5 GB per GAN x ViT-B pair)
stays in host memory with ``host_tables=True``: the products are still computed on the
device, one column chunk of at most ``chunk_bytes`` at a time, and added into the host
table; the statistics vectors stay on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rosetta_lite.device import scratch

#: a unit is dead when its standard deviation is at most this fraction of its mean's size
#: (or zero): a constant up to float32 rounding, whatever the scale of the model's units
DEAD_RELATIVE_STD = 1e-6
#: default bound on one column chunk of a table (n_a x columns, float64) handled at once: the
#: device then holds at most this much product (float32 half of it) per step, whatever n_b is
DEFAULT_CHUNK_BYTES = 256 * 2**20
#: a chunk is never narrower than this many columns, whatever ``chunk_bytes`` says: narrower
#: products fall to matrix-vector kernels that sum in float32 one row after another (measured on
#: the lite zoo with 1-column chunks: 2e-5 from the float64 correlation instead of 2e-7)
MIN_CHUNK_COLUMNS = 64


def check_chunk_bytes(chunk_bytes: int) -> int:
    """``chunk_bytes`` if it is a positive integer, else a ValueError.

        check_chunk_bytes(64 * 2**20)
    """
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be a positive number of bytes, got {chunk_bytes!r}")
    return chunk_bytes


def _sub_columns(columns: "slice | torch.Tensor", first: int, last: int, n_b: int) -> "slice | torch.Tensor":
    """The table columns of a block's own columns ``first:last`` (the block's ``columns`` being a slice or an index)."""
    if isinstance(columns, slice):
        start, stop, stride = columns.indices(n_b)
        if stride != 1:
            raise ValueError(f"block columns must be a contiguous slice or an index tensor, got {columns}")
        return slice(start + first, start + last)
    return columns[first:last]


def _with_rows(blocks: list[tuple]) -> list[tuple]:
    """Blocks as (a, b, columns, rows), a block without rows filling every row of the table."""
    return [(*block, slice(None)) if len(block) == 3 else tuple(block) for block in blocks]


def _cells(rows: "slice | torch.Tensor", columns: "slice | torch.Tensor", n_a: int, n_b: int) -> tuple | None:
    """The index of a block's cells in the table (None: the whole table), for slices or index tensors alike."""
    if isinstance(rows, slice) and isinstance(columns, slice):
        whole = rows.indices(n_a) == (0, n_a, 1) and columns.indices(n_b) == (0, n_b, 1)
        return None if whole else (rows, columns)
    if isinstance(rows, torch.Tensor) and isinstance(columns, torch.Tensor):
        return rows[:, None], columns  # both indexed: their outer product, not pairs
    return rows, columns


def dead_units(variance: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the units whose maps are constant: no variance, or a spread lost in rounding.

        dead_units(acc.variance_a(), acc.mean_a)   # tensor([False, True, ...])
    """
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


def column_squares(rows: torch.Tensor) -> torch.Tensor:
    """Per column, the sum of squares of ``rows`` (N, units), as float64 on the rows' device.

        column_squares(torch.ones(10, 3))   # tensor([10., 10., 10.], dtype=torch.float64)
    """
    return torch.mul(rows, rows, out=scratch("squares", tuple(rows.shape), rows)).sum(0).double()


def centre(rows: torch.Tensor, *, in_place: bool = False) -> Centred:
    """Centre rows (N, units) about their float32 mean; exact statistics in float64.

        c = centre(torch.randn(1000, 8))

    ``in_place=True`` overwrites ``rows`` (for fresh matrices: no second one of the full
    size is allocated); squares go through a reused buffer for the same reason.
    """
    rows = rows.float()
    count = rows.shape[0]
    approx = rows.sum(0) / count
    centred = rows.sub_(approx) if in_place else rows - approx
    residual = centred.sum(0).double()
    squares = column_squares(centred)
    mean = approx.double() + residual / count
    return Centred(count, centred, mean, squares - residual.square() / count, residual)


@dataclass
class CoMoments:
    """Count, means, centred sums of squares and cross-products of units a and b.

        acc = CoMoments(3, 4); acc.update(torch.randn(100, 3), torch.randn(100, 4))

    ``same=True`` declares that b is a (the G x G table): the cross-product is then also
    the sums of squares, and ``update`` takes a single matrix.

    ``host_tables=True`` keeps ``cross`` in host memory whatever device the rows are on
    (``to`` moves only the statistics vectors): each batch's product is computed on the
    rows' device in column chunks of at most ``chunk_bytes`` (float64 size of the
    chunk; never under :data:`MIN_CHUNK_COLUMNS` columns), the float64 corrections
    folded in there, and each chunk added to the host table. With ``host_tables=False``
    a product larger than ``chunk_bytes`` is also computed in chunks, so that no
    product of the whole table is ever held at once; the same ``chunk_bytes`` gives
    the same float32 products in both places (only float64 rounding differs).
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
    host_tables: bool = False  # cross stays in host memory; products come in chunks from the device
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # bound on one float64 column chunk of cross handled at once

    def __post_init__(self) -> None:
        if self.same and self.n_a != self.n_b:
            raise ValueError("same=True needs n_a == n_b")
        check_chunk_bytes(self.chunk_bytes)
        if self.mean_a is None:
            f64 = dict(dtype=torch.float64)
            self.mean_a, self.m2_a = torch.zeros(self.n_a, **f64), torch.zeros(self.n_a, **f64)
            self.mean_b, self.m2_b = torch.zeros(self.n_b, **f64), torch.zeros(self.n_b, **f64)
            self.cross = torch.zeros(self.n_a, self.n_b, **f64)

    @property
    def device(self) -> torch.device:
        """Where batches are accumulated: the statistics vectors' device (the table's unless on the host)."""
        return self.mean_a.device

    def to(self, device: torch.device | str) -> "CoMoments":
        """Move the accumulator to ``device`` (in place; the table stays on the CPU if ``host_tables``); returns self.

            acc.to("cuda")
        """
        for name in ("mean_a", "mean_b", "m2_a", "m2_b"):
            setattr(self, name, getattr(self, name).to(device))
        self.cross = self.cross.to("cpu" if self.host_tables else device)
        return self

    def columns_per_chunk(self) -> int:
        """Columns of ``cross`` per chunk: n_a x columns x 8 B within ``chunk_bytes``, but MIN_CHUNK_COLUMNS or more.

            CoMoments(1000, 5000, chunk_bytes=8 * 1000 * 128).columns_per_chunk()   # 128
        """
        return max(MIN_CHUNK_COLUMNS, self.chunk_bytes // (8 * max(self.n_a, 1)))

    def similarity(self) -> torch.Tensor:
        """The table best buddies rank: the Pearson correlation (see :meth:`correlation`)."""
        return self.correlation()

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

    def update_blocks(self, blocks: list[tuple]) -> None:
        """Add a batch whose units come in blocks of the table, each meeting its own view of a.

            acc.update_blocks([(g_on_8x8, vit_rows, slice(0, 2048))])
            acc.update_blocks([(g_4x4_group, resnet_rows_at_4x4, slice(0, 16), slice(0, 128))])

        A block is ``(a, b, columns)`` or ``(a, b, columns, rows)``: its product fills the
        table's ``rows`` (default: all of a's units) and ``columns``, each a contiguous slice
        or an index tensor. Every block's ``a`` carries the statistics of all n_a units of one
        batch (even where its rows hold only the block's ``rows``), possibly carried to
        another raster by :class:`rosetta_lite.stats.resample.Resampler`; the blocks cover
        every cell of the table once. One multiply per block, on centred float32 rows, added
        straight into the float64 table. The residual sums (the float32 mean not being
        exactly the batch mean) and Chan's shift of the running means are then one rank-2
        update of the whole table. A product wider than ``chunk_bytes`` allows is multiplied
        in column chunks; with ``host_tables`` every chunk, rank-2 share included, is added
        to the host table.
        """
        first = blocks[0][0]
        count = first.count
        if first.mean.device != self.device and self.count == 0:
            self.to(first.mean.device)  # a fresh accumulator follows its data (a host table stays on the host)
        device = self.device
        mean_b, m2_b, residual_b = (torch.empty(self.n_b, dtype=torch.float64, device=device) for _ in range(3))
        for a, b, columns, *_ in blocks:
            if a.count != count or b.count != count:
                raise ValueError("every block of a batch must count the same samples")
            mean_b[columns], m2_b[columns], residual_b[columns] = b.mean, b.m2, b.residual
        total = self.count + count
        weight = self.count * count / total
        delta_a, delta_b = first.mean - self.mean_a, mean_b - self.mean_b
        left = torch.stack([first.residual, delta_a], 1)  # (n_a, 2)
        right = torch.stack([residual_b * (-1.0 / count), delta_b * weight])  # (2, n_b)
        step = self.columns_per_chunk()
        if self.host_tables:
            self._add_chunks_to_host(blocks, left, right, step)
        else:
            for a, b, columns, rows in _with_rows(blocks):
                width = b.rows.shape[1]
                for first_column in range(0, width, step):  # one pass unless the product is over chunk_bytes
                    last = min(first_column + step, width)
                    rows_b = b.rows if last - first_column == width else b.rows[:, first_column:last]
                    cells = _cells(rows, _sub_columns(columns, first_column, last, self.n_b), self.n_a, self.n_b)
                    if cells is None:
                        self.cross += a.rows.T @ rows_b
                    else:
                        self.cross[cells] += a.rows.T @ rows_b
            self.cross.addmm_(left, right)
        self._merge_vectors(count, first.mean, mean_b, first.m2, m2_b)

    def _add_chunks_to_host(self, blocks: list[tuple], left: torch.Tensor, right: torch.Tensor, step: int) -> None:
        """Each block's product, chunk by chunk on the rows' device, with its share of the rank-2
        correction added there in float64, then added into the host table.

        The correction is folded into each chunk (the blocks cover every cell once), so
        the host table is read and written once per batch, not twice: on the host that
        pass, not the device's multiply, is what a batch waits for.
        """
        for a, b, columns, rows in _with_rows(blocks):
            width = b.rows.shape[1]
            for first_column in range(0, width, step):
                last = min(first_column + step, width)
                target = _sub_columns(columns, first_column, last, self.n_b)
                chunk = (a.rows.T @ b.rows[:, first_column:last]).double()  # float32 multiply, float64 sum
                chunk.addmm_(left[rows], right[:, target])
                if chunk.device != self.cross.device:
                    # through one reused host buffer: no fresh chunk-sized allocation per step
                    chunk = scratch("host_tables/chunk", tuple(chunk.shape), self.cross).copy_(chunk)
                cells = _cells(rows, target, self.n_a, self.n_b)
                if cells is None:
                    self.cross += chunk
                else:
                    self.cross[cells] += chunk

    def _merge_vectors(self, n, mean_a, mean_b, m2_a, m2_b) -> None:
        total = self.count + n
        weight = self.count * n / total
        delta_a, delta_b = mean_a - self.mean_a, mean_b - self.mean_b
        self.m2_a += m2_a + weight * delta_a.square()
        self.m2_b += m2_b + weight * delta_b.square()
        self.mean_a += delta_a * (n / total)
        self.mean_b += delta_b * (n / total)
        self.count = total

    def _merge(self, n, mean_a, mean_b, m2_a, m2_b, cross) -> None:
        total = self.count + n
        if total == 0:
            return
        weight = self.count * n / total
        table = self.cross.device  # the host, with host_tables; the vectors' device otherwise
        self.cross += cross.to(table)
        self.cross.addr_((mean_a - self.mean_a).to(table), (mean_b - self.mean_b).to(table), alpha=weight)
        self._merge_vectors(n, mean_a, mean_b, m2_a, m2_b)

    def merge(self, other: "CoMoments") -> "CoMoments":
        """Fold in an accumulator of disjoint data (shards, other processes); returns self."""
        if not isinstance(other, CoMoments):
            raise ValueError(f"cannot merge a {type(other).__name__} into Pearson co-moments")
        if (other.n_a, other.n_b, other.same) != (self.n_a, self.n_b, self.same):
            raise ValueError(f"cannot merge a ({other.n_a}, {other.n_b}) accumulator into ({self.n_a}, {self.n_b})")
        device = self.device
        self._merge(other.count, *(t.to(device) for t in (other.mean_a, other.mean_b, other.m2_a, other.m2_b)),
                    other.cross)
        return self

    def variance_a(self) -> torch.Tensor:
        return self.m2_a / max(self.count, 1)

    def variance_b(self) -> torch.Tensor:
        return self.m2_b / max(self.count, 1)

    def dead_a(self) -> torch.Tensor:
        """Units of a that are constant (up to rounding): no correlation is defined for them."""
        return dead_units(self.variance_a(), self.mean_a)

    def dead_b(self) -> torch.Tensor:
        return dead_units(self.variance_b(), self.mean_b)

    def correlation(self) -> torch.Tensor:
        """Pearson correlation (n_a, n_b), float64, on the CPU; rows and columns of dead units are 0."""
        if self.count < 2:
            raise ValueError(f"need at least 2 samples for a correlation, have {self.count}")
        dead_a, dead_b = self.dead_a(), self.dead_b()
        table = self.cross.device
        scale_a = torch.where(dead_a, torch.inf, self.m2_a).rsqrt().to(table)
        scale_b = torch.where(dead_b, torch.inf, self.m2_b).rsqrt().to(table)
        corr = (self.cross * scale_a[:, None]).mul_(scale_b[None, :])  # one table-sized temporary, not two
        return corr.clamp_(-1.0, 1.0).cpu()

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Tensors for saving (safetensors), on the CPU; the count is a 1-element int64 tensor."""
        state = {"count": torch.tensor([self.count], dtype=torch.int64), "mean_a": self.mean_a,
                 "m2_a": self.m2_a, "cross": self.cross}
        if not self.same:
            state.update(mean_b=self.mean_b, m2_b=self.m2_b)
        return {prefix + k: v.contiguous().cpu() for k, v in state.items()}

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
