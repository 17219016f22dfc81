"""Keep chapters clean: execute a notebook, then store it without outputs.

    python -m rosetta_lite notebooks refresh notebooks/01_world_and_capture.ipynb

    python -m rosetta_lite notebooks repository   # _config.yml's repository URL into every chapter

Chapters are stored without outputs (the book build executes them). Their checks are
``assert`` statements in the cells, so ``pytest --nbval-lax`` and the book build fail
when one does not hold, at any papermill parameters.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from rosetta_lite.files import atomic_path, project_path


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


#: cells with this tag are an exercise's worked solution: shown behind a toggle in the book
#: (markdown in a dropdown admonition, code tagged ``hide-cell``), left out of student versions
SOLUTION_TAG = "solution"


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return SOLUTION_TAG in cell.metadata.get("tags", [])


def exercise_count(notebook: nbformat.NotebookNode) -> int:
    """How many numbered exercises the chapter's "## Exercises" cell lists (0 without one).

        exercise_count(nbformat.read("notebooks/01_world_and_capture.ipynb", as_version=4))
    """
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## Exercises"):
            return len(re.findall(r"^\d+\. ", cell.source, flags=re.M))
    return 0


def student_version(notebook: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The chapter without its solution cells, cleaned; it runs as the chapter does.

        student = student_version(nbformat.read("notebooks/03_best_buddies.ipynb", as_version=4))

    Solutions must come after every other cell, so that no remaining cell needs one.
    """
    import copy

    cells = notebook.cells
    first = next((i for i, c in enumerate(cells) if is_solution(c)), len(cells))
    if any(not is_solution(c) for c in cells[first:]):
        raise ValueError(f"{name}: a cell that is not a solution follows a solution; "
                         "solutions must be the chapter's last cells, so the student version still runs")
    student = copy.deepcopy(notebook)
    student.cells = student.cells[:first]
    return clean(student)


def write_student_versions(paths: list[str | Path], out: str | Path) -> list[Path]:
    """Write each chapter's student version (no solutions) into ``out``, under the same name.

        write_student_versions(sorted(Path("notebooks").glob("*.ipynb")), "runs/student")
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the student notebooks")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in map(Path, paths):
        if path.suffix != ".ipynb" or not path.is_file():
            raise FileNotFoundError(f"{path} is not a notebook file (.ipynb)")
        target = out / path.name
        if target.resolve() == path.resolve():
            raise ValueError(f"--out {out} holds the chapters themselves; give another folder")
        student = student_version(nbformat.read(path, as_version=4), path.name)
        with atomic_path(target) as tmp:
            nbformat.write(student, tmp)
        written.append(target)
    return written


#: a chapter's Colab install cell: ``pip install "rosetta_lite[colab] @ git+URL"`` (the ``colab`` extra
#: adds only what Colab lacks; ``book`` would pull the book's build tools into every session)
INSTALL_URL = re.compile(r"(rosetta_lite\[colab\] @ git\+)([^\"'\s]+)")


def repository_url(config: str | Path | None = None) -> str:
    """The book's repository URL: ``repository.url`` in ``_config.yml``, the one place it is set.

        repository_url()   # "https://github.com/rosetta-lite/rosetta_lite"
    """
    import yaml

    config = Path(config) if config else project_path("_config.yml")
    url = ((yaml.safe_load(config.read_text()) or {}).get("repository") or {}).get("url")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError(f"{config} has no repository: url: https://... (the book's repository); got {url!r}")
    return url.rstrip("/")


def install_urls(notebook: nbformat.NotebookNode) -> list[str]:
    """The repository URLs a chapter's cells install rosetta_lite from."""
    return [m.group(2) for c in notebook.cells if c.cell_type == "code" for m in INSTALL_URL.finditer(c.source)]


def stamp_repository(paths: list[str | Path], url: str) -> list[Path]:
    """Write ``url`` into each chapter's Colab install cell; return the chapters that changed.

        stamp_repository(sorted(Path("notebooks").glob("*.ipynb")), repository_url())

    Colab opens the stored chapter straight from the repository, so its install cell must
    hold the URL itself; this keeps every chapter equal to ``_config.yml``'s.
    """
    changed = []
    for path in map(Path, paths):
        notebook = nbformat.read(path, as_version=4)
        if not install_urls(notebook):
            raise ValueError(f"{path} has no Colab install cell (pip install \"rosetta_lite[colab] @ git+URL\")")
        if set(install_urls(notebook)) == {url}:
            continue
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.source = INSTALL_URL.sub(lambda m: m.group(1) + url, cell.source)
        with atomic_path(path) as tmp:
            nbformat.write(notebook, tmp)
        changed.append(path)
    return changed
