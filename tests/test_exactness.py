"""The float64 exactness check holds a bounded sample: some units of each model, on the run's grids."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.capture import maps_to_rows, record_generator
from rosetta_lite.mining import reference
from rosetta_lite.mining.plan import plan
from rosetta_lite.mining.reference import ExactnessOptions, check_exactness, float64_error, sampled_rows, spread_units


@pytest.fixture(scope="module")
def members():
    gan = zoo.load("lite-gan", pretrained=False, seed=0)
    encoders = [zoo.load("lite-resnet-sup", pretrained=False, seed=1), zoo.load("lite-clip", pretrained=False, seed=2)]
    return gan, encoders


def test_units_are_spread_over_the_model_and_all_kept_when_few():
    assert spread_units(10, 4).tolist() == [0, 3, 6, 9]
    assert spread_units(3, 8).tolist() == [0, 1, 2]


def test_sampled_rows_are_the_chosen_columns_of_all_rows(members):
    gan = members[0]
    _, maps = record_generator(gan, gan.sample_latents(2, seed=0))
    widths = [maps[layer].shape[1] for layer in gan.layers]
    chosen = spread_units(sum(widths), 7)
    whole = maps_to_rows(maps, gan.layers, 8)
    assert torch.allclose(sampled_rows(maps, gan.layers, widths, chosen, 8), whole[:, chosen], atol=1e-6)


def test_the_check_bounds_its_sample_and_says_what_it_checked(members):
    gan, encoders = members
    report = check_exactness(gan, encoders, images=8, batch_size=4, units=16, grid=8)
    assert report.errors["fp32"] < 1e-5
    assert set(report.units.values()) == {16} and report.of_units[gan.name] > 16
    assert report.grids == {e.name: 8 for e in encoders}
    # the generator's rows once (both encoders share grid 8), each encoder's once: images x grid^2 x units
    assert report.reference_bytes == 8 * 8 * 64 * 16 * 3
    text = report.describe()
    assert f"16 of {report.of_units[gan.name]} units of {gan.name}" in text and "on 8 images at grid 8" in text


def test_the_check_sees_a_mined_table_that_is_off(members, monkeypatch):
    gan, encoders = members
    real = reference.mine

    def off_by_a_little(*args, **kwargs):
        result = real(*args, **kwargs)
        acc = result.pairs[encoders[0].name]
        acc.similarity = lambda: type(acc).similarity(acc) + 1e-3
        return result

    monkeypatch.setattr(reference, "mine", off_by_a_little)
    assert check_exactness(gan, encoders, images=4, batch_size=4, units=8, grid=4).errors["fp32"] > 5e-4


def test_each_pair_is_checked_on_the_plans_grid(members):
    gan, encoders = members
    report = check_exactness(gan, encoders, images=4, batch_size=4, units=8)
    grids = plan(gan, encoders)[3]
    assert report.grids == {e.name: grids[e.name] for e in encoders} and report.errors["fp32"] < 1e-5
    assert float64_error(gan, encoders[:1], 4, 4)["fp32"] < 1e-5


@pytest.mark.parametrize("changes,message", [
    ({"units": 0}, "units must be an integer >= 1, got 0"),
    ({"images": 2.5}, "images must be an integer >= 1, got 2.5"),
    ({"precisions": "fp32"}, "precisions must be a non-empty tuple"),
    ({"precisions": ("fp64",)}, "precision must be one of"),
    ({"tables": "disk"}, "tables must be one of"),
])
def test_bad_settings_are_refused_with_what_is_allowed(changes, message):
    with pytest.raises(ValueError, match=message):
        ExactnessOptions(**changes).check()


def test_no_encoder_is_refused(members):
    with pytest.raises(ValueError, match="needs at least one encoder"):
        check_exactness(members[0], [], images=4, batch_size=4)
