"""Keep chapters clean: execute a notebook and keep only the outputs that nbval checks.

    python -m rosetta_lite notebooks refresh notebooks/01_world_and_capture.ipynb

Chapters are stored without outputs (the book build executes them), except the cells
marked ``# NBVAL_CHECK_OUTPUT``: their small, deterministic text outputs are the
reference that ``pytest --nbval-lax`` compares against.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from rosetta_lite.files import atomic_path

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs and execution counts, except outputs of checked cells.

        clean(nbformat.read("nb.ipynb", as_version=4))
    """
    checked = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        if CHECK_MARK not in cell.source:
            cell.outputs, cell.execution_count = [], None
            continue
        checked += 1  # nbval skips reference cells without an execution count
        cell.execution_count = checked
        for output in cell.outputs:
            if output.get("output_type") == "execute_result":
                output["execution_count"] = checked
    notebook.metadata.pop("papermill", None)
    notebook.metadata.pop("widgets", None)
    return notebook


def refresh(path: str | Path, timeout: int = 900) -> Path:
    """Execute a chapter in its folder, then save it cleaned (checked outputs kept).

        refresh("notebooks/02_correlation.ipynb")
    """
    from nbclient import NotebookClient

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    with atomic_path(path) as tmp:
        nbformat.write(clean(notebook), tmp)
    return path
