"""The unit census: units per concept of every member, trained vs untrained, and its ground truth."""

import json

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.cli import main
from rosetta_lite.evaluation.census import (
    CensusOptions,
    census_gate,
    count_labels,
    format_census,
    generator_ious,
    shared_concepts,
    unit_labels,
)
from rosetta_lite.evaluation.concepts import ConceptIoU, map_ious
from rosetta_lite.world import ShapesWorld
from rosetta_lite.zoo.renderer_arch import describe, describe_scene, scene_codes


def test_map_ious_equals_a_unit_by_unit_count():
    """Every (unit, concept) score is the best over the fractions of (IoU - chance) / (1 - chance)."""
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(6, 5, 4, 4, generator=g)  # upsampled to the masks' 8 x 8
    masks = torch.rand(6, 3, 8, 8, generator=g) < torch.tensor([0.1, 0.4, 0.7])[None, :, None, None]
    fractions = (0.05, 0.2, 0.5)
    result = map_ious(maps, masks, fractions, samples=10**6)  # every pixel: exact quantiles
    up = torch.nn.functional.interpolate(maps, size=(8, 8), mode="bilinear", align_corners=False)
    for unit in range(5):
        values = up[:, unit].flatten()
        ordered = values.sort().values
        for c in range(3):
            best = -1.0
            truth = masks[:, c].flatten()
            for f in fractions:
                thr = ordered[round((1 - f) * (len(values) - 1))]
                active = values > thr
                iou = (active & truth).sum().item() / (active | truth).sum().item()
                fa, a = active.double().mean().item(), truth.double().mean().item()
                chance = fa * a / (fa + a - fa * a)
                best = max(best, (iou - chance) / (1 - chance))
            assert result.score[unit, c].item() == pytest.approx(best, abs=1e-6)


def test_render_scene_gives_back_a_batch_ground_truth():
    world = ShapesWorld()
    batch = world.batch(128, seed=3)
    again = world.render_scene(batch.scene)
    assert all(torch.equal(again.masks[k], batch.masks[k]) for k in batch.masks)
    assert torch.equal(again.labels, batch.labels) and again.captions == batch.captions
    with pytest.raises(ValueError, match=r"needs \['radius'\]"):
        world.render_scene({k: v for k, v in batch.scene.items() if k != "radius"})


def test_the_renderer_latent_describes_the_scene_the_world_renders():
    z = zoo.load("lite-renderer", pretrained=False).sample_latents(64, seed=0)
    scene = describe_scene(z)
    codes, again = describe(z), scene_codes(scene)
    for key in ("sky", "ground", "present", "shape", "colour"):
        assert torch.equal(codes[key].detach(), again[key]), key
    truth = ShapesWorld().render_scene(scene)
    assert truth.masks["object"].any((1, 2)).all()  # every scene has an object


def test_the_trained_renderer_draws_what_its_scenes_show():
    gan = zoo.load("lite-renderer")
    z = gan.sample_latents(32, seed=7)
    with torch.no_grad():
        drawn = gan.generate(z)
    truth = ShapesWorld().render_scene(gan.model.scene(z))
    assert (drawn - truth.images).abs().mean() < 0.02


def test_unit_labels_take_the_best_concept_at_or_above_the_threshold():
    score = torch.tensor([[0.5, 0.1], [0.1, 0.19], [0.2, 0.6]])
    result = ConceptIoU(score, score, score, ["sky", "shape:ring"])
    labels = unit_labels(result, 0.2)
    assert labels == ["sky", None, "shape:ring"]
    assert count_labels(labels + ["sky"]) == {"sky": 2, "shape:ring": 1}


def test_census_gate_reads_shared_learned_concepts_against_the_copies():
    members = {
        "a": {"trained": {"sky": 50, "shape:ring": 9, "object": 6, "colour:red": 20, "contour": 5},
              "untrained": {"sky": 60, "shape:ring": 1, "object": 3, "colour:red": 30}},
        "b": {"trained": {"shape:ring": 5, "object": 30, "contour": 7},
              "untrained": {"object": 2, "contour": 1}},
    }
    rows = {row["concept"]: row for row in shared_concepts(members)}
    assert set(rows) == {"shape:ring", "object", "contour"}  # sky and colours are not learned concepts
    assert rows["object"]["fewest"] == 6 and rows["object"]["worst_ratio"] == 0.5
    assert census_gate({"shared": list(rows.values())}, concepts=2) == (True, ["shape:ring", "contour"])
    assert census_gate({"shared": list(rows.values())}, concepts=3)[0] is False


def test_a_generator_that_does_not_describe_its_samples_is_refused():
    with pytest.raises(ValueError, match="no scene"):
        generator_ious(zoo.load("lite-gan", pretrained=False), images=16)


def test_census_options_refuse_bad_values():
    with pytest.raises(ValueError, match="from 16 to 5000"):
        CensusOptions(images=8)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        CensusOptions(min_iou=1.5)


def test_eval_census_command(tmp_path, capsys):
    figure = tmp_path / "census.png"
    args = ["eval", "census", "--images", "16", "--encoders", "lite-resnet-sup", "--figure", str(figure)]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["members"]) == ["lite-renderer", "lite-resnet-sup"]
    member = report["members"]["lite-resnet-sup"]
    assert member["units"] == 240 and sum(member["trained"].values()) <= 240
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert "census gate" in format_census(report)
    assert main(["eval", "census", "--generator", "lite-gan", "--encoders", "lite-clip", "--images", "16"]) == 0
    assert "lite-gan: left out" in capsys.readouterr().out


def test_eval_census_refuses_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "census", "--images", "5"])
    assert "from 16 to 5000" in capsys.readouterr().err
    assert main(["eval", "census", "--figure", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_census_counts_candidate_weights_on_the_named_world(tmp_path):
    """A folder of candidate weights (a textured-world supervised ResNet: 30 classes) replaces the shipped file."""
    from rosetta_lite.evaluation.census import census
    from rosetta_lite.train.recipes import train
    from rosetta_lite.world import world_settings

    train("lite-resnet-sup", tmp_path, steps=2, seed=1000, progress=False, world=world_settings("textured"))
    options = CensusOptions(images=16, world="textured", weights=str(tmp_path))
    member = options.load("lite-resnet-sup")
    assert member.model.fc.out_features == 30 and options.load("lite-clip").quality  # the shipped one
    report = census(options, encoders=["lite-resnet-sup"])
    assert report["settings"]["world"] == "textured" and report["members"]["lite-resnet-sup"]["units"] == 240
    with pytest.raises(ValueError, match="unknown world"):
        CensusOptions(world="striped")
    with pytest.raises(ValueError, match="folder of"):
        CensusOptions(weights=str(tmp_path / "nothing"))


def test_a_lite_member_refuses_a_missing_candidate_file(tmp_path):
    with pytest.raises(zoo.ZooError, match="no weights file"):
        zoo.load("lite-resnet-sup", weights=str(tmp_path / "lite-resnet-sup.safetensors"))


def test_a_textured_renderer_is_counted_against_a_textured_copy(tmp_path):
    from safetensors.torch import save_file

    from rosetta_lite.evaluation.census import census
    from rosetta_lite.zoo.renderer_arch import SceneRenderer

    torch.manual_seed(0)
    save_file(SceneRenderer(fills=5).state_dict(), str(tmp_path / "lite-renderer.safetensors"))
    copy = zoo.load("lite-renderer", pretrained=False, seed=1, world="textured")
    assert copy.z_dim == zoo.load("lite-renderer", weights=str(tmp_path / "lite-renderer.safetensors")).z_dim
    report = census(CensusOptions(images=16, world="textured", weights=str(tmp_path)), encoders=["lite-resnet-sup"])
    assert report["members"]["lite-renderer"]["units"] == 320
    with pytest.raises(zoo.ZooError, match="has no option"):
        zoo.load("lite-gan", pretrained=False, world="textured")
    with pytest.raises(zoo.ZooError, match="world= builds an untrained lite-renderer"):
        zoo.load("lite-renderer", world="textured")
