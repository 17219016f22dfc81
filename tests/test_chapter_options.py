"""The chapters' zoo options: a generator's member options and local weights files travel in ZooOptions to the run."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from rosetta_lite.dictionary.runs import open_run
from rosetta_lite.zoo import biggan
from rosetta_lite.zoo.member import ZooError
from rosetta_lite.zoo.registry import WEIGHTS_VARIABLE, chosen_options, zoo_members

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")
CHAPTERS = ["02_correlation", "03_best_buddies", "04_rosetta_dictionary"]  # they mine (mine_always)
REOPENING = ["05_inversion", "06_editing"]  # they reopen the run, and mine it only when it is missing


def test_options_left_at_none_keep_the_members_defaults():
    assert chosen_options({"classes": None, "truncation": 0.5, "layers": None}) == {"truncation": 0.5}
    assert chosen_options(None) == {}
    with pytest.raises(ValueError, match="generator options are a dict of option names and values"):
        chosen_options(["truncation", 0.5])


def test_a_generator_without_options_refuses_one_that_is_set():
    with pytest.raises(ZooError, match=r"lite-renderer has no option \['truncation'\]: it accepts \['world'\]"):
        zoo_members("lite-untrained", encoders=["lite-clip"], generator_options={"truncation": 0.5, "classes": None})


def test_a_run_records_its_generators_options_and_open_run_rebuilds_it_with_them(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_VARIABLE, raising=False)
    weights = {"resnet50": str(tmp_path / "r50.pth")}  # recorded for pretrained members; this zoo is untrained
    options = {"classes": ["goldfish"], "truncation": 0.5, "layers": None}
    run = open_run(tmp_path / "run", "full-untrained", images=2, k=1, batch_size=2, grid=4, control=False,
                   generator="biggan-deep-128", encoders=["resnet50"], generator_options=options, weights=weights)
    assert run.generator.truncation == 0.5 and run.generator.classes == (biggan.class_index("goldfish"),)
    assert run.trained.settings["extra"]["generator_options"] == {"classes": ["goldfish"], "truncation": 0.5}
    assert os.environ[WEIGHTS_VARIABLE] == f"resnet50={weights['resnet50']}"
    again = open_run(tmp_path / "run", "full-untrained")  # not mined again: rebuilt from what the run recorded
    assert again.generator.truncation == 0.5 and again.generator.layers == run.generator.layers


def _parameters_and_opening(chapter: str) -> tuple[str, str]:
    """The chapter's parameters cell and the cell that opens its run."""
    with open(os.path.join(NOTEBOOKS, chapter + ".ipynb")) as handle:
        cells = [("".join(c["source"]), c) for c in json.load(handle)["cells"] if c["cell_type"] == "code"]
    parameters = next(src for src, c in cells if "parameters" in c["metadata"].get("tags", []))
    return parameters, next(src for src, _ in cells if "open_run(\n    run_folder" in src)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_mining_chapters_pass_every_zoo_option_to_open_run(chapter):
    parameters, opened = _parameters_and_opening(chapter)
    for name in ("encoders", "weights", "classes", "truncation", "gan_layers"):
        assert f"\n{name} = " in parameters, f"{chapter} declares no {name!r} parameter"
    assert "encoders=encoders" in opened and "weights=weights" in opened
    assert "generator_options=dict(classes=classes, truncation=truncation, layers=gan_layers)" in opened
    assert "**zoo_options" in opened  # the options above reach open_run


@pytest.mark.parametrize("chapter", CHAPTERS + REOPENING)
def test_every_chapter_with_a_run_passes_the_generator_and_the_control_to_open_run(chapter):
    parameters, opened = _parameters_and_opening(chapter)
    # the chapters keep `generator` for the member and the control's dictionary as `untrained`:
    # a parameter of either name would be overwritten by the cells that run after it
    assert "\ngenerator_name = None" in parameters and "\ncontrol = True" in parameters
    assert "generator=generator_name" in opened and "control=control" in opened
    assert "trained, control =" not in opened


def test_a_chapter_without_a_control_reads_every_count_as_not_told_from_chance(tmp_path):
    from rosetta_lite.book.chapters import chance_counts, chance_table
    from rosetta_lite.book.reading import read_best_correlations, read_rosetta_neurons

    run = open_run(tmp_path / "run", "lite-untrained", images=32, k=1, batch_size=32, grid=8, control=False,
                   encoders=["lite-clip", "lite-resnet-sup"])
    assert run.control is None and not (tmp_path / "run" / "control").exists()
    report = chance_counts(run.trained, run.control)
    table = chance_table(report)  # whole numbers, and empty cells where no control measured chance
    assert list(table.index) == ["lite-clip", "lite-resnet-sup"] and str(table["best_buddies"].dtype) == "Int64"
    assert table["control_best_buddies"].isna().all() and table["above_chance"].isna().all()
    neurons = report.pop("rosetta_neurons")
    assert neurons == {"trained": run.trained.rosetta_count(), "control": None, "trained_above_chance": None}
    assert report["lite-clip"]["best_buddies"] == len(run.trained.buddies["lite-clip"])
    assert report["lite-clip"]["chance_level"] is None
    assert "No control was mined" in read_rosetta_neurons(neurons)
    assert "No control was mined" in read_best_correlations(run.trained, run.control)


def test_the_chance_table_gives_counts_as_whole_numbers(lite_run):
    from rosetta_lite.book.chapters import chance_counts, chance_table
    from rosetta_lite.dictionary.runs import load_dictionaries

    trained, control = load_dictionaries(lite_run)
    table = chance_table(chance_counts(trained, control))
    assert list(table.columns) == ["best_buddies", "control_best_buddies", "chance_level", "above_chance"]
    assert [str(table[c].dtype) for c in table.columns] == ["Int64", "Int64", "Float64", "Int64"]
    assert not table.isna().any().any() and (table["above_chance"] <= table["best_buddies"]).all()
    assert table.loc["lite-clip", "best_buddies"] == len(trained.buddies["lite-clip"])
