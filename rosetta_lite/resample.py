"""Exact statistics of bilinearly resized maps, without resizing them.

    shrink = Resampler(grid=32); coarse = shrink.adjoint(rows_bhwu, size=8)

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

from rosetta_lite.stats import Centred, centre


@lru_cache(maxsize=64)
def interpolation_matrix(size: int, grid: int) -> torch.Tensor:
    """The 1-D linear map of ``F.interpolate(..., mode="bilinear", align_corners=False)``: (grid, size).

        interpolation_matrix(8, 32) @ torch.ones(8)  # all ones: each output is a convex combination
    """
    eye = torch.eye(size, dtype=torch.float64)[:, None, :, None].expand(size, 1, size, 1)
    out = F.interpolate(eye, size=(grid, 1), mode="bilinear", align_corners=False)
    return out[:, 0, :, 0].T.contiguous()  # (grid, size)


def _apply_both_axes(matrix: torch.Tensor, maps_bhwu: torch.Tensor) -> torch.Tensor:
    """``matrix`` (m, n) applied to rows and columns of (B, n, n, U) maps: (B, m, m, U)."""
    b, n, _, u = maps_bhwu.shape
    m = matrix.shape[0]
    along_x = torch.matmul(matrix, maps_bhwu.reshape(b * n, n, u))  # (B*n, m, U)
    along_y = torch.matmul(matrix, along_x.reshape(b, n, m * u))  # (B, m, m*U)
    return along_y.reshape(b, m, m, u)


class Resampler:
    """Statistics of maps resized to a ``grid`` x ``grid`` raster, computed at their own size.

        r = Resampler(32); d = r.centre(maps_bhwc_8x8); g_small = r.adjoint(g_rows, 8)
    """

    def __init__(self, grid: int, device: torch.device | str = "cpu") -> None:
        self.grid, self.device = grid, device
        self._matrices: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _for(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(P1^T, P1^T P1, column sums of P1) for maps of side ``size``, float32."""
        if size not in self._matrices:
            p1 = interpolation_matrix(size, self.grid)
            self._matrices[size] = tuple(t.float().to(self.device) for t in (p1.T.contiguous(), p1.T @ p1, p1.sum(0)))
        return self._matrices[size]

    def adjoint(self, centred: Centred, size: int) -> Centred:
        """Grid rows (B * grid^2, U) carried to a size x size raster by P^T; statistics kept."""
        if size == self.grid:
            return centred
        p1_t, _, _ = self._for(size)
        units = centred.rows.shape[1]
        maps_bhwu = centred.rows.view(-1, self.grid, self.grid, units)
        rows = _apply_both_axes(p1_t, maps_bhwu).reshape(-1, units)
        return Centred(centred.count, rows, centred.mean, centred.m2, centred.residual)

    def centre(self, rows: torch.Tensor, size: int) -> Centred:
        """Centre native rows (B * size^2, U) as if resized to the grid; rows are overwritten.

        ``count`` is the number of grid positions, and mean, m2 and residual are those
        of the resized maps, so the result meets grid rows shrunk by :meth:`adjoint`.
        """
        if size == self.grid:
            return centre(rows, in_place=True)
        _, gram, weights_1d = self._for(size)
        units = rows.shape[1]
        maps_bhwu = rows.view(-1, size, size, units)
        count = maps_bhwu.shape[0] * self.grid * self.grid
        weights = (weights_1d[:, None] * weights_1d[None, :])[None, :, :, None]  # (1, s, s, 1)
        approx = (maps_bhwu * weights).sum((0, 1, 2)) / count
        maps_bhwu.sub_(approx)
        residual = (maps_bhwu * weights).sum((0, 1, 2)).double().cpu()
        squares = (maps_bhwu * _apply_both_axes(gram, maps_bhwu)).sum((0, 1, 2)).double().cpu()
        mean = approx.double().cpu() + residual / count
        return Centred(count, rows, mean, squares - residual.square() / count, residual)
