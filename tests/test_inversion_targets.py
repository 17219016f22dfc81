"""Table 1 in the paper's situation: targets the generator cannot draw exactly, and no warm start."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.applications.invert import invert
from rosetta_lite.dictionary.runs import load_dictionaries
from rosetta_lite.evaluation.inversion import (
    PHOTOGRAPHS,
    TARGET_KINDS,
    InversionTargets,
    check_targets,
    evaluate_inversion,
    photographs,
    sketch,
)
from rosetta_lite.evaluation.metrics import psnr
from rosetta_lite.world import ShapesWorld, WorldBatch

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dictionary(lite_run):
    return load_dictionaries(lite_run)[0]


def test_a_sketch_draws_the_edges_of_sky_ground_and_objects():
    ground = torch.zeros(1, 8, 8, dtype=torch.bool)
    ground[:, 4:] = True  # the horizon between rows 3 and 4
    obj = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    obj[:, 0, 1:3, 1:3] = True  # a 2 x 2 object in the sky
    batch = WorldBatch(torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long), [""],
                       {"ground": ground, "sky": ~ground}, obj, [[]])
    drawn = sketch(batch)
    assert drawn.shape == (1, 3, 8, 8) and torch.equal(drawn[:, 0], drawn[:, 2])
    black = {(int(y), int(x)) for y, x in (drawn[0, 0] == 0).nonzero()}
    # a pixel is black when its right or lower neighbour is another region
    assert black == {(3, x) for x in range(8)} | {(0, 1), (0, 2), (1, 0), (2, 0), (1, 2), (2, 2), (2, 1)}


@pytest.mark.parametrize("kind", list(TARGET_KINDS))
def test_every_target_kind_makes_the_same_image_whatever_the_batches(kind):
    targets = InversionTargets(kind, size=32, seed=7, images=6)
    whole = targets.batch(slice(0, 6))
    parts = torch.cat([targets.batch(slice(0, 4)), targets.batch(slice(4, 6))])
    assert whole.shape == (6, 3, 32, 32) and 0 <= whole.min() and whole.max() <= 1
    assert torch.allclose(whole, parts, atol=1e-5)
    if kind != "scenes":  # another kind of image than the plain world's scenes
        assert (whole - ShapesWorld().batch(6, seed=7).images).abs().mean() > 0.01


def test_photographs_cycle_through_the_bundled_ones_with_seeded_crops_after_the_first_round():
    n = len(PHOTOGRAPHS)
    first, again = photographs(slice(0, n), 16), photographs(slice(n, 2 * n), 16)
    assert first.shape == (n, 3, 16, 16) and not torch.allclose(first, again)  # crops, not the same squares
    assert torch.equal(again, photographs(slice(n, 2 * n), 16))
    assert not torch.equal(again, photographs(slice(n, 2 * n), 16, seed=8))
    assert torch.equal(first, photographs(slice(0, n), 16, seed=8))  # the first round is the centre squares


def test_unknown_target_kinds_and_lite_gan_images_for_lite_gan_are_refused(monkeypatch, capsys):
    with pytest.raises(ValueError, match="targets must be one of"):
        check_targets("photos", "lite-renderer")
    with pytest.raises(ValueError, match="inside its range"):
        check_targets("gan", "lite-gan")
    check_targets("gan", "lite-renderer")
    monkeypatch.setattr(zoo, "load", lambda *a, **k: pytest.fail("a model loaded before the targets were checked"))

    class GanDictionary:
        generator = "lite-gan"

    with pytest.raises(ValueError, match="inside its range"):
        evaluate_inversion(GanDictionary(), images=2, targets="gan")
    from rosetta_lite.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "inversion", "--targets", "photos"])
    assert "--targets: invalid choice: 'photos'" in capsys.readouterr().err


def test_without_the_warm_start_inversion_starts_from_a_random_latent(dictionary):
    renderer = zoo.load(dictionary.generator)
    with torch.no_grad():
        targets = renderer.generate(renderer.sample_latents(4, seed=21))
    warm, cold = (invert(renderer, targets, steps=0, restarts=1, warm_start=start, progress=False)
                  for start in (True, False))
    assert torch.equal(cold.z, renderer.sample_latents(4, seed=0))  # the restarts' stream, untouched by the reader
    assert psnr(warm.images, targets).mean() > psnr(cold.images, targets).mean() + 5


def test_table_1_on_sketches_from_random_latents_reports_the_two_rows(dictionary):
    report = evaluate_inversion(dictionary, images=2, encoders=["lite-clip", "lite-resnet-sup"], targets="sketch",
                                per_encoder=False, steps=1, restarts=1, warm_start=False, progress=False)
    assert [row["objective"] for row in report["rows"]] == ["perceptual only", "+ all matches"]
    assert report["targets"] == "sketch" and report["warm_start"] is False
    assert report["rows"][1]["minus_perceptual_only"]["psnr"]["n"] == 2


def test_outside_runs_every_kind_from_both_starts_and_skips_gan_for_lite_gan(monkeypatch):
    from types import SimpleNamespace

    from rosetta_lite.evaluation import inversion as module

    calls = []

    def fake(d, images, targets, per_encoder, options):
        calls.append((targets, options.warm_start, per_encoder, options.steps, images))
        return {"rows": []}

    monkeypatch.setattr(module, "evaluate_inversion", fake)
    report = module.evaluate_outside(SimpleNamespace(generator="lite-renderer"), 3, kinds=("sketch", "gan"))
    assert calls == [("sketch", True, False, 25, 3), ("sketch", False, False, 25, 3), ("gan", True, False, 25, 3),
                     ("gan", False, False, 25, 3)]
    assert [(r["targets"], r["warm_start"]) for r in report["rows"]] == [(c[0], c[1]) for c in calls]
    calls.clear()
    module.evaluate_outside(SimpleNamespace(generator="lite-gan"), 3, kinds=("sketch", "gan"))
    assert [c[0] for c in calls] == ["sketch", "sketch"]  # lite-gan's own images are inside its range
