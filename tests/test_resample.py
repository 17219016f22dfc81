import torch
import torch.nn.functional as F

from rosetta_lite.stats.moments import CoMoments, centre
from rosetta_lite.stats.resample import Resampler, interpolation_matrix


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
    got.update_blocks([(resampler.carry(g_centred, 16, 4), d_centred, slice(None))])
    assert got.count == expected.count
    assert torch.allclose(got.mean_b, expected.mean_b, atol=1e-6)
    assert torch.allclose(got.m2_b, expected.m2_b, rtol=1e-5)
    assert (got.correlation() - expected.correlation()).abs().max() < 1e-5


def test_transfer_carries_a_native_map_to_any_side_with_grid_statistics():
    from rosetta_lite.stats.resample import apply_both_axes

    g = torch.Generator().manual_seed(1)
    coarse = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=g)  # a generator layer at 4 x 4
    fine = torch.randn(2, 5, 8, 8, dtype=torch.float64, generator=g)  # an encoder layer at 8 x 8
    resampler = Resampler(16)
    expected = torch.einsum("bchw,bdhw->cd", upsample(coarse, 16), upsample(fine, 16))
    carried = apply_both_axes(resampler.transfer(4, 8).double(), coarse.permute(0, 2, 3, 1))  # (2, 8, 8, 3)
    got = torch.einsum("bhwc,bdhw->cd", carried, fine)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert resampler.transfer(16, 16) is None and resampler.transfer(4, 16).shape == (16, 4)


def test_pairs_meet_at_the_smaller_side_carrying_the_larger_or_at_a_tie_the_narrower():
    from rosetta_lite.mining.plan import meetings

    g_groups = [(4, ["b4"], slice(0, 128)), (8, ["b8"], slice(128, 224)), (32, ["b32"], slice(224, 256))]
    vit = [(8, ["blocks"], slice(0, 2048))]
    got = [(g_group[0], meet, carried) for _, g_group, meet, carried in meetings(g_groups, vit)]
    assert got == [(4, 4, "model"), (8, 8, "generator"), (32, 8, "generator")]
    resnet = [(32, ["layer1"], slice(0, 16)), (4, ["layer4"], torch.arange(16, 528))]
    pairs = meetings(g_groups, resnet)
    assert [group[0] for group, _, _, _ in pairs] == [32, 32, 32, 4, 4, 4]  # a model group's pairs together
    assert [(meet, carried) for _, _, meet, carried in pairs] == [
        (4, "model"), (8, "model"), (32, "model"), (4, "generator"), (4, "generator"), (4, "generator")]


def test_carry_is_the_transfer_on_both_axes_and_keeps_the_statistics():
    from rosetta_lite.stats.resample import apply_both_axes

    resampler = Resampler(16)
    rows = torch.randn(2 * 8 * 8, 3)
    centred = resampler.centre(rows.clone(), 8)
    carried = resampler.carry(centred, 8, 4)
    expected = apply_both_axes(resampler.transfer(8, 4), centred.rows.view(2, 8, 8, 3)).reshape(-1, 3)
    assert carried.rows.shape == (2 * 4 * 4, 3) and torch.allclose(carried.rows, expected)
    assert carried.mean is centred.mean and carried.m2 is centred.m2 and carried.count == centred.count
    assert resampler.carry(centred, 16, 16) is centred  # grid to grid: nothing to carry


def test_scratch_buffers_are_reused_and_squares_are_exact():
    from rosetta_lite.device import scratch
    from rosetta_lite.stats.moments import column_squares

    rows = torch.randn(300, 7)
    first = scratch("test", (10, 7), rows)
    assert scratch("test", (5, 7), rows).data_ptr() == first.data_ptr()  # same memory, no new allocation
    assert torch.allclose(column_squares(rows), rows.double().square().sum(0), rtol=1e-6)
