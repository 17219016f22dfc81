"""Rosetta-guided inversion and editing: map transforms, the objective, recovery, bad inputs."""

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.applications.edit import (
    EditResult,
    NoUnitsToEdit,
    add,
    box_mask,
    edit,
    fill_region,
    paste,
    paste_maps,
    remove,
    scale_unit,
    shift,
    shift_maps,
    zoom,
    zoom_maps,
)
from rosetta_lite.applications.invert import (
    InversionError,
    Objective,
    activation_match,
    check_dictionary,
    invert,
    prepare_target,
    standardise,
)
from rosetta_lite.book.reading import read_editing
from rosetta_lite.dictionary.runs import load_dictionaries
from rosetta_lite.evaluation.editing import evaluate_editing, pixel_transform, transform_fidelity
from rosetta_lite.evaluation.metrics import mean_ci, paired_difference, psnr, ssim
from rosetta_lite.world import ShapesWorld

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dictionary(lite_run):
    return load_dictionaries(lite_run)[0]


@pytest.fixture(scope="module")
def generator(dictionary):
    return zoo.load(dictionary.generator)  # the lite zoo's default generator


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
    assert remove(everywhere=True)("b4", _dot(), torch.tensor([0.5])).eq(0.5).all()
    scaled = scale_unit(3.0)("b4", _dot(), torch.tensor([0.0]))
    assert scaled.max() == 3.0


@pytest.mark.parametrize("dx, dy", [(0.25, 0), (-0.25, 0), (0, 0.25), (0, -0.375), (0.5, -0.25),
                                    (-0.125, 0.625), (1.0, 0), (0, -1.5)])
def test_shift_any_direction_and_amount(dx, dy):
    maps = torch.arange(64.0).view(1, 1, 8, 8) + 1  # every cell distinct and positive
    out = shift_maps(maps, dx, dy, resting=-1.0)
    sx, sy = int(dx * 8), int(dy * 8)
    for y in range(8):
        for x in range(8):
            src_y, src_x = y - sy, x - sx
            expected = maps[0, 0, src_y, src_x] if 0 <= src_y < 8 and 0 <= src_x < 8 else -1.0
            assert out[0, 0, y, x] == expected, (y, x)


def test_shift_by_a_fraction_of_a_cell_is_consistent_across_resolutions():
    """A shift is a fraction of the side: 0.1 moves a 4 x 4 map by 0.4 cell and a 32 x 32 map
    by 3.2 cells, the same distance in the image (not 0 and 3 cells after rounding)."""
    ramp = lambda n: ((torch.arange(n) + 0.5) / n).view(1, 1, 1, n).expand(1, 1, n, n)  # value = x
    for n in (4, 8, 32):
        out = shift_maps(ramp(n), 0.1, 0.0, resting=-5.0)
        inside = ramp(n) - 0.1 >= 0.5 / n  # cells whose source lies between the first and last centre
        assert torch.allclose(out[inside], (ramp(n) - 0.1)[inside], atol=1e-5), n
        uncovered = int(0.1 * n - 0.5)  # cells whose source is a whole cell or more outside the map
        assert out[..., :uncovered].eq(-5.0).all() and out[..., 0].lt(0).all(), n  # at (or towards) rest
    half = shift_maps(torch.ones(1, 1, 4, 4), 0.125, 0.0, resting=0.0)  # half a cell
    assert torch.allclose(half[0, 0, :, 0], torch.full((4,), 0.5)) and half[0, 0, :, 1:].eq(1).all()


def test_zoom_out_shrinks_about_centre_and_in_out_are_inverse_inside():
    maps = torch.zeros(1, 1, 8, 8)
    maps[..., 2:6, 2:6] = 1.0  # central 4 x 4 block
    zout = zoom_maps(maps, 0.5, resting=0.0)
    assert (zout > 0.5).sum() == 4 and zout[0, 0, 3:5, 3:5].gt(0.5).all()  # the block halves per side
    assert zout[0, 0, 0].eq(0).all() and zout[0, 0, :, 0].eq(0).all()  # uncovered border at rest
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(2, 3, 16, 16)
    back = zoom_maps(zoom_maps(smooth, 0.5), 2.0)
    assert torch.allclose(back[..., 4:12, 4:12], smooth[..., 4:12, 4:12], atol=0.05)
    per_channel = zoom_maps(torch.zeros(1, 2, 8, 8), 0.5, resting=torch.tensor([3.0, 4.0]))
    assert per_channel[0, 0, 0, 0] == 3.0 and per_channel[0, 1, 0, 0] == 4.0
    assert zoom(2.0)("b8", maps, torch.tensor([0.0])).shape == maps.shape


def test_edge_fill_repeats_the_border_instead_of_rest():
    maps = torch.arange(16.0).view(1, 1, 4, 4)
    moved = shift_maps(maps, 0.25, 0.0, resting=-1.0, fill="edge")
    assert torch.equal(moved[..., 1:], maps[..., :3]) and torch.equal(moved[..., 0], maps[..., 0])
    out = zoom_maps(torch.ones(1, 1, 8, 8), 0.5, resting=-2.0, fill="edge")
    assert torch.allclose(out, torch.ones(1, 1, 8, 8))  # nothing at rest: the border goes on
    with pytest.raises(ValueError, match="fill"):
        zoom_maps(maps, 0.5, fill="mirror")


def test_paste_edit_copies_a_region_between_images_for_the_edited_channels():
    dst = torch.zeros(2, 2, 8, 8)
    source = {"b8": torch.stack([torch.full((3, 8, 8), 1.0), torch.full((3, 8, 8), 2.0)])}
    source["b8"][:, 2] = 9.0  # a channel that is not edited must not leak in
    fn = paste(source, (0.0, 0.0, 0.5, 1.0))
    out = fn("b8", dst, torch.zeros(2), channels=[0, 1])
    assert out[0, :, :4].eq(1).all() and out[1, :, :4].eq(2).all() and out[:, :, 4:].eq(0).all()
    assert getattr(fn, "local", False)
    moved = paste({"b8": source["b8"][:1]}, (0.0, 0.0, 0.25, 0.25), to=(0.75, 0.75))("b8", dst, torch.zeros(2),
                                                                                        channels=[0, 1])
    assert moved[:, :, 6:, 6:].eq(1).all() and moved.sum() == 2 * 2 * 4  # same source for every image


def test_remove_brings_the_concept_down_to_rest_only_where_it_is_high():
    maps = torch.full((1, 2, 4, 4), -1.0)
    maps[..., 1:3, 1:3] = 5.0  # the concept: high in the middle, below rest elsewhere
    rest = torch.tensor([0.5, 1.0])
    out = remove()("b4", maps, rest)
    assert out[0, 0, 1:3, 1:3].eq(0.5).all() and out[0, 1, 1:3, 1:3].eq(1.0).all()
    assert out[..., 0, :].eq(-1).all()  # absent cells stay absent
    everywhere = remove(everywhere=True)("b4", maps, rest)
    assert everywhere[0, 0].eq(0.5).all() and everywhere[0, 1].eq(1.0).all()


def test_add_raises_a_concept_inside_a_box_only():
    maps = torch.zeros(1, 2, 8, 8)
    rest, std = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0])
    out = add((0.5, 0.0, 1.0, 0.5), strength=2.0)("b8", maps, rest, std=std)
    assert out[0, 0, 4:, :4].eq(2.0).all() and out[0, 1, 4:, :4].eq(8.0).all()  # rest + 2 std, per unit
    assert out[0, :, :4].eq(0).all() and out[0, :, :, 4:].eq(0).all()
    assert add((0, 0, 1, 1), 3.0)("b8", maps, rest).eq(rest.view(1, 2, 1, 1) + 3).all()  # no std: 1


def test_scale_unit_scales_the_deviation_from_rest_inside_a_box():
    maps = torch.tensor([[[[1.0, 3.0], [5.0, 2.0]]]])
    out = scale_unit(3.0)("b4", maps, torch.tensor([2.0]))
    assert torch.equal(out, torch.tensor([[[[-1.0, 5.0], [11.0, 2.0]]]]))  # rest + 3 (x - rest)
    boxed = scale_unit(0.0, (0.0, 0.0, 0.5, 1.0))("b4", maps, torch.tensor([2.0]))
    assert torch.equal(boxed, torch.tensor([[[[2.0, 2.0], [5.0, 2.0]]]]))  # top row to rest, bottom kept


def test_pixel_transform_matches_the_map_transform():
    images = torch.rand(2, 3, 8, 8)
    moved, covered = pixel_transform(images, "shift", (0.25, 0.0))
    assert torch.equal(moved[..., 2:], images[..., :6]) and covered[..., :2].logical_not().all()
    with pytest.raises(ValueError, match="shift"):
        pixel_transform(images, "rotate", 1)


def test_transform_fidelity_scores_the_edit_against_the_transformed_original():
    before = torch.rand(2, 3, 8, 8)
    moved, _ = pixel_transform(before, "shift", (0.25, 0.0))
    perfect = EditResult(None, None, before, moved, {}, {}, [])
    edited, unedited = transform_fidelity(perfect, "shift", (0.25, 0.0))
    assert edited.shape == (2,) and (edited >= 99).all() and (unedited < 20).all()
    untouched = dataclasses.replace(perfect, after=before)
    assert torch.equal(transform_fidelity(untouched, "shift", (0.25, 0.0))[0], unedited)


def test_best_match_is_each_generator_units_highest_similarity(dictionary):
    table = dictionary.similarity("lite-clip").clone()
    table[0] = float("nan")
    table[0, 3] = 0.5
    probe = dataclasses.replace(dictionary, tensors={**dictionary.tensors, "corr/lite-clip": table})
    values, units = probe.best_match("lite-clip")
    assert values.shape == (table.shape[0],) and values[0] == 0.5 and units[0] == 3
    assert torch.equal(values[1:], table[1:].nan_to_num(-1).max(1).values)


# ---- objective ----

def test_activation_match_sign_and_normalisation():
    g = torch.randn(2, 3, 8, 8)
    assert torch.allclose(activation_match(g, g), torch.ones(2), atol=1e-5)
    assert torch.allclose(activation_match(g, 5 * g), torch.ones(2), atol=1e-5)  # scale-free
    assert torch.allclose(activation_match(g, -g), -torch.ones(2), atol=1e-5)
    assert activation_match(g, g).min() > activation_match(g, torch.randn(2, 3, 8, 8)).max()


def test_objective_rewards_matching_maps(generator, dictionary):
    clip = zoo.load("lite-clip")
    z = generator.sample_latents(3, seed=5)
    with torch.no_grad():
        targets = generator.generate(z).clamp(0, 1)
    objective = Objective(generator, targets, dictionary, [clip], None, beta=1.0)
    with torch.no_grad():
        own = objective.terms(z)
        other = objective.terms(generator.sample_latents(3, seed=99))
    assert (own["act"] > other["act"]).float().mean() >= 2 / 3  # the target's own latent matches best
    assert torch.allclose(own["total"], own["rec"] + 0.05 * own["reg"] - own["act"], atol=1e-6)
    assert own["pixel"].max() < 1e-10


def test_standardise_uses_the_mining_statistics(dictionary):
    mean, std = dictionary.unit_stats(dictionary.generator)
    units = [0, dictionary.models[dictionary.generator]["units"][0] + 1]  # one unit of the first and second layer
    maps = {}
    for layer, count in zip(dictionary.models[dictionary.generator]["layers"], dictionary.models[dictionary.generator]["units"]):
        maps[layer] = torch.zeros(1, count, 4, 4)
    first, second = (dictionary.unit(dictionary.generator, u) for u in units)
    maps[first[0]][:, first[1]] = mean[units[0]] + 2 * std[units[0]]  # two standard deviations up
    maps[second[0]][:, second[1]] = mean[units[1]]                    # at rest
    out = standardise(maps, dictionary, dictionary.generator, units, grid=8)
    assert out.shape == (1, 2, 8, 8)  # brought to the mining grid
    assert torch.allclose(out[:, 0], torch.full((1, 8, 8), 2.0), atol=1e-4)
    assert torch.allclose(out[:, 1], torch.zeros(1, 8, 8), atol=1e-4)


def test_objective_sign_more_beta_lowers_the_total_by_beta_times_act(generator, dictionary):
    clip = zoo.load("lite-clip")
    z = generator.sample_latents(2, seed=8)
    targets = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        low = Objective(generator, targets, dictionary, [clip], None, beta=0.0).terms(z)
        high = Objective(generator, targets, dictionary, [clip], None, beta=2.0).terms(z)
    assert torch.allclose(low["act"], high["act"])
    assert torch.allclose(high["total"], low["total"] - 2.0 * low["act"], atol=1e-6)  # L_act is subtracted
    assert high["act"].abs().max() <= 1.0  # a mean of cosines


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


def test_the_renderer_recovers_its_own_samples_from_their_images():
    """From the image alone: the reader's guess starts one restart, and 60 steps refine it."""
    renderer = zoo.load("lite-renderer")
    with torch.no_grad():
        targets = renderer.generate(renderer.sample_latents(4, seed=21))
    result = invert(renderer, targets, steps=60, progress=False)
    assert psnr(result.images, targets).mean() >= 25


def test_edit_shift_moves_the_generation(generator, dictionary):
    z = generator.sample_latents(2, seed=3)
    result = edit(generator, z, shift(0.25, 0), dictionary, units="all", steps=20, progress=False)
    assert result.after.shape == result.before.shape
    # the edit keeps each latent's best step; the renderer's codes can flip on the way, so not every step is lower
    assert min(result.history) < result.history[0] and not torch.equal(result.after, result.before)


def test_single_unit_edit_targets_only_that_unit_and_keeps_the_others(generator, dictionary):
    unit = dictionary.clusters[0].generator_units[0]
    layer, channel = dictionary.unit(dictionary.generator, unit)
    z = generator.sample_latents(2, seed=4)
    result = edit(generator, z, scale_unit(3.0), dictionary, units=[unit], steps=15, progress=False)
    assert result.channels == {layer: [channel]} and result.targets[layer].shape[1] == 1
    mean, _ = dictionary.unit_stats(dictionary.generator)
    with torch.no_grad():
        start = generator.generate(z)
    from rosetta_lite.applications.edit import record_maps
    own = record_maps(generator, z)[layer][:, [channel]]
    assert torch.allclose(result.targets[layer], mean[unit] + 3 * (own - mean[unit]), atol=1e-5)
    assert result.history[-1] < result.history[0]
    assert torch.allclose(result.before, start.clamp(0, 1))


def test_local_edits_preserve_the_other_units_by_default(generator, dictionary):
    units = dictionary.clusters[0].generator_units
    z = generator.sample_latents(2, seed=6)
    kept = edit(generator, z, remove(), dictionary, units=units, steps=25, progress=False)
    free = edit(generator, z, remove(), dictionary, units=units, steps=25, preserve=0.0, progress=False)
    # the preserved edit changes the image less than the unconstrained one
    assert (kept.after - kept.before).abs().mean() < (free.after - free.before).abs().mean()
    with pytest.raises(ValueError, match="non-negative"):
        edit(generator, z, remove(), dictionary, units=units, steps=1, preserve=-1.0, progress=False)


def test_evaluate_editing_reports_every_edit(dictionary):
    report = evaluate_editing(dictionary, images=2, steps=2, progress=False)
    assert {r["edit"] for r in report["geometry"]} >= {"shift right 1/4", "zoom in 1.5x", "zoom out 0.75x"}
    assert {r["setting"] for r in report["geometry"]} == {"default", "baseline: every layer, fill rest"}
    default, baseline = report["removal"]["variants"]
    assert default["variant"].startswith("default") and baseline["variant"].startswith("baseline")
    for variant in (default, baseline):
        assert len(variant["clusters"]) == len(dictionary.clusters)
        for row in variant["clusters"]:
            assert 0 <= row["share_of_changed_pixels_inside_region"] <= 1
    plain = evaluate_editing(dictionary, images=1, steps=1, baselines=False, progress=False)
    assert len(plain["removal"]["variants"]) == 1 and len(plain["geometry"]) == 8


def test_geometric_edits_skip_coarse_layers_by_default(generator, dictionary):
    z = generator.sample_latents(1, seed=2)
    fine = edit(generator, z, zoom(1.5), dictionary, units="all", steps=1, progress=False)
    assert sorted(fine.channels) == ["b16", "b32"]  # maps at least half the 32 px output
    every = edit(generator, z, zoom(1.5), dictionary, units="all", steps=1, min_scale=0.0, progress=False)
    assert sorted(every.channels) == ["b16", "b32", "b4", "b8"]
    coarse_unit = [dictionary.models[dictionary.generator]["units"][0]]  # the first unit of b8
    with pytest.raises(NoUnitsToEdit, match="min_scale"):
        edit(generator, z, shift(0.25, 0), dictionary, units=coarse_unit, steps=1, progress=False)
    # a dictionary whose Rosetta units all lie in coarse layers (as a small StyleGAN2 run's can): the evaluation
    # leaves out their shift and zoom rows, and the reading takes the all-units rows
    coarse = dataclasses.replace(dictionary, clusters=[dataclasses.replace(dictionary.clusters[0],
                                                                           generator_units=coarse_unit)])
    report = evaluate_editing(coarse, images=1, steps=1, baselines=False, progress=False)
    assert {r["units"] for r in report["geometry"]} == {"all"} and len(report["geometry"]) == 4
    assert "(all units)" in read_editing(report) and len(report["removal"]["variants"][0]["clusters"]) == 1


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


def test_dictionary_of_another_generator_is_refused(generator, dictionary):
    other = dataclasses.replace(dictionary, settings=dict(dictionary.settings, generator="other-generator"))
    with pytest.raises(InversionError, match="mined with generator 'other-generator'"):
        invert(generator, torch.rand(1, 3, 32, 32), other, encoders=[zoo.load("lite-clip")], steps=1, progress=False)
    with pytest.raises(InversionError, match="other-generator"):
        edit(generator, generator.sample_latents(1), shift(0.1, 0), other, steps=1, progress=False)


def test_encoder_or_generator_version_not_in_the_dictionary_is_refused(generator, dictionary):
    stranger = dataclasses.replace(zoo.load("lite-clip"), name="vit-b16-clip")
    with pytest.raises(InversionError, match="not an encoder of this dictionary"):
        invert(generator, torch.rand(1, 3, 32, 32), dictionary, encoders=[stranger], steps=1, progress=False)
    models = {k: dict(v) for k, v in dictionary.models.items()}
    models[dictionary.generator]["units"] = [u + 1 for u in models[dictionary.generator]["units"]]
    resized = dataclasses.replace(dictionary, models=models)
    with pytest.raises(InversionError, match="another version of the generator"):
        check_dictionary(generator, resized)


def test_empty_rosetta_units_are_refused(generator, dictionary):
    empty = dataclasses.replace(dictionary, clusters=[])
    assert empty.rosetta_pairs("lite-clip") == []
    with pytest.raises(InversionError, match="no Rosetta units"):
        invert(generator, torch.rand(1, 3, 32, 32), empty, encoders=[zoo.load("lite-clip")], steps=1, progress=False)
    with pytest.raises(ValueError, match="no units"):
        edit(generator, generator.sample_latents(1), shift(0.1, 0), empty, steps=1, progress=False)


def test_nan_stops_and_keeps_best(generator):
    calls = {"n": 0}

    def flaky(model, z):
        calls["n"] += 1
        out = model(z)
        return out * float("nan") if calls["n"] > 6 else out

    bad = dataclasses.replace(generator, forward=flaky)
    targets = torch.rand(1, 3, 32, 32)
    with pytest.warns(RuntimeWarning, match="non-finite inversion loss at step"):
        result = invert(bad, targets, steps=20, restarts=1, progress=False)
    assert result.stopped_at is not None and result.stopped_at < 20
    assert len(result.history) == result.stopped_at  # every step before the non-finite one was kept
    assert torch.isfinite(result.images).all() and torch.isfinite(result.loss).all()
    assert float(result.loss) <= min(result.history) + 1e-6  # the best latent seen, not the last one


def test_nan_in_an_edit_stops_and_keeps_the_best_latent(generator, dictionary):
    calls = {"n": 0}

    def flaky(module, inputs, output):  # the edited maps turn NaN after a few forward passes
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 6 else output

    z = generator.sample_latents(1, seed=1)
    handle = generator.model.b16.register_forward_hook(flaky)
    try:
        with pytest.warns(RuntimeWarning, match="non-finite edit loss at step"):
            result = edit(generator, z, shift(0.25, 0), dictionary, units="all", steps=20, progress=False)
    finally:
        handle.remove()
    assert result.stopped_at is not None and len(result.history) == result.stopped_at
    assert torch.isfinite(result.z).all()  # (the after image is NaN here: the hook still breaks G)


def test_metrics():
    a = torch.rand(3, 3, 16, 16)
    assert torch.isinf(psnr(a, a)).sum() == 0 and psnr(a, a).min() > 90
    assert torch.allclose(ssim(a, a), torch.ones(3), atol=1e-6)
    summary = mean_ci([1.0, 2.0, 3.0])
    assert summary["mean"] == 2.0 and summary["ci95"][0] < 2 < summary["ci95"][1]
    assert paired_difference([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])["mean"] == 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_evaluations_on_a_missing_gpu_are_refused_before_any_work(dictionary):
    from rosetta_lite.evaluation.inversion import evaluate_inversion

    with pytest.raises(ValueError, match="torch sees no CUDA GPU here"):
        evaluate_inversion(dictionary, images=2, device="cuda", progress=False)
    with pytest.raises(ValueError, match="torch sees no CUDA GPU here"):
        evaluate_editing(dictionary, images=2, device="cuda", progress=False)


def test_inversion_and_editing_run_where_the_generator_is(generator, dictionary):
    """Latents, targets and the dictionary's statistics follow the generator's device (the CPU here)."""
    assert generator.device == torch.device("cpu") and generator.sample_latents(2).device == generator.device
    result = invert(generator, torch.rand(1, 3, 32, 32), dictionary, encoders=[zoo.load("lite-clip")], steps=1,
                    restarts=1, progress=False)
    assert result.z.device == generator.device


def test_eval_image_counts_are_bounded_before_any_model_loads(capsys, monkeypatch):
    from rosetta_lite import zoo
    from rosetta_lite.cli import main
    from rosetta_lite.evaluation.editing import evaluate_editing
    from rosetta_lite.evaluation.inversion import evaluate_inversion
    from rosetta_lite.evaluation.metrics import MAX_EVAL_IMAGES

    monkeypatch.setattr(zoo, "load", lambda *a, **k: pytest.fail("a model loaded before the count was checked"))
    for evaluate in (evaluate_inversion, evaluate_editing):
        with pytest.raises(ValueError, match=f"takes 1 to {MAX_EVAL_IMAGES} images"):
            evaluate(None, images=100_000)
    with pytest.raises(SystemExit):
        main(["eval", "inversion", "--images", "100000"])
    assert f"must be an integer from 1 to {MAX_EVAL_IMAGES}" in capsys.readouterr().err


# ---- batches: memory bounded by batch_size, results those of one batch ----

def _close(a, b, tol=2e-3):
    """Two reports equal, numbers to ``tol`` (the reports round to 4 digits)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol or (a != a and b != b)
    return a == b


def test_row_batches_cover_every_row_once_and_joined_runs_weigh_their_rows():
    from rosetta_lite.applications.optimise import Optimised, joined, row_batches

    assert row_batches(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)] and row_batches(3, 8) == [slice(0, 3)]
    with pytest.raises(ValueError, match="batch_size"):
        row_batches(3, 0)
    a = Optimised(torch.zeros(3, 2), torch.ones(3), None, [4.0, 2.0])
    b = Optimised(torch.ones(1, 2), torch.zeros(1), None, [0.0], stopped_at=1)
    run = joined([a, b])
    assert run.z.shape == (4, 2) and run.history == [3.0, 2.0] and run.stopped_at == 1  # (3 * 4 + 0) / 4


def test_inversion_in_batches_equals_one_batch(generator, dictionary):
    clip, judge = zoo.load("lite-clip"), zoo.load("lite-resnet-sup")
    targets = ShapesWorld().batch(5, seed=3).images
    runs = [invert(generator, targets, dictionary, encoders=[clip], perceptual=judge, steps=4, restarts=2,
                   batch_size=size, progress=False) for size in (2, 5)]
    batched, whole = runs
    # the encoders' convolutions sum in another order at another batch size, and Adam's first steps turn a
    # rounding-sized gradient into a full step: equal to float rounding in the objective, within 40 dB in pixels
    assert torch.allclose(batched.loss, whole.loss, atol=2e-4) and torch.allclose(batched.z, whole.z, atol=1e-2)
    assert psnr(batched.images, whole.images).min() > 40
    assert batched.history == pytest.approx(whole.history, abs=1e-5)


def test_edits_in_batches_equal_one_batch_paste_included(generator, dictionary):
    from rosetta_lite.applications.edit import record_maps

    z = generator.sample_latents(5, seed=4)
    source = record_maps(generator, generator.sample_latents(5, seed=5))  # one source per image: sliced per batch
    for fn, units in ((paste(source, (0.0, 0.0, 0.5, 0.5)), "all"),
                      (remove(), dictionary.clusters[0].generator_units)):
        batched, whole = (edit(generator, z, fn, dictionary, units=units, steps=3, batch_size=size, progress=False)
                          for size in (2, 5))
        assert torch.allclose(batched.after, whole.after, atol=1e-4) and torch.allclose(batched.z, whole.z, atol=1e-4)
        assert all(torch.allclose(batched.targets[k], whole.targets[k], atol=1e-5) for k in whole.targets)
        assert batched.history == pytest.approx(whole.history, abs=1e-5) and batched.before.shape[0] == 5


def test_evaluations_in_batches_report_what_one_batch_reports(dictionary):
    from rosetta_lite.evaluation.inversion import evaluate_inversion

    inversion = [evaluate_inversion(dictionary, images=3, encoders=["lite-clip"], steps=2, restarts=1,
                                    batch_size=size, progress=False) for size in (2, 3)]
    assert _close(*inversion) and inversion[0]["rows"][0]["psnr"]["n"] == 3
    editing = [evaluate_editing(dictionary, images=3, steps=2, baselines=False, batch_size=size, progress=False)
               for size in (2, 3)]
    assert _close(*editing) and editing[0]["geometry"][0]["difference"]["n"] == 3


@pytest.mark.parametrize("change, message", [({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
                                             ({"precision": "fp8"}, "precision"), ({"device": "tpu"}, "device")])
def test_bad_batch_sizes_precisions_and_devices_are_refused_at_once(change, message):
    from rosetta_lite.applications.edit import EditOptions
    from rosetta_lite.applications.invert import InversionOptions

    for options in (InversionOptions, EditOptions):
        with pytest.raises(ValueError, match=message):
            options(**change)


def test_cli_refuses_a_batch_size_of_zero(capsys):
    from rosetta_lite.cli import main

    for kind in ("inversion", "editing"):
        with pytest.raises(SystemExit):
            main(["eval", kind, "--batch-size", "0"])
        assert "--batch-size" in capsys.readouterr().err


def test_inversion_options_refuse_no_restarts_and_negative_steps():
    from rosetta_lite.applications.invert import InversionOptions

    for change in ({"restarts": 0}, {"steps": -1}):
        with pytest.raises(ValueError, match="steps must be >= 0 and restarts >= 1"):
            InversionOptions(**change)


def test_a_start_of_the_wrong_size_is_refused(generator):
    with pytest.raises(InversionError, match="one latent per target and restart"):
        invert(generator, torch.rand(2, 3, 32, 32), z0=generator.sample_latents(3), restarts=2, steps=1,
               progress=False)


def test_no_targets_and_no_latents_are_refused(generator, dictionary):
    with pytest.raises(InversionError, match="no targets"):
        invert(generator, torch.rand(0, 3, 32, 32), steps=1, progress=False)
    with pytest.raises(ValueError, match="a batch of latents"):
        edit(generator, generator.sample_latents(1)[:0], shift(0.1, 0), dictionary, steps=1, progress=False)
