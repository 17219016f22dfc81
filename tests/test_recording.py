"""Recording with gradients (``record_generator``/``record_encoder`` with ``grad=True``), and the
one home of unit z-scores (``RosettaDictionary.standardise``, which ``unit_maps`` uses)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from rosetta_lite import zoo
from rosetta_lite.applications.invert import InversionError
from rosetta_lite.capture import record_encoder, record_generator
from rosetta_lite.dictionary.rosetta import MismatchError
from rosetta_lite.dictionary.runs import load_dictionaries
from rosetta_lite.dictionary.units import unit_maps

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dictionary(lite_run):
    return load_dictionaries(lite_run)[0]


@pytest.fixture(scope="module")
def gan(dictionary):
    return zoo.load(dictionary.generator)


def test_generator_maps_with_grad_equal_the_plain_ones_and_reach_z():
    gan = zoo.load("lite-gan")
    z = gan.sample_latents(2, seed=3).requires_grad_()
    images, maps = record_generator(gan, z, grad=True)
    plain_images, plain = record_generator(gan, z)
    assert torch.equal(images, plain_images) and set(maps) == set(plain) == set(gan.layers)
    for layer in gan.layers:
        assert maps[layer].requires_grad and not plain[layer].requires_grad  # detached unless asked
        assert torch.equal(maps[layer], plain[layer])
        (grad,) = torch.autograd.grad(maps[layer].square().sum(), z, retain_graph=True)
        assert grad.abs().sum() > 0, layer


def test_generator_records_only_the_layers_asked_for():
    gan = zoo.load("lite-gan")
    _, maps = record_generator(gan, gan.sample_latents(1), gan.layers[-1:], grad=True)
    assert list(maps) == gan.layers[-1:]


def test_encoder_maps_with_grad_equal_the_plain_ones_and_reach_the_images():
    clip = zoo.load("lite-clip")
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    maps = record_encoder(clip, images, grad=True)
    plain = record_encoder(clip, images)
    for layer in clip.layers:
        assert maps[layer].requires_grad and not plain[layer].requires_grad
        assert torch.equal(maps[layer], plain[layer])
    (grad,) = torch.autograd.grad(maps[clip.layers[-1]].square().sum(), images)
    assert grad.abs().sum() > 0


def hand_z_scores(dictionary, model, units, maps, grid):
    """What ``unit_maps`` computed before the z-scores had one home: per unit, the map
    resized to the mining grid, less the unit's mining mean, over its standard deviation."""
    mean, std = dictionary.unit_stats(model)
    out = []
    for unit in units:
        layer, channel = dictionary.unit(model, unit)
        on_grid = F.interpolate(maps[layer][:, channel:channel + 1].float(), size=(grid, grid), mode="bilinear",
                                align_corners=False)
        out.append((on_grid - mean[unit]) / std[unit].clamp_min(1e-12))
    return torch.cat(out, 1)


def first_units(dictionary, model):
    """The first unit of every layer of a model and its very last unit: every map size is met."""
    starts, first = [], 0
    for count in dictionary.models[model]["units"]:
        starts.append(first)
        first += count
    return starts + [first - 1]


def test_generator_z_scores_are_those_unit_maps_gave(dictionary, gan):
    name, grid = gan.name, dictionary.mining_grid(gan.name)
    units = first_units(dictionary, name)
    z = gan.sample_latents(3, seed=4)
    with torch.no_grad():
        _, maps = record_generator(gan, z)
    hand = hand_z_scores(dictionary, name, units, maps, grid)
    assert hand.shape == (3, len(units), grid, grid)
    assert torch.equal(dictionary.standardise(name, units, maps), hand)
    assert torch.equal(unit_maps(gan, z, units, dictionary), hand)
    shown = F.interpolate(hand, size=(2 * grid, 2 * grid), mode="bilinear", align_corners=False)
    assert torch.equal(unit_maps(gan, z, units, dictionary, size=2 * grid), shown)


def test_encoder_z_scores_are_those_unit_maps_gave(dictionary):
    name = dictionary.encoders[0]
    encoder = zoo.load(name)
    images = torch.rand(2, 3, 32, 32)
    units = first_units(dictionary, name)
    with torch.no_grad():
        maps = record_encoder(encoder, images)
    hand = hand_z_scores(dictionary, name, units, maps, dictionary.mining_grid(name))
    assert torch.equal(unit_maps(encoder, images, units, dictionary), hand)


def test_z_scores_of_maps_with_grad_stay_differentiable(dictionary, gan):
    z = gan.sample_latents(1, seed=6).requires_grad_()
    _, maps = record_generator(gan, z, grad=True)
    scores = dictionary.standardise(gan.name, first_units(dictionary, gan.name), maps)
    (grad,) = torch.autograd.grad(scores.square().sum(), z)
    assert grad.abs().sum() > 0


def test_check_generator_refuses_another_generator(dictionary, gan):
    dictionary.check_generator(gan)
    stranger = dataclasses.replace(gan, name="other-generator")
    with pytest.raises(MismatchError, match="mined with generator"):
        dictionary.check_generator(stranger)
    assert InversionError is MismatchError  # what inversion and editing callers catch
