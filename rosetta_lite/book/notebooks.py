"""Keep chapters clean: execute a notebook, then store it without outputs.

    python -m rosetta_lite notebooks refresh notebooks/01_world_and_capture.ipynb

Chapters are stored without outputs (the book build executes them). Their checks are
``assert`` statements in the cells, so ``pytest --nbval-lax`` and the book build fail
when one does not hold, at any papermill parameters.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from rosetta_lite.files import atomic_path


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs, execution counts and run metadata.

        clean(nbformat.read("nb.ipynb", as_version=4))
    """
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("papermill", None)
    notebook.metadata.pop("widgets", None)
    return notebook


def refresh(path: str | Path, timeout: int = 900) -> Path:
    """Execute a chapter in its folder (every check must hold), then save it cleaned.

        refresh("notebooks/02_correlation.ipynb")
    """
    from nbclient import NotebookClient

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    with atomic_path(path) as tmp:
        nbformat.write(clean(notebook), tmp)
    return path
