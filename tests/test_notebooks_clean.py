"""Chapters are stored without outputs; their checks are asserts that run in nbval and the book."""

from pathlib import Path

import nbformat
import pytest

from rosetta_lite.book.notebooks import clean

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


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
