"""The full-scale path in CI: every chapter run by papermill with params/full-smoke.yaml (BigGAN-deep 128
and two encoders, untrained, offline, on the CPU, tiny sizes), and its mining's peak memory against the plan.

One module-scoped run serves both tests: the chapters take minutes even at these sizes.
"""

import json
import os
from pathlib import Path

import nbformat
import pytest

from rosetta_lite.book.batch import chapter_jobs, chapter_notebooks, load_params, run_chapters
from rosetta_lite.dictionary.runs import MEMORY_RECORD

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params" / "full-smoke.yaml"
#: measured growth of resident memory while mining against the plan's estimate of it (all but the models,
#: loaded before): the tolerance of tests/test_memory_plan.py, both ways
TOLERANCE = 0.25


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The chapters' report, their executed notebooks' folder and the run folder of one smoke run."""
    folder = tmp_path_factory.mktemp("full-smoke")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # the chapters' kernels inherit it: nothing may be downloaded
        report = run_chapters(PARAMS, folder / "chapters", overrides={"run_folder": str(folder / "run")},
                              log=lambda _: None)
    return report, folder / "chapters", folder / "run"


def test_a_run_records_its_minings_peak_memory_beside_the_plan_once(tmp_path):
    from rosetta_lite.dictionary.runs import images_saved, mine_zoo
    from rosetta_lite.mining.plan import MemoryRequest, estimate_memory
    from rosetta_lite.zoo.registry import zoo_members

    out, settings = tmp_path / "run", dict(batch_size=16, grid=8, control=False, encoders=["lite-clip"])
    assert images_saved(out) == 0
    mine_zoo("lite-untrained", 32, out, progress=False, **settings)
    record = json.loads((out / MEMORY_RECORD).read_text())
    gan, encoders = zoo_members("lite-untrained", encoders=["lite-clip"])
    estimate = estimate_memory(gan, encoders, MemoryRequest(grid=8, batch_size=16))
    assert record["images"] == 32 == images_saved(out) and record["device"] == "cpu"
    assert record["estimate"]["mining_bytes"] == estimate.device - estimate.models
    assert record["measured"]["gpu_peak_bytes"] is None
    written = (out / MEMORY_RECORD).stat().st_mtime_ns
    mine_zoo("lite-untrained", 32, out, progress=False, **settings)  # finished: reloaded, nothing mined
    assert (out / MEMORY_RECORD).stat().st_mtime_ns == written


def test_the_smoke_parameters_are_full_scale_and_tiny():
    params = load_params(PARAMS)
    common = params["common"]
    assert common["zoo"] == "full-untrained" and common["generator_name"] == "biggan-deep-128"
    assert len(common["encoders"]) == 2 and common["grid"] == 14 and common["images"] <= 8
    assert common["device"] == "cpu" and common["control"] is False
    jobs = dict(chapter_jobs(params, chapter_notebooks()))  # every name is one a chapter declares
    assert all(values.get("zoo", "full-untrained") == "full-untrained" for values in jobs.values())


def test_every_chapter_runs_at_full_scale_offline(smoke):
    report, chapters, run = smoke
    assert [entry["chapter"] for entry in report] == [notebook.stem for notebook in chapter_notebooks()]
    for entry in report:  # run_chapters stops at a failing cell; no error output may hide in one either
        executed = nbformat.read(entry["output"], as_version=4)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{entry['chapter']}: {errors[0]['ename']}: {errors[0]['evalue']}"
    mined = json.loads((run / "dictionary.json").read_text())["settings"]
    assert mined["generator"] == "biggan-deep-128" and mined["mined_encoders"] == ["resnet50", "clip-rn50"]
    assert not (run / "control").exists()  # control: false, as on a free Colab
    editing = nbformat.read(chapters / "06_editing.ipynb", as_version=4)
    start = next(c for c in editing.cells if "latents_to_edit(run" in c.source)
    assert any("image/png" in o.get("data", {}) for o in start.outputs), "chapter 06 showed no inverted photograph"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory is read from /proc")
def test_the_minings_peak_memory_is_what_the_plan_estimated(smoke):
    _, _, run = smoke
    record = json.loads((run / MEMORY_RECORD).read_text())
    measured, estimate = record["measured"]["rss_growth_bytes"], record["estimate"]["mining_bytes"]
    if measured is None:
        pytest.skip("this system does not let a process reset its peak resident memory (/proc/self/clear_refs)")
    assert record["images"] == load_params(PARAMS)["common"]["images"]
    assert (1 - TOLERANCE) * estimate <= measured <= (1 + TOLERANCE) * estimate, record


@pytest.fixture(scope="module")
def stylegan2_smoke(tmp_path_factory):
    """Chapter 05 again with StyleGAN2 (LSUN-cat's architecture) as the generator: it mines its run, then inverts.

    Chapter 06 with StyleGAN2 takes another 4.5 minutes on two cores; one W+ edit step is
    tests/test_stylegan2.py's.
    """
    folder = tmp_path_factory.mktemp("full-smoke-stylegan2")
    overrides = {"run_folder": str(folder / "run"), "generator_name": "stylegan2-cat"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        report = run_chapters(PARAMS, folder / "chapters", only=["05"], overrides=overrides,
                              log=lambda _: None)
    return report, folder / "run"


def test_stylegan2_is_mined_and_inverted_at_full_scale_offline(stylegan2_smoke):
    from rosetta_lite import zoo
    from rosetta_lite.zoo.stylegan2 import style_layers

    report, run = stylegan2_smoke
    assert [entry["chapter"][:2] for entry in report] == ["05"]
    for entry in report:
        executed = nbformat.read(entry["output"], as_version=4)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{entry['chapter']}: {errors[0]['ename']}: {errors[0]['evalue']}"
    mined = json.loads((run / "dictionary.json").read_text())["settings"]
    assert mined["generator"] == "stylegan2-cat" and mined["mined_encoders"] == ["resnet50", "clip-rn50"]
    official = style_layers(zoo.load("stylegan2-cat", pretrained=False).model)
    assert mined["layers"]["stylegan2-cat"] == official  # the official code's layers by default
