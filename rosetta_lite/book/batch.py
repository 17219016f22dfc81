"""Run every chapter with papermill, with parameters from a YAML file, into one folder.

    python -m rosetta_lite chapters --params params/full.yaml --out runs/chapters

The parameter file has three optional sections::

    common:              # given to every chapter whose parameters cell declares the name
      zoo: full
      device: cuda
    chapters:            # per chapter (file stem or its number, e.g. "02"); must be declared
      01_world_and_capture:
        size: 64
    weights:             # local weights files of pretrained members, for every chapter
      resnet50: /content/resnet50.pth

A common parameter is skipped for a chapter that does not declare it (chapter 01 has no
``zoo``); a per-chapter parameter that the chapter does not declare is an error, so a
typo never passes silently.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

from rosetta_lite.files import writable_dir
from rosetta_lite.zoo.member import ZooError
from rosetta_lite.zoo.registry import parse_weights, use_weights

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SECTIONS = ("common", "chapters", "weights")


class ChapterError(RuntimeError):
    """A chapter failed to run; the message names it and its output notebook."""


def load_params(path: str | Path | None) -> dict:
    """Read and check a parameter file; ``None`` gives empty parameters (every chapter's defaults).

        params = load_params("params/full.yaml")   # {"common": {...}, "chapters": {...}, "weights": {...}}
    """
    if path is None:
        return {"common": {}, "chapters": {}, "weights": {}}
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"parameter file {str(path)!r} is not valid YAML{where}: {problem}; fix that line (see "
                         "params/full.yaml for the layout)") from None
    if not isinstance(data, dict):
        raise ValueError(f"parameter file {str(path)!r} must be a mapping with the sections {list(SECTIONS)}, "
                         f"got {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ValueError(f"parameter file {str(path)!r}: unknown section(s) {unknown}; "
                         f"allowed: {list(SECTIONS)} (put parameters under 'common:' or 'chapters:')")
    common = data.get("common") or {}
    chapters = data.get("chapters") or {}
    if not isinstance(common, dict):
        raise ValueError(f"parameter file {str(path)!r}: 'common' must map parameter names to values")
    if not isinstance(chapters, dict) or not all(isinstance(v, dict) or v is None for v in chapters.values()):
        raise ValueError(f"parameter file {str(path)!r}: 'chapters' must map each chapter to its parameters")
    # YAML reads a chapter key 02 as the number 2: the chapters are numbered with two digits
    chapters = {f"{k:02d}" if isinstance(k, int) else str(k): dict(v or {}) for k, v in chapters.items()}
    for where, values in [("common", common), *((f"chapter {k}", v) for k, v in chapters.items())]:
        _check_counts(path, where, values)
    weights = data.get("weights") or {}
    if not isinstance(weights, dict) or not all(isinstance(v, str) for v in weights.values()):
        raise ValueError(f"parameter file {str(path)!r}: 'weights' must map zoo members to weights files")
    try:
        parse_weights([f"{name}={file}" for name, file in weights.items()])
    except ZooError as error:
        raise ValueError(f"parameter file {str(path)!r}, weights: {error}") from None
    return {"common": dict(common), "chapters": chapters, "weights": dict(weights)}


#: the chapters' whole-number parameters and the largest value each may take: one parameter
#: file typo (``images: 1e30``) would otherwise start a run that never ends
COUNT_LIMITS = {"images": 100_000, "batch_size": 4096, "k": 50, "steps": 100_000, "restarts": 100, "size": 1024}


def _check_counts(path: Path, where: str, values: dict) -> None:
    for name, largest in COUNT_LIMITS.items():
        if name in values:
            value = values[name]
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= largest:
                raise ValueError(f"parameter file {str(path)!r}, {where}: {name} must be a whole number from 1 to "
                                 f"{largest:,}, got {value!r}")


def chapter_notebooks(folder: str | Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks of a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {str(folder)!r} does not exist")
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def _chapter_key(key: str, notebooks: list[Path], source: str = "the parameter file") -> Path:
    matches = [nb for nb in notebooks if key in (nb.stem, nb.name) or nb.stem.split("_", 1)[0] == key]
    if len(matches) != 1:
        names = [nb.stem for nb in notebooks]
        raise ValueError(f"{source} names chapter {key!r}, which {'is ambiguous' if matches else 'does not exist'}"
                         f"; chapters: {names}")
    return matches[0]


def declared_parameters(notebook: str | Path) -> dict:
    """The names (and inferred defaults) in a chapter's cell tagged ``parameters``."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def chapter_jobs(params: dict, notebooks: list[Path]) -> list[tuple[Path, dict]]:
    """Each chapter with the parameters it will get.

        jobs = chapter_jobs(load_params("params/full.yaml"), chapter_notebooks())

    Raises if a per-chapter parameter is not declared by its chapter, or a common one by any chapter.
    """
    per_chapter = {_chapter_key(key, notebooks): values for key, values in params["chapters"].items()}
    jobs, everywhere = [], set()
    for notebook in notebooks:
        declared = declared_parameters(notebook)
        if not declared and (params["common"] or per_chapter.get(notebook)):
            raise ValueError(f"chapter {notebook.stem} has no cell tagged 'parameters'")
        chosen = {name: value for name, value in params["common"].items() if name in declared}
        own = per_chapter.get(notebook, {})
        undeclared = sorted(set(own) - set(declared))
        if undeclared:
            raise ValueError(f"chapter {notebook.stem}: parameter(s) {undeclared} are not in its parameters cell; "
                             f"it declares {sorted(declared)}")
        chosen.update(own)
        jobs.append((notebook, chosen))
        everywhere.update(declared)
    unknown = sorted(set(params["common"]) - everywhere)
    if unknown:
        raise ValueError(f"common parameter(s) {unknown} are declared by no chapter; the chapters declare "
                         f"{sorted(everywhere)}")
    return jobs


def run_chapters(params_file: str | Path | None = None, out: str | Path = "runs/chapters", *,
                 notebooks: str | Path = NOTEBOOKS, only: list[str] | None = None,
                 overrides: dict | None = None, kernel: str | None = None, timeout: int | None = None,
                 log: Callable[[str], None] = print) -> list[dict]:
    """Run the chapters with papermill into ``out`` (one executed notebook per chapter); return a report.

        run_chapters("params/full.yaml", "runs/chapters", only=["01"])

    ``overrides`` are extra common parameters (applied after the file's). The file's
    ``weights`` go to every chapter's kernel through the environment (:func:`use_weights`).
    Each chapter runs with its own folder as working directory, as in the book build. The
    first failing chapter stops the batch with a ``ChapterError`` that names it.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    params = load_params(params_file)
    params["common"].update(overrides or {})
    books = chapter_notebooks(notebooks)
    if not books:
        raise FileNotFoundError(f"no chapter notebooks in {str(notebooks)!r}")
    jobs = chapter_jobs(params, books)  # every chapter: the file may set chapters that --only leaves out
    if only:
        chosen = {_chapter_key(key, books, source="--only") for key in only}
        jobs = [job for job in jobs if job[0] in chosen]
    use_weights(params["weights"])
    out = writable_dir(out)
    report = []
    for index, (notebook, values) in enumerate(jobs, 1):
        target = out / notebook.name
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "defaults"
        log(f"[{index}/{len(jobs)}] {notebook.stem}: running ({shown})")
        start = time.perf_counter()
        try:
            papermill.execute_notebook(str(notebook), str(target), parameters=values, cwd=str(notebook.parent),
                                       kernel_name=kernel, progress_bar=False, execution_timeout=timeout,
                                       log_output=False)
        except PapermillExecutionError as error:
            raise ChapterError(f"chapter {notebook.stem} failed in cell [{error.exec_count}]: {error.ename}: "
                               f"{error.evalue}; see the executed notebook {target}") from None
        except Exception as error:  # kernel died, timeout, bad notebook
            raise ChapterError(f"chapter {notebook.stem} failed: {error.__class__.__name__}: {error}; "
                               f"see {target}") from None
        seconds = round(time.perf_counter() - start, 1)
        log(f"[{index}/{len(jobs)}] {notebook.stem}: done in {seconds} s -> {target}")
        report.append({"chapter": notebook.stem, "parameters": values, "seconds": seconds, "output": str(target)})
    return report


def main(args: argparse.Namespace) -> int:
    """The ``chapters`` action of the command line."""
    overrides = {}
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set takes NAME=VALUE, got {item!r}")
        import yaml

        overrides[name] = yaml.safe_load(value)
    use_weights(parse_weights(args.weights or []))
    start = time.perf_counter()
    report = run_chapters(args.params, args.out, only=args.only, overrides=overrides, kernel=args.kernel)
    print(f"ran {len(report)} chapter(s) in {time.perf_counter() - start:.0f} s into {args.out}")
    return 0
