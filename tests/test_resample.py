import torch
import torch.nn.functional as F

from rosetta_lite.resample import Resampler, interpolation_matrix
from rosetta_lite.stats import CoMoments, centre


def upsample(maps_bchw, grid):
    return F.interpolate(maps_bchw, size=(grid, grid), mode="bilinear", align_corners=False)


def test_interpolation_matrix_is_torchs_bilinear_resize():
    maps = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    p1 = interpolation_matrix(8, 32)
    assert p1.shape == (32, 8) and torch.allclose(p1.sum(1), torch.ones(32, dtype=torch.float64))
    separable = torch.einsum("yi,bcij,xj->bcyx", p1, maps, p1)
    assert torch.allclose(separable, upsample(maps, 32), atol=1e-12)


def test_statistics_at_native_size_equal_those_of_resized_maps():
    g = torch.Generator().manual_seed(0)
    grid_maps = torch.randn(3, 5, 16, 16, generator=g) + 2  # "generator" units on the grid
    small = torch.randn(3, 4, 4, 4, generator=g) * 0.5 - 1  # "encoder" units at 4 x 4
    small[:, 0] += grid_maps[:, 0, ::4, ::4]  # some shared structure

    def rows(maps):
        return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]).contiguous()

    expected = CoMoments(5, 4)
    expected.update(rows(grid_maps), rows(upsample(small, 16)))
    resampler = Resampler(16)
    g_centred = centre(rows(grid_maps))
    d_centred = resampler.centre(rows(small), 4)
    got = CoMoments(5, 4)
    got.update_blocks([(resampler.adjoint(g_centred, 4), d_centred, slice(None))])
    assert got.count == expected.count
    assert torch.allclose(got.mean_b, expected.mean_b, atol=1e-6)
    assert torch.allclose(got.m2_b, expected.m2_b, rtol=1e-5)
    assert (got.correlation() - expected.correlation()).abs().max() < 1e-5
