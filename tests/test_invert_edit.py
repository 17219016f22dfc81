"""Rosetta-guided inversion and editing: map transforms, the objective, recovery, bad inputs."""

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.edit import (box_mask, edit, fill_region, paste_maps, remove, scale_unit, shift,
                               shift_maps, zoom_maps)
from rosetta_lite.invert import (InversionError, Objective, activation_match, invert, prepare_target,
                                 rosetta_pairs)
from rosetta_lite.metrics import mean_ci, paired_difference, psnr, ssim
from rosetta_lite.runs import load_dictionaries

torch.set_num_threads(1)
RUN = "runs/lite"


@pytest.fixture(scope="module")
def dictionary():
    if not os.path.exists(os.path.join(RUN, "dictionary.json")):
        pytest.skip("no mined lite dictionary in runs/lite")
    return load_dictionaries(RUN)[0]


@pytest.fixture(scope="module")
def gan():
    return zoo.load("lite-gan")


# ---- map transforms on hand-made maps ----

def _dot(h=8, w=8, y=2, x=3):
    maps = torch.zeros(1, 1, h, w)
    maps[0, 0, y, x] = 1.0
    return maps


def test_shift_moves_content_and_fills_with_rest():
    out = shift_maps(_dot(), 0.25, 0.5, resting=-1.0)  # 2 right, 4 down on an 8 x 8 map
    assert out[0, 0, 6, 5] == 1.0 and out.eq(1.0).sum() == 1
    assert out[0, 0, :4, :].eq(-1.0).all() and out[0, 0, :, :2].eq(-1.0).all()
    back = shift_maps(out, -0.25, -0.5, resting=-1.0)
    assert back[0, 0, 2, 3] == 1.0
    per_channel = shift_maps(torch.zeros(1, 2, 4, 4), 0.5, 0, resting=torch.tensor([3.0, 4.0]))
    assert per_channel[0, 0, :, :2].eq(3).all() and per_channel[0, 1, :, :2].eq(4).all()


def test_zoom_in_magnifies_about_centre_and_zoom_out_fills():
    maps = torch.zeros(1, 1, 8, 8)
    maps[..., 3:5, 3:5] = 1.0  # central 2 x 2 block
    zin = zoom_maps(maps, 2.0)
    assert (zin > 0.5).sum() == 16 and zin[0, 0, 2:6, 2:6].gt(0.5).all()
    zout = zoom_maps(torch.ones(1, 1, 8, 8), 0.5, resting=-2.0)
    assert torch.allclose(zout[0, 0, 0, 0], torch.tensor(-2.0)) and torch.allclose(zout[0, 0, 4, 4], torch.tensor(1.0))
    assert torch.allclose(zoom_maps(maps, 1.0), maps, atol=1e-6)
    with pytest.raises(ValueError):
        zoom_maps(maps, 0)


def test_paste_fill_and_box():
    assert box_mask(8, 8, (0, 0, 0.5, 0.5)).sum() == 16
    a, b = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    pasted = paste_maps(a, b, (0.5, 0.0, 1.0, 0.5))
    assert pasted[0, 0, 4:, :4].eq(1).all() and pasted.sum() == 16
    moved = paste_maps(a, _dot(y=0, x=0), (0, 0, 0.25, 0.25), to=(0.5, 0.5))
    assert moved[0, 0, 4, 4] == 1 and moved.sum() == 1
    filled = fill_region(a, 5.0, (0, 0, 0.25, 1.0))
    assert filled[0, 0, :2].eq(5).all() and filled[0, 0, 2:].eq(0).all()
    assert remove()("b4", _dot(), torch.tensor([0.5])).eq(0.5).all()
    scaled = scale_unit(3.0)("b4", _dot(), torch.tensor([0.0]))
    assert scaled.max() == 3.0


# ---- objective ----

def test_activation_match_sign_and_normalisation():
    g = torch.randn(2, 3, 8, 8)
    assert torch.allclose(activation_match(g, g), torch.ones(2), atol=1e-5)
    assert torch.allclose(activation_match(g, 5 * g), torch.ones(2), atol=1e-5)  # scale-free
    assert torch.allclose(activation_match(g, -g), -torch.ones(2), atol=1e-5)
    assert activation_match(g, g).min() > activation_match(g, torch.randn(2, 3, 8, 8)).max()


def test_objective_rewards_matching_maps(gan, dictionary):
    clip = zoo.load("lite-clip")
    z = gan.sample_latents(3, seed=5)
    with torch.no_grad():
        targets = gan.generate(z).clamp(0, 1)
    objective = Objective(gan, targets, dictionary, [clip], None, beta=1.0)
    with torch.no_grad():
        own = objective.terms(z)
        other = objective.terms(gan.sample_latents(3, seed=99))
    assert (own["act"] > other["act"]).float().mean() >= 2 / 3  # the target's own latent matches best
    assert torch.allclose(own["total"], own["rec"] + 0.05 * own["reg"] - own["act"], atol=1e-6)
    assert own["pixel"].max() < 1e-10


def test_inversion_recovers_a_gan_sample(gan):
    """Mean PSNR >= 18 dB on 4 GAN samples with 80 steps x 2 restarts (a random latent gives ~11 dB)."""
    z = gan.sample_latents(4, seed=123)
    with torch.no_grad():
        targets = gan.generate(z).clamp(0, 1)
    result = invert(gan, targets, steps=80, restarts=2, lr=0.1, progress=False)
    with torch.no_grad():
        start = gan.generate(gan.sample_latents(4, seed=0)).clamp(0, 1)
    assert psnr(result.images, targets).mean() >= 18.0
    assert psnr(result.images, targets).mean() > psnr(start, targets).mean() + 5
    assert result.z.shape == (4, gan.z_dim) and result.stopped_at is None


def test_edit_shift_moves_the_generation(gan, dictionary):
    z = gan.sample_latents(2, seed=3)
    result = edit(gan, z, shift(0.25, 0), dictionary, units="all", steps=20, progress=False)
    assert result.after.shape == result.before.shape
    assert result.history[-1] < result.history[0]


# ---- bad inputs ----

def test_wrong_size_and_channels_are_converted_with_warnings():
    with pytest.warns(UserWarning, match="RGB"):
        with pytest.warns(UserWarning, match="resized"):
            out = prepare_target(torch.rand(2, 1, 64, 48), 32)
    assert out.shape == (2, 3, 32, 32)
    with pytest.warns(UserWarning, match="alpha"):
        assert prepare_target(torch.rand(4, 32, 32), 32).shape == (1, 3, 32, 32)
    with pytest.raises(InversionError, match="channels"):
        prepare_target(torch.rand(1, 2, 32, 32), 32)


def test_dictionary_of_another_generator_is_refused(gan, dictionary):
    other = dataclasses.replace(dictionary, settings=dict(dictionary.settings, generator="other-gan"))
    with pytest.raises(InversionError, match="mined with generator 'other-gan'"):
        invert(gan, torch.rand(1, 3, 32, 32), other, encoders=[zoo.load("lite-clip")], steps=1, progress=False)
    with pytest.raises(InversionError, match="other-gan"):
        edit(gan, gan.sample_latents(1), shift(0.1, 0), other, steps=1, progress=False)


def test_empty_rosetta_units_are_refused(gan, dictionary):
    empty = dataclasses.replace(dictionary, clusters=[])
    assert rosetta_pairs(empty, "lite-clip") == []
    with pytest.raises(InversionError, match="no Rosetta units"):
        invert(gan, torch.rand(1, 3, 32, 32), empty, encoders=[zoo.load("lite-clip")], steps=1, progress=False)
    with pytest.raises(ValueError, match="no units"):
        edit(gan, gan.sample_latents(1), shift(0.1, 0), empty, steps=1, progress=False)


def test_nan_stops_and_keeps_best(gan):
    calls = {"n": 0}

    def flaky(model, z):
        calls["n"] += 1
        out = model(z)
        return out * float("nan") if calls["n"] > 6 else out

    bad = dataclasses.replace(gan, forward=flaky)
    targets = torch.rand(1, 3, 32, 32)
    with pytest.warns(RuntimeWarning, match="non-finite loss at step"):
        result = invert(bad, targets, steps=20, restarts=1, progress=False)
    assert result.stopped_at is not None and result.stopped_at < 20
    assert torch.isfinite(result.images).all() and torch.isfinite(result.loss).all()


def test_metrics():
    a = torch.rand(3, 3, 16, 16)
    assert torch.isinf(psnr(a, a)).sum() == 0 and psnr(a, a).min() > 90
    assert torch.allclose(ssim(a, a), torch.ones(3), atol=1e-6)
    summary = mean_ci([1.0, 2.0, 3.0])
    assert summary["mean"] == 2.0 and summary["ci95"][0] < 2 < summary["ci95"][1]
    assert paired_difference([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])["mean"] == 1.0
