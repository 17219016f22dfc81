"""Exact statistics of bilinearly resized maps, without resizing them.

    shrink = Resampler(grid=32); coarse = shrink.carry(grid_rows, size=32, side=8)

Bilinear resizing of a size x size map to grid x grid is a linear map ``P`` that acts
separably on rows and columns: ``P = P1 (x) P1`` with ``P1`` of shape (grid, size). The
mining statistics of a resized map ``P d`` against a map ``g`` on the grid only need

- cross-products:  sum_p g(p) (P d)(p) = sum_q (P^T g)(q) d(q)   (shrink g, not grow d),
- sums:            sum_p (P d)(p)      = sum_q c(q) d(q), with c = P^T 1,
- sums of squares: sum_p (P d)(p)^2    = d^T (P^T P) d,

so an encoder's 8 x 8 maps meet the generator's 32 x 32 rows at 64 positions per image
instead of 1,024: the same numbers as resizing first, a sixteenth of the multiplies.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from rosetta_lite.device import scratch
from rosetta_lite.stats.moments import Centred, centre


@lru_cache(maxsize=64)
def interpolation_matrix(size: int, grid: int) -> torch.Tensor:
    """The 1-D linear map of ``F.interpolate(..., mode="bilinear", align_corners=False)``: (grid, size).

        interpolation_matrix(8, 32) @ torch.ones(8)  # all ones: each output is a convex combination
    """
    eye = torch.eye(size, dtype=torch.float64)[:, None, :, None].expand(size, 1, size, 1)
    out = F.interpolate(eye, size=(grid, 1), mode="bilinear", align_corners=False)
    return out[:, 0, :, 0].T.contiguous()  # (grid, size)


def apply_both_axes(matrix: torch.Tensor, maps_bhwu: torch.Tensor, buffer: str | None = None) -> torch.Tensor:
    """``matrix`` (m, n) applied to rows and columns of (B, n, n, U) maps: (B, m, m, U).

        coarse = apply_both_axes(interpolation_matrix(32, 8), maps_bhwu)   # (B, 8, 8, U) from (B, 32, 32, U)

    ``buffer`` names reused buffers (:func:`rosetta_lite.device.scratch`) for the two passes;
    the result then lives until the next call with that name.
    """
    b, n, _, u = maps_bhwu.shape
    m = matrix.shape[0]
    outs = ({} if buffer is None else
            ({"out": scratch(buffer + "/x", (b * n, m, u), maps_bhwu)}, {"out": scratch(buffer, (b, m, m * u), maps_bhwu)}))
    along_x = torch.matmul(matrix, maps_bhwu.reshape(b * n, n, u), **(outs[0] if outs else {}))  # (B*n, m, U)
    along_y = torch.matmul(matrix, along_x.reshape(b, n, m * u), **(outs[1] if outs else {}))  # (B, m, m*U)
    return along_y.reshape(b, m, m, u)


def _gram_squares(maps_bhwu: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """Per unit, sum over images of d^T (G (x) G) d for (B, s, s, U) maps: float64 (U,)."""
    b, s, _, u = maps_bhwu.shape
    along_x = torch.matmul(gram, maps_bhwu.reshape(b * s, s, u), out=scratch("gram_x", (b * s, s, u), maps_bhwu))
    both = torch.matmul(gram, along_x.view(b, s, s * u), out=scratch("gram_xy", (b, s, s * u), maps_bhwu))
    return both.mul_(maps_bhwu.reshape(b, s, s * u)).view(-1, u).sum(0).double()


class Resampler:
    """Statistics of maps resized to a ``grid`` x ``grid`` raster, computed at their own size.

        r = Resampler(32); d = r.centre(rows_8x8, 8); g_small = r.carry(g_rows, 32, 8)
    """

    def __init__(self, grid: int, device: torch.device | str = "cpu") -> None:
        self.grid, self.device = grid, device
        self._matrices: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._weights: dict[tuple, torch.Tensor | None] = {}

    def _for(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(P1^T, P1^T P1, column sums of P1) for maps of side ``size``, float32."""
        if size not in self._matrices:
            p1 = interpolation_matrix(size, self.grid)
            self._matrices[size] = tuple(t.float().to(self.device) for t in (p1.T.contiguous(), p1.T @ p1, p1.sum(0)))
        return self._matrices[size]

    def weights(self, size: int, images: int) -> torch.Tensor:
        """Weight of every native row in the sums over the grid, (images * size^2,): c(y) c(x), c = P1^T 1."""
        key = (size, images)
        if key not in self._weights:
            w1 = self._for(size)[2]
            self._weights[key] = (w1[:, None] * w1[None, :]).flatten().repeat(images).contiguous()
        return self._weights[key]

    def transfer(self, size: int, side: int) -> torch.Tensor | None:
        """``P_side^T P_size`` (side, size), float32: a size-map resized to the grid, then carried to ``side``.

            r = Resampler(32); r.transfer(4, 8)   # (8, 4); None when both are the grid (identity)

        Applied on both axes of a map of side ``size``, it gives the rows that meet maps of
        side ``side`` (centred by :meth:`centre`) with the statistics of both on the grid.
        """
        key = ("transfer", size, side)
        if key not in self._weights:
            eye_grid = torch.eye(self.grid, dtype=torch.float64)
            up = eye_grid if size == self.grid else interpolation_matrix(size, self.grid)  # (grid, size)
            down = eye_grid if side == self.grid else interpolation_matrix(side, self.grid)  # (grid, side)
            matrix = None if size == side == self.grid else (down.T @ up).float().to(self.device).contiguous()
            self._weights[key] = matrix
        return self._weights[key]

    def carry(self, centred: Centred, size: int, side: int, buffer: str | None = None) -> Centred:
        """Centred rows of ``size`` x ``size`` maps carried to ``side`` by :meth:`transfer`; statistics kept.

            r = Resampler(32); g_at_8 = r.carry(r.centre(rows_16x16, 16), 16, 8)

        The carried rows meet rows of ``side`` x ``side`` maps with the cross-products of both
        maps resized to the grid. ``buffer`` names reused buffers (see :func:`apply_both_axes`).
        """
        transfer = self.transfer(size, side)
        if transfer is None:
            return centred
        images = centred.rows.shape[0] // (size * size)
        maps_bhwu = centred.rows.view(images, size, size, -1)
        rows = apply_both_axes(transfer, maps_bhwu, buffer).view(-1, maps_bhwu.shape[-1])
        return Centred(centred.count, rows, centred.mean, centred.m2, centred.residual)

    def centre(self, rows: torch.Tensor, size: int) -> Centred:
        """Centre native rows (B * size^2, U) as if resized to the grid; rows are overwritten.

        ``count`` is the number of grid positions, and mean, m2 and residual are those
        of the resized maps, so the result meets grid rows shrunk by :meth:`carry`.
        Weighted sums are matrix-vector products (no temporary of the rows' size).
        """
        if size == self.grid:
            return centre(rows, in_place=True)
        _, gram, _ = self._for(size)
        units = rows.shape[1]
        images = rows.shape[0] // (size * size)
        weights = self.weights(size, images)
        count = images * self.grid * self.grid
        approx = (weights @ rows) / count
        rows.sub_(approx)
        residual = (weights @ rows).double()
        squares = _gram_squares(rows.view(images, size, size, units), gram)
        mean = approx.double() + residual / count
        return Centred(count, rows, mean, squares - residual.square() / count, residual)
