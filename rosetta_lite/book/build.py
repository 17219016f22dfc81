"""Sphinx extension of the book build: math rendered offline, chapter run times recorded.

    # _config.yml -> sphinx: extra_extensions: [rosetta_lite.book.build]

The default MathJax comes from a CDN, so a reader without network (or the browser test)
sees raw TeX. The book instead serves MathJax 3 from the installed ``mathjax`` package
(``django-static-mathjax``, plain static files): only the one combined script and its
fonts are copied into ``_static``. The chapters' student versions (no solutions) and
their zip are written with every build and served under ``student/``; progress bars
are hidden (``TQDM_DISABLE``), since a notebook's progress widget is blank on a static page;
plotly figures leave plotly.js to the page, which loads it once from ``_static``; every
chapter figure is exported as a PNG file (and a zip) under ``figures/``, for slides. Launch buttons stay on the chapters (stored notebooks)
and leave the ``.md`` pages, which Colab cannot open. After each build, every executed chapter's run time
is written to ``<build>/chapter_times.json`` (the ``book`` command prints them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from rosetta_lite.files import atomic_path

if TYPE_CHECKING:  # Sphinx loads only in a book build
    from sphinx.application import Sphinx
    from sphinx.environment import BuildEnvironment

PLOTLY_SCRIPT = "plotly.min.js"  # served once from _static to every page (the browser caches it)
MATHJAX_SCRIPT = "tex-chtml.js"  # TeX in, HTML+CSS out: the smallest combined component
MATHJAX_FONTS = Path("output/chtml/fonts/woff-v2")
STATIC_FOLDER = "mathjax"
TIMES_FILE = "chapter_times.json"


def mathjax_source() -> Path:
    """``mathjax_source() / "tex-chtml.js"`` exists: the installed MathJax 3 ``es5`` folder.

    Raises ``FileNotFoundError`` naming the package to install when it is missing.
    """
    try:
        import mathjax  # django-static-mathjax: static files only, no Django needed
    except ImportError as error:
        raise FileNotFoundError("MathJax for the offline book is missing: "
                                "pip install django-static-mathjax (see requirements.txt)") from error
    folder = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (folder / MATHJAX_SCRIPT).exists():
        raise FileNotFoundError(f"{folder / MATHJAX_SCRIPT} not found: reinstall django-static-mathjax")
    return folder


def copy_mathjax(static_dir: Path) -> Path:
    """``copy_mathjax(Path("_build/html/_static"))``: the script and its fonts, returns the script path."""
    source = mathjax_source()
    target = static_dir / STATIC_FOLDER
    (target / MATHJAX_FONTS).mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / MATHJAX_SCRIPT, target / MATHJAX_SCRIPT)
    shutil.copytree(source / MATHJAX_FONTS, target / MATHJAX_FONTS, dirs_exist_ok=True)
    return target / MATHJAX_SCRIPT


def chapter_times(env: BuildEnvironment) -> dict[str, float]:
    """``chapter_times(app.env)``: seconds each chapter took to execute in this build, by page."""
    from myst_nb.sphinx_ import NbMetadataCollector

    times = {}
    for docname, data in NbMetadataCollector.get_doc_data(env).items():
        run = data.get("exec_data") or {}
        if run.get("runtime") is not None:
            times[docname] = round(float(run["runtime"]), 2)
    return dict(sorted(times.items()))


STUDENT_FOLDER = "student"  # in the built site: the student notebooks and their zip
STUDENT_ZIP = "rosetta_lite_student_notebooks.zip"


def student_downloads(chapters: list[Path], folder: Path) -> Path:
    """Write the chapters' student versions into ``folder/student`` and zip them there; the zip's path.

        student_downloads(sorted(Path("notebooks").glob("*.ipynb")), Path("_build/extra"))
    """
    import zipfile

    from rosetta_lite.book.notebooks import write_student_versions

    target = folder / STUDENT_FOLDER
    written = write_student_versions(chapters, target)
    archive = target / STUDENT_ZIP
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in written:
            bundle.write(path, f"rosetta_lite_student/{path.name}")
    return archive


SLIDES_FOLDER = "figures"  # in the built site: every chapter figure as its own PNG, and their zip
SLIDES_ZIP = "rosetta_lite_figures.zip"


def export_figures(html_dir: Path, pages: list[str]) -> Path:
    """Copy each page's figures, in page order, to ``html_dir/figures/<page>-<n>.png`` and zip them; the zip's path.

        export_figures(Path("_build/html"), ["notebooks/02_correlation"])

    A teacher's slides take the figures as files, named by chapter, rather than
    screenshots of the page. Interactive (plotly) figures have no PNG and are not exported.
    """
    import re
    import zipfile

    target = html_dir / SLIDES_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for page in pages:
        html = html_dir / f"{page}.html"
        sources = re.findall(r'<img[^>]*\ssrc="([^"]*_images/[^"]+\.png)"', html.read_text()) if html.exists() else []
        for n, source in enumerate(dict.fromkeys(sources), 1):
            copy = target / f"{Path(page).name}-{n}.png"
            shutil.copy2((html.parent / source).resolve(), copy)
            written.append(copy)
    archive = target / SLIDES_ZIP
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as bundle:
        for path in written:
            bundle.write(path, f"rosetta_lite_figures/{path.name}")
    return archive


def _serve_student_notebooks(app) -> None:
    # the teaching page links to these: a teacher downloads exactly what this build checked
    chapters = sorted((Path(app.srcdir) / "notebooks").glob("*.ipynb"))
    if not chapters:
        return
    extra = Path(app.outdir).parent / "extra"
    student_downloads(chapters, extra)
    app.config.html_extra_path = [*app.config.html_extra_path, str(extra)]


def _silence_progress_bars(app) -> None:
    # the chapters' kernels inherit this: a progress widget is blank on a static page
    import os

    os.environ["TQDM_DISABLE"] = "1"


def _plotly_from_static(app) -> None:
    # the kernels inherit the flag, so figures leave plotly.js out; every page loads it from _static
    import os

    from rosetta_lite.viz import PLOTLY_FROM_PAGE

    os.environ[PLOTLY_FROM_PAGE] = "1"
    app.add_js_file(PLOTLY_SCRIPT, priority=200)  # before any page-level script (require.js defines `define`)


def plotly_source() -> Path:
    """plotly.js as the installed plotly package ships it (one minified file).

        shutil.copy2(plotly_source(), "_build/html/_static/plotly.min.js")
    """
    import plotly

    return Path(plotly.__file__).parent / "package_data" / PLOTLY_SCRIPT


def _use_local_mathjax(app) -> None:
    mathjax_source()  # fail at the start of a build, not after executing every chapter
    # A relative path is served from _static (Sphinx's add_js_file rule).
    app.config.mathjax_path = f"{STATIC_FOLDER}/{MATHJAX_SCRIPT}"


def _finish(app, error) -> None:
    if error is not None or app.builder.format != "html":
        return
    copy_mathjax(Path(app.outdir) / "_static")
    shutil.copy2(plotly_source(), Path(app.outdir) / "_static" / PLOTLY_SCRIPT)
    chapters = sorted(d for d in app.env.found_docs if notebook_page(app.env.doc2path(d)))
    export_figures(Path(app.outdir), chapters)
    times = chapter_times(app.env)
    if times:
        with atomic_path(Path(app.outdir).parent / TIMES_FILE) as path:
            Path(path).write_text(json.dumps(times, indent=1) + "\n")


def notebook_page(source: str | Path) -> bool:
    """Whether a page's source file is a stored notebook, the only kind Colab opens from the repository.

        notebook_page("notebooks/04_rosetta_dictionary.ipynb")   # True; "book/results.md" is False
    """
    return Path(source).suffix == ".ipynb"


def _launch_only_from_notebooks(app, pagename, templatename, context, doctree) -> None:
    # the theme offers "launch" on executable MyST pages too, and Colab opens only .ipynb files
    if notebook_page(app.env.doc2path(pagename)):
        return
    buttons = context.get("header_buttons")
    if buttons:
        buttons[:] = [b for b in buttons if b.get("label") != "launch-buttons"]


def setup(app: Sphinx) -> dict:
    """Sphinx entry point (``extra_extensions: [rosetta_lite.book.build]`` in ``_config.yml``)."""
    app.connect("builder-inited", _use_local_mathjax)
    app.connect("builder-inited", _serve_student_notebooks)
    app.connect("builder-inited", _silence_progress_bars)
    app.connect("builder-inited", _plotly_from_static)
    app.connect("html-page-context", _launch_only_from_notebooks, priority=502)  # after the theme's (501)
    app.connect("build-finished", _finish)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
