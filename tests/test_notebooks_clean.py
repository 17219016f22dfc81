"""Chapters are stored without outputs; their checks are asserts that run in nbval and the book."""

import re
from pathlib import Path

import nbformat
import pytest

from rosetta_lite.book.notebooks import clean

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_clean_strips_outputs_counts_and_run_metadata():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                     outputs=[nbformat.v4.new_output("stream", text="1\n")])
    cell.metadata["execution"] = {"iopub.status.busy": "now"}
    nb.cells = [nbformat.v4.new_markdown_cell("text"), cell]
    nb.metadata["papermill"] = {"duration": 1.0}
    out = clean(nb)
    assert out.cells[1].outputs == [] and out.cells[1].execution_count is None
    assert "execution" not in out.cells[1].metadata and "papermill" not in out.metadata
    assert out.cells[0].source == "text"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapters_are_stored_without_outputs_and_check_with_asserts(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
    assert any("assert " in c.source for c in code), f"{path.name} checks nothing"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_the_cell_after_the_parameters_refuses_undeclared_names(path):
    cells = nbformat.read(path, as_version=4).cells
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    assert "\nrefuse_unknown_parameters()" in "\n" + cells[index + 1].source, path.name


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_exercise_has_a_solution_hidden_in_the_book(path):
    from rosetta_lite.book.notebooks import exercise_count, is_solution

    nb = nbformat.read(path, as_version=4)
    solutions = [c for c in nb.cells if is_solution(c)]
    explained = [c for c in solutions if c.cell_type == "markdown"]
    assert exercise_count(nb) > 0 and len(explained) == exercise_count(nb), path.name
    assert all(c.source.startswith(f"```{{admonition}} Solution {i}\n:class: dropdown") for i, c in enumerate(explained, 1))
    assert all("hide-cell" in c.metadata.tags for c in solutions if c.cell_type == "code")


def test_student_versions_drop_the_solutions_and_keep_the_rest(tmp_path):
    from rosetta_lite.book.notebooks import is_solution, write_student_versions
    from rosetta_lite.cli import main

    written = write_student_versions(CHAPTERS, tmp_path)
    for chapter, student in zip(CHAPTERS, written):
        full, cut = nbformat.read(chapter, as_version=4), nbformat.read(student, as_version=4)
        assert not any(is_solution(c) for c in cut.cells)
        assert [c.source for c in cut.cells] == [c.source for c in full.cells if not is_solution(c)]
    assert main(["notebooks", "student", str(CHAPTERS[0]), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / CHAPTERS[0].name).exists()


def test_student_version_refuses_a_cell_after_a_solution_and_bad_folders(tmp_path):
    from rosetta_lite.book.notebooks import student_version, write_student_versions

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## Exercises\n\n1. x"),
                nbformat.v4.new_code_cell("1", metadata={"tags": ["solution", "hide-cell"]}),
                nbformat.v4.new_code_cell("x = 2")]
    with pytest.raises(ValueError, match="follows a solution"):
        student_version(nb, "nb.ipynb")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        write_student_versions(CHAPTERS[:1], tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="is not a notebook"):
        write_student_versions([tmp_path / "missing.ipynb"], tmp_path / "out")
    with pytest.raises(ValueError, match="holds the chapters themselves"):
        write_student_versions(CHAPTERS[:1], CHAPTERS[0].parent)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_installs_from_the_configured_repository(path):
    from rosetta_lite.book.notebooks import install_urls, repository_url

    assert install_urls(nbformat.read(path, as_version=4)) == [repository_url()], \
        f"{path.name}: run `python -m rosetta_lite notebooks repository` after changing _config.yml"


def test_a_fork_stamps_its_repository_into_every_chapter(tmp_path):
    import shutil

    from rosetta_lite.book.notebooks import install_urls, repository_url, stamp_repository

    copies = [Path(shutil.copy(path, tmp_path / path.name)) for path in CHAPTERS[:2]]
    fork = "https://github.com/someone/rosetta_lite"
    assert stamp_repository(copies, fork) == copies and stamp_repository(copies, fork) == []
    stamped = nbformat.read(copies[0], as_version=4)
    assert install_urls(stamped) == [fork]
    original = nbformat.read(CHAPTERS[0], as_version=4)
    assert [c.source for c in stamped.cells][2:] == [c.source for c in original.cells][2:]
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  branch: main\n")
    with pytest.raises(ValueError, match="has no repository: url"):
        repository_url(config)
    bare = tmp_path / "bare.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), bare)
    with pytest.raises(ValueError, match="has no Colab install cell"):
        stamp_repository([bare], fork)


@pytest.mark.parametrize("path", sorted(ROOT.glob("book/*.md")) + CHAPTERS, ids=lambda p: p.name)
def test_no_page_source_holds_control_characters(path):
    """A backspace or form feed where \\b or \\f was meant renders as "Math input error"."""
    text = path.read_text()
    bad = sorted({repr(ch) for ch in text if ord(ch) < 32 and ch not in "\n\t\r"})
    assert not bad, f"{path.name} holds control characters {bad}: an escaped backslash lost (\\bigl, \\frac)?"


def _code_cells(path: Path) -> list[str]:
    if path.suffix == ".ipynb":
        return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("path", sorted(ROOT.glob("book/*.md")) + CHAPTERS, ids=lambda p: p.name)
def test_code_cells_fit_the_column(path):
    """At most 88 characters a line (a link excepted), so no code cell scrolls sideways on the page."""
    wide = [line for cell in _code_cells(path) for line in cell.splitlines() if len(line) > 88 and "://" not in line]
    assert not wide, f"{path.name}: {len(wide)} code line(s) over 88 characters, e.g. {wide[0]!r}"
