"""Generator to generator: a generator seen through its reader, mined against another one and the nulls."""

import json

import pytest
import torch

from rosetta_lite import zoo
from rosetta_lite.capture import record_encoder, record_generator
from rosetta_lite.cli import main
from rosetta_lite.evaluation.concepts import label_clusters
from rosetta_lite.evaluation.generators import (
    PairOptions,
    format_generator_pair,
    generator_pair_report,
    mine_generator_pair,
    pair_members,
    redrawing_encoder,
)
from rosetta_lite.evaluation.nulls import null_dictionaries
from rosetta_lite.world import ShapesWorld
from rosetta_lite.zoo.registry import CONTROL_SUFFIX

SMALL = PairOptions(images=32, ks=(1, 3), label_images=16, mining={"batch_size": 16, "progress": False})


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    return folder, generator_pair_report(folder, SMALL)


def test_redrawing_encoder_records_the_generator_redrawing_what_its_reader_read():
    renderer = zoo.load("lite-renderer")
    images = ShapesWorld().batch(4, seed=3).images
    maps = record_encoder(redrawing_encoder(renderer), images)
    with torch.no_grad():
        _, by_hand = record_generator(renderer, renderer.reader(images))
    assert list(maps) == renderer.layers
    for layer in renderer.layers:
        assert torch.equal(maps[layer], by_hand[layer])


def test_only_a_generator_with_a_reader_can_redraw():
    for name in ("lite-gan", "lite-resnet-sup"):
        with pytest.raises(ValueError, match="a generator with a reader is needed"):
            redrawing_encoder(zoo.load(name, pretrained=False))
    with pytest.raises(ValueError, match="must differ"):
        PairOptions(generator="lite-renderer", redrawer="lite-renderer").check()


def test_pair_report_counts_the_trained_redrawer_against_its_control_and_the_shuffle(small_pair):
    folder, report = small_pair
    result, shuffled, members = mine_generator_pair(folder, SMALL)  # resumes: nothing mined again
    assert result.settings.generator == "lite-gan"
    assert result.settings.encoders == ["lite-renderer@read", "lite-renderer@read" + CONTROL_SUFFIX]
    assert shuffled.settings.pairing == "shuffled" and shuffled.settings.encoders == ["lite-renderer@read"]
    assert members["lite-renderer@read"].digest() == zoo.load("lite-renderer").digest()
    assert members["lite-renderer@read" + CONTROL_SUFFIX].digest() != members["lite-renderer@read"].digest()
    row = report["rows"][1]
    for null, dictionary in null_dictionaries(result, shuffled, 3).items():
        labels = label_clusters(dictionary, {e: members[e] for e in dictionary.encoders}, n_images=16)
        assert row[null]["n_rosetta"] == dictionary.rosetta_count()
        assert row[null]["n_labeled"] == sum(entry["labeled"] for entry in labels)
    assert format_generator_pair(report).startswith("lite-gan against lite-renderer")


def test_pair_members_build_the_control_from_its_seed():
    _, trained, control = pair_members(PairOptions(control_seed=5))
    again = pair_members(PairOptions(control_seed=5))[2]
    assert control.name == trained.name + CONTROL_SUFFIX and control.digest() == again.digest()


def test_cli_prints_the_pair_report_and_refuses_a_redrawer_without_reader(small_pair, capsys):
    folder, report = small_pair
    args = ["eval", "generators", "--run", str(folder), "--images", "32", "--k", "1", "3", "--label-images", "16",
            "--batch-size", "16", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == report["rows"]
    assert main(["eval", "generators", "--run", str(folder), "--redrawer", "lite-resnet-sup"]) != 0
    assert "a generator with a reader is needed" in capsys.readouterr().err
