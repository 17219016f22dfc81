import json
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rosetta_lite import zoo
from rosetta_lite.capture import record_encoder
from rosetta_lite.dictionary.rosetta import Cluster, RosettaDictionary
from rosetta_lite.dictionary.runs import load_dictionaries
from rosetta_lite.evaluation.concepts import (
    ConceptIoU,
    UnitIoUOptions,
    cluster_order,
    concept_names,
    concept_report,
    dictionary_members,
    format_report,
    label_clusters,
    map_ious,
    stack_masks,
    unit_ious,
)
from rosetta_lite.world import COLOURS, ShapesWorld
from rosetta_lite.zoo.member import Member
from rosetta_lite.zoo.preprocess import Preprocess

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)
NAMES = concept_names()
NESTED = {"object", "contour"}  # every shape and colour lies inside "object"; contours too


@pytest.fixture(scope="module")
def world():
    batch = ShapesWorld().batch(200, seed=7)
    return batch, stack_masks(batch.masks, NAMES)


def _noise(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_units_that_are_the_masks_reach_high_iou_on_their_concept_and_only_there(world):
    _, masks = world
    result = map_ious(masks.float() + 0.1 * _noise(masks.shape), masks, concepts=NAMES)
    assert isinstance(result, ConceptIoU) and result.score.shape == (len(NAMES), len(NAMES))
    own_iou, own_score = result.iou.diagonal(), result.score.diagonal()
    for i, name in enumerate(NAMES):  # sky (~45% of pixels) and ground (~40%) included
        assert own_iou[i] >= 0.8 and own_score[i] >= 0.8, (name, float(own_iou[i]), float(own_score[i]))
        for j, other in enumerate(NAMES):
            related = i == j or name in NESTED or other in NESTED
            if not related:  # disjoint or independent concepts: sky vs ground, shape vs colour, ...
                assert result.score[i, j] < 0.2, (name, other, float(result.score[i, j]))
    sky, ground = NAMES.index("sky"), NAMES.index("ground")
    assert result.score[sky, ground] < 0 and result.iou[sky, ground] < 0.1


def test_low_resolution_units_are_upsampled_and_still_match(world):
    _, masks = world
    maps = F.avg_pool2d(masks.float(), 2) + 0.05 * _noise((masks.shape[0], len(NAMES), 16, 16))  # a 16 px layer
    result = map_ious([maps[:, :4], maps[:, 4:]], masks, concepts=NAMES)  # two "layers" side by side
    for i, name in enumerate(NAMES):
        floor = 0.4 if name == "contour" else 0.8  # a one-pixel outline cannot survive half resolution
        assert result.iou[i, i] >= floor, (name, float(result.iou[i, i]))
        assert int(result.score[i].argmax()) == i


def test_random_units_score_at_chance_although_their_plain_iou_with_sky_is_not_small(world):
    _, masks = world
    result = map_ious(_noise((masks.shape[0], 8, 8, 8), seed=1), masks, concepts=NAMES)
    assert result.score.abs().max() < 0.05
    half = map_ious(_noise((masks.shape[0], 8, 8, 8), seed=1), masks, fractions=(0.5,), concepts=NAMES)
    assert half.iou[:, NAMES.index("sky")].min() > 0.25  # why scores are corrected for chance
    assert half.score.abs().max() < 0.05


def test_one_small_top_quantile_would_cap_large_regions(world):
    _, masks = world
    sky = masks[:, NAMES.index("sky")].float()[:, None]
    capped = map_ious(sky, masks, fractions=(0.005,), concepts=NAMES)
    assert capped.iou[0, NAMES.index("sky")] < 0.05
    assert map_ious(sky, masks, concepts=NAMES).iou[0, NAMES.index("sky")] > 0.95


def test_map_ious_rejects_bad_shapes(world):
    _, masks = world
    with pytest.raises(ValueError, match="N = 200 images"):
        map_ious(torch.zeros(10, 2, 8, 8), masks)
    with pytest.raises(ValueError, match="top fractions in"):
        map_ious(torch.zeros(200, 2, 8, 8), masks, fractions=(0.5, 1.0))


def test_unit_ious_follows_the_flat_unit_order_of_the_dictionary(world):
    batch, masks = world
    member = zoo.load("lite-resnet-sup", pretrained=False, seed=3)
    images, few = batch.images[:48], {n: m[:48] for n, m in batch.masks.items()}
    units = [20, 3, 200]  # layer2 channel 4, layer1 channel 3, layer4 channel 88 (16, 32, 64, 128 channels)
    got = unit_ious(member, units, images, few)
    with torch.no_grad():
        maps = record_encoder(member, images)
    by_hand = [maps["layer2"][:, 4:5], maps["layer1"][:, 3:4], maps["layer4"][:, 88:89]]
    expected = map_ious(by_hand, masks[:48], concepts=NAMES)
    assert got.concepts == NAMES
    assert torch.allclose(got.score, expected.score, atol=1e-6)
    assert torch.equal(unit_ious(member, [200, 3], images, few).score[1], got.score[1])


def test_unit_ious_takes_its_options_as_an_object_or_as_keywords(world):
    batch, masks = world
    member = zoo.load("lite-resnet-sup", pretrained=False, seed=3)
    images, few = batch.images[:48], {n: m[:48] for n, m in batch.masks.items()}
    coarse = unit_ious(member, [3, 20], images, few, options=UnitIoUOptions(fractions=(0.3,), batch_size=16))
    assert torch.equal(coarse.score, unit_ious(member, [3, 20], images, few, fractions=(0.3,)).score)
    assert not torch.equal(coarse.score, unit_ious(member, [3, 20], images, few).score)  # all fractions: others
    with pytest.raises(TypeError, match="n_scenes"):
        unit_ious(member, [3], images, few, n_scenes=10)


class _ColourUnits(nn.Module):
    """Units that are exactly the world's colour masks (objects are flat palette colours), plus a dead unit."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("palette", torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255)
        self.feat = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distance = (x[:, None] - self.palette[None, :, :, None, None]).abs().amax(2)  # (B, colours, H, W)
        units = torch.cat([(distance < 0.01).float(), torch.zeros_like(distance[:, :1])], 1)
        return self.feat(units)


def _colour_member(name: str) -> Member:
    return Member(name, "encoder", "lite", _ColourUnits().eval(), ["feat"],
                  Preprocess(32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))


def test_label_clusters_names_the_concept_members_agree_on():
    red, green, blue = (list(COLOURS).index(c) for c in ("red", "green", "blue"))
    dead = len(COLOURS)
    clusters = [Cluster(0, [0], {"a": [red], "b": [red]}, 0.9),
                Cluster(1, [1], {"a": [green], "b": [blue]}, 0.8),
                Cluster(2, [2, 3], {"a": [dead], "b": [dead]}, 0.7)]
    dictionary = RosettaDictionary({"generator": "g", "encoders": ["a", "b"]}, {}, clusters, {}, {})
    labels = label_clusters(dictionary, {"a": _colour_member("a"), "b": _colour_member("b")}, n_images=120)
    assert [entry["cluster"] for entry in labels] == [0, 1, 2]
    assert labels[0]["concept"] == "colour:red" and labels[0]["score"] > 0.95 and labels[0]["labeled"]
    assert clusters[0].concept == "colour:red" and clusters[0].iou > 0.95
    assert labels[0]["per_encoder"]["b"]["best_concept"] == "colour:red"
    assert labels[1]["best_concept"] in ("colour:green", "colour:blue") and 0.4 < labels[1]["score"] < 0.6
    assert {e["best_concept"] for e in labels[1]["per_encoder"].values()} == {"colour:green", "colour:blue"}
    assert labels[2]["concept"] is None and not labels[2]["labeled"] and clusters[2].concept is None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from rosetta_lite.cli import main

    out = tmp_path_factory.mktemp("concepts") / "run"
    assert main(["mine", "--zoo", "lite-untrained", "--encoders", "lite-resnet-sup", "--images", "16",
                 "--batch-size", "8", "--out", str(out), "--json"]) == 0
    return out


def test_control_members_have_the_weights_that_were_mined(tiny_run):
    from rosetta_lite.dictionary.runs import load_dictionaries

    trained, control = load_dictionaries(tiny_run)
    members = dictionary_members(control)
    [name] = control.encoders
    seed = control.settings["control_seed"]
    expected = zoo.load("lite-resnet-sup", pretrained=False, seed=seed).model.state_dict()
    got = members[name].model.state_dict()
    assert name == "lite-resnet-sup@untrained" and all(torch.equal(got[k], expected[k]) for k in expected)
    plain = dictionary_members(trained, pretrained=False)["lite-resnet-sup"].model.state_dict()
    assert not all(torch.equal(plain[k], expected[k]) for k in expected)


def test_concept_report_counts_both_zoos(tiny_run):
    from rosetta_lite.dictionary.runs import load_dictionaries

    trained, control = load_dictionaries(tiny_run)
    report = concept_report(trained, control, pretrained=False, n_images=40)
    for key, dictionary in (("trained", trained), ("control", control)):
        part = report[key]
        assert part["n_rosetta"] == dictionary.rosetta_count() and part["n_clusters"] == len(dictionary.clusters)
        assert part["n_clusters_labeled"] == sum(e["labeled"] for e in part["clusters"])
        assert sum(part["per_concept"].values()) == part["n_clusters_labeled"]
        assert all(e["concept"] in (None, *NAMES) and 0 <= e["iou"] <= 1 for e in part["clusters"])
    json.dumps(report)
    assert "trained" in format_report(report)


def test_eval_concepts_command(tiny_run, tmp_path, capsys):
    from rosetta_lite.cli import main

    capsys.readouterr()
    assert main(["eval", "concepts", "--run", str(tiny_run), "--untrained", "--images", "40", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    trained, _ = load_dictionaries(tiny_run)
    assert report["images"] == 40 and report["control"] is not None
    assert report["trained"]["n_clusters"] == len(trained.clusters) and report["trained"]["n_rosetta"] == len(trained.rosetta_units())
    assert main(["eval", "concepts", "--run", str(tiny_run), "--untrained", "--images", "40"]) == 0
    assert "Rosetta neurons" in capsys.readouterr().out
    assert main(["eval", "concepts", "--run", str(tmp_path / "nothing")]) == 2
    assert "no dictionary" in capsys.readouterr().err


def test_concept_explorer_has_a_card_per_cluster_of_each_zoo(tiny_run):
    import base64
    import dataclasses
    import re

    from rosetta_lite.explorer import concept_explorer

    trained, control = load_dictionaries(tiny_run)
    trained = dataclasses.replace(trained, clusters=[
        Cluster(0, [5], {"lite-resnet-sup": [3]}, 0.61, concept="sky", iou=0.72),
        Cluster(1, [7, 9], {"lite-resnet-sup": [4]}, 0.4)])
    control = dataclasses.replace(control, clusters=[
        Cluster(0, [2], {"lite-resnet-sup@untrained": [1]}, 0.3, concept="ground", iou=0.5)])
    gan = zoo.load(trained.generator, pretrained=False)  # the run mined the untrained zoo
    page = concept_explorer(gan, {"trained": (trained, None), "control": (control, None)}, images=2)
    assert re.findall(r'class="rx-card" data-id="([^"]+)"', page) == ["trained-0", "trained-1", "control-0"]
    assert "trained · cluster 0: sky</b> (background, not in the control)" in page and "IoU 0.72" in page
    assert "cluster 1: unlabelled" in page and "control · cluster 0: ground</b> (background, not in the trained)" in page
    assert "control · cluster 0: ground" in page and "layer" in page  # unit names: model, layer, channel
    pictures = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(pictures) == 3 and all(base64.b64decode(p).startswith(b"\xff\xd8\xff") for p in pictures)
    assert page._repr_html_() == page and page.count("<script>") == 1 and "data-ready" in page
    with pytest.raises(ValueError, match="images must be at least 1"):
        concept_explorer(gan, {"trained": (trained, None)}, images=0)
    with pytest.raises(ValueError, match="no clusters to explore"):
        concept_explorer(gan, {"trained": (dataclasses.replace(trained, clusters=[]), None), "control": (None, None)})


def _labelled(*concepts):
    return SimpleNamespace(clusters=[Cluster(i, [i], {}, 0.5, concept=c) for i, c in enumerate(concepts)])


def test_cluster_order_puts_learned_concepts_first_and_says_what_the_control_has():
    trained = _labelled("sky", None, "object", "shape:ring", "colour:red", "ground")
    control = _labelled("sky", "object")
    assert cluster_order(trained, control) == [
        (3, "learned, not in the control"), (2, "learned, control too"), (4, "background, not in the control"),
        (5, "background, not in the control"), (0, "background, control too"), (1, "unlabelled")]
    assert cluster_order(trained)[0] == (2, "learned")  # without a control: learned, in the dictionary's order
    assert cluster_order(_labelled()) == []


def test_strongest_latents_are_the_top_of_the_pool_for_each_cluster(tiny_run):
    from rosetta_lite.dictionary.units import strongest_latents, unit_maps

    trained, _ = load_dictionaries(tiny_run)
    gan = zoo.load(trained.generator, pretrained=False)
    clusters = [Cluster(0, [5], {}, 0.5), Cluster(1, [7, 30], {}, 0.4)]
    chosen = strongest_latents(gan, trained, clusters, n=3, pool=12, seed=4)
    pool = gan.sample_latents(12, seed=4)
    for cluster, z in zip(clusters, chosen):  # by hand: each latent's own peak of the units' mean map
        peaks = torch.stack([unit_maps(gan, pool[i:i + 1], cluster.generator_units, trained).mean(1).max()
                             for i in range(12)])
        assert torch.equal(z, pool[peaks.topk(3).indices])
    with pytest.raises(ValueError, match="n must be from 1 to pool"):
        strongest_latents(gan, trained, clusters, n=13, pool=12)


def test_dictionary_sheet_has_a_row_per_cluster_and_image_learned_first(tiny_run):
    import dataclasses

    from rosetta_lite.viz import dictionary_sheet

    trained, control = load_dictionaries(tiny_run)
    trained = dataclasses.replace(trained, clusters=[
        Cluster(0, [5], {"lite-resnet-sup": [3]}, 0.61, concept="sky", iou=0.72),
        Cluster(1, [7, 9], {"lite-resnet-sup": [4]}, 0.4, concept="shape:circle", iou=0.5)])
    gan = zoo.load(trained.generator, pretrained=False)
    members = {"lite-resnet-sup": zoo.load("lite-resnet-sup", pretrained=False)}
    fig = dictionary_sheet(trained, gan, members, images=2, pool=8)
    labels = [ax.get_ylabel() for ax in fig.axes[::3]]  # image, generator, encoder per row
    assert len(labels) == 4 and labels[0].startswith("shape:circle") and "learned" in labels[0]
    assert labels[1] == "" and labels[2].startswith("sky")
    with pytest.raises(ValueError, match="no cluster to show"):
        dictionary_sheet(dataclasses.replace(trained, clusters=[]), gan, members)
