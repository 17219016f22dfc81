"""The papermill batch: every chapter with a parameter file, into one folder."""

import json
from pathlib import Path

import pytest

from rosetta_lite.book.batch import (
    ChapterError,
    chapter_jobs,
    chapter_notebooks,
    declared_parameters,
    load_params,
    run_chapters,
)
from rosetta_lite.book.parameters import refuse_unknown_parameters, unknown_parameters
from rosetta_lite.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_full_parameter_file_plans_every_chapter():
    params = load_params(ROOT / "params" / "full.yaml")
    assert params["common"]["zoo"] == "full" and params["common"]["device"] == "cuda"
    assert params["common"]["images"] == 1000 and params["common"]["batch_size"] == 16
    assert params["common"]["grid"] == 56  # the largest map (BigGAN's 256) would hold twice the rows
    jobs = {nb.stem: (declared_parameters(nb), values) for nb, values in chapter_jobs(params, chapter_notebooks())}
    assert jobs and all(stem[:2].isdigit() for stem in jobs)
    for stem, (declared, values) in jobs.items():  # each chapter gets every full-scale value it declares
        for name, value in params["common"].items():
            assert values.get(name, value) == value and (name in values) == (name in declared), (stem, name)
    assert jobs["01_world_and_capture"][1]["model_name"] == "resnet50"
    full_scale = [stem for stem, (_, values) in jobs.items() if values.get("zoo") == "full"]
    assert full_scale == [stem for stem in jobs if stem[:2] in ("02", "03", "04", "05", "06")]
    assert all(jobs[stem][1]["grid"] == 56 for stem in full_scale)


def test_runs_chapter_01_with_parameters_into_a_folder(tmp_path):
    params = tmp_path / "tiny.yaml"
    params.write_text("common:\n  zoo: lite   # not declared by chapter 01: skipped\n"
                      "chapters:\n  '01':\n    n_samples: 2\n    layers: [layer1]\n    input_size: 32\n")
    lines = []
    report = run_chapters(params, tmp_path / "out", only=["01"], log=lines.append)
    assert [r["chapter"] for r in report] == ["01_world_and_capture"]
    assert lines[0].startswith("[1/1] 01_world_and_capture: running") and "done in" in lines[-1]
    executed = json.loads((tmp_path / "out" / "01_world_and_capture.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "n_samples = 2" in "".join(injected[0]["source"])
    assert "zoo" not in "".join(injected[0]["source"])
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("text, message", [
    ("common: [1, 2]\n", "'common' must map parameter names"),
    ("zoo: full\n", "unknown section(s) ['zoo']"),
    ("chapters:\n  99_nothing:\n    size: 3\n", "chapter '99_nothing', which does not exist"),
    ("chapters:\n  '01':\n    sise: 64\n", "chapter 01_world_and_capture: parameter(s) ['sise'] are not in"),
    ("common: {zoo: [unclosed\n", "is not valid YAML at line 2, column 1: expected ',' or ']', but got"),
    ("common:\n  imagez: 64\n", "common parameter(s) ['imagez'] are declared by no chapter"),
    ("common:\n  images: 1.0e+30\n", "common: images must be a whole number from 1 to 100,000, got 1e+30"),
    ("chapters:\n  02:\n    k: 0\n", "chapter 02: k must be a whole number from 1 to 50"),
])
def test_bad_parameter_file_is_a_clear_error(tmp_path, capsys, text, message):
    params = tmp_path / "bad.yaml"
    params.write_text(text)
    assert main(["chapters", "--params", str(params), "--out", str(tmp_path / "out"), "--only", "01"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_only_some_chapters_of_a_file_that_sets_others(tmp_path):
    """--only picks chapters after the whole file is checked: chapter 01's settings do not stop 02."""
    params = load_params(ROOT / "params" / "full.yaml")
    assert "01_world_and_capture" in params["chapters"] or "01" in params["chapters"]
    jobs = chapter_jobs(params, chapter_notebooks())
    assert len(jobs) == len(chapter_notebooks())
    with pytest.raises(ValueError, match="--only names chapter '99', which does not exist"):
        run_chapters(ROOT / "params" / "full.yaml", tmp_path / "out", only=["99"], log=lambda _: None)


def test_set_with_an_undeclared_name_is_refused(tmp_path, capsys):
    assert main(["chapters", "--set", "imagez=64", "--out", str(tmp_path / "out"), "--only", "01"]) == 2
    assert "['imagez'] are declared by no chapter" in capsys.readouterr().err


def test_failing_chapter_is_named(tmp_path):
    import nbformat

    folder = tmp_path / "notebooks"
    folder.mkdir()
    for stem, code in (("01_fine", "x = 1"), ("02_broken", "raise ValueError(f'bad x={x}')")):
        params = nbformat.v4.new_code_cell("x = 0  # a parameter", metadata={"tags": ["parameters"]})
        kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        nbformat.write(nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(code)], metadata=kernel),
                       folder / f"{stem}.ipynb")
    lines = []
    with pytest.raises(ChapterError, match=r"chapter 02_broken failed in cell \[3\]: ValueError: bad x=5"):
        run_chapters(None, tmp_path / "out", notebooks=folder, overrides={"x": 5}, log=lines.append)
    assert lines[1].startswith("[1/2] 01_fine: done") and lines[2].startswith("[2/2] 02_broken: running")


def test_unknown_parameters_come_from_the_injected_cell_only():
    own = "# Parameters (papermill -p NAME VALUE overrides them).\nsize = 32  # pixels\nlayers: list = ['a']\n"
    assert unknown_parameters([own, "# Parameters\nsize = 64\n", "check()"]) == ([], ["layers", "size"])
    assert unknown_parameters([own, "# Parameters\nsizee = 64\nlayers = []\n"]) == (["sizee"], ["layers", "size"])
    assert unknown_parameters([own, "x = 1"]) == ([], [])  # Jupyter, the book build, nbval: nothing injected
    with pytest.raises(ValueError, match=r"\['sizee'\] are not declared by this chapter; .* declares \['layers', 'size'\]"):
        refuse_unknown_parameters([own, "# Parameters\nsizee = 64\n"])
    refuse_unknown_parameters([])  # no kernel history: no papermill


def test_papermill_with_an_undeclared_name_stops_the_chapter(tmp_path):
    """Plain papermill only warns; the chapter's own check refuses (and a declared name runs)."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    params = nbformat.v4.new_code_cell("# Parameters\nsize = 32  # pixels", metadata={"tags": ["parameters"]})
    check = nbformat.v4.new_code_cell("from rosetta_lite.book.parameters import refuse_unknown_parameters\n"
                                      "refuse_unknown_parameters()\nprint(size)")
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    notebook = tmp_path / "chapter.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[params, check], metadata=kernel), notebook)
    done = papermill.execute_notebook(str(notebook), str(tmp_path / "ok.ipynb"), parameters={"size": 64},
                                      progress_bar=False)
    assert done.cells[-1].outputs[0]["text"] == "64\n"
    with pytest.raises(PapermillExecutionError, match=r"\['sizee'\] are not declared by this chapter"):
        papermill.execute_notebook(str(notebook), str(tmp_path / "typo.ipynb"), parameters={"sizee": 64},
                                   progress_bar=False)


def test_a_chapter_key_read_as_a_number_keeps_its_two_digits(tmp_path):
    from rosetta_lite.book.batch import load_params

    params = tmp_path / "p.yaml"
    params.write_text("chapters:\n  02:\n    k: 1\n")
    assert load_params(params)["chapters"] == {"02": {"k": 1}}


@pytest.mark.parametrize("params_file", ["params/full.yaml", None])
def test_only_two_chapters_run_from_the_command_line_with_any_parameter_file(tmp_path, monkeypatch, params_file):
    """`chapters --params params/full.yaml --only 02 03` runs 02 and 03 with their values; 01's settings are checked."""
    import papermill

    ran = []
    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda source, target, parameters, **_: ran.append((Path(source).stem, parameters)))
    argv = ["chapters", "--out", str(tmp_path / "out"), "--only", "02", "03"]
    assert main(argv + (["--params", str(ROOT / params_file)] if params_file else [])) == 0
    assert [stem for stem, _ in ran] == ["02_correlation", "03_best_buddies"]
    expected = load_params(ROOT / params_file)["common"] if params_file else {}
    assert all(values == expected for _, values in ran)
