"""What a Colab user meets: launch buttons only where Colab can open the page, an install cell that works."""

import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest

from rosetta_lite.book.build import notebook_page
from rosetta_lite.book.notebooks import INSTALL_URL

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = sorted((ROOT / "notebooks").glob("*.ipynb"))[0]
COLAB = "colab.research.google.com"


def test_only_notebook_sources_are_notebook_pages():
    assert notebook_page("notebooks/04_rosetta_dictionary.ipynb")
    assert not notebook_page("book/results.md") and not notebook_page("book/results.md.txt")


PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def _mini_book(folder: Path) -> None:
    (folder / "_config.yml").write_text(textwrap.dedent("""\
        title: mini
        only_build_toc_files: true
        execute: {execute_notebooks: "off"}
        repository: {url: "https://github.com/someone/fork", branch: main}
        launch_buttons: {colab_url: "https://colab.research.google.com"}
        sphinx: {extra_extensions: [rosetta_lite.book.build]}
        """))
    (folder / "_toc.yml").write_text("format: jb-book\nroot: page\nchapters:\n- file: chapter\n")
    (folder / "page.md").write_text("---\nfile_format: mystnb\nkernelspec: {name: python3, display_name: Python 3}\n"
                                    "---\n# A page\n```{code-cell} ipython3\n1 + 1\n```\n")
    figure = nbformat.v4.new_output("display_data", data={"image/png": PIXEL, "text/plain": "<Figure>"})
    chapter = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A chapter"),
                                              nbformat.v4.new_code_cell("1 + 1", outputs=[figure])])
    chapter.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(chapter, folder / "chapter.ipynb")
    (folder / "notebooks").mkdir()
    exercise = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                               nbformat.v4.new_code_cell("x + 1", metadata={"tags": ["solution"]})])
    nbformat.write(exercise, folder / "notebooks" / "01_one.ipynb")


def test_launch_buttons_stay_on_chapters_and_leave_executable_md_pages(tmp_path):
    _mini_book(tmp_path)
    build = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(tmp_path)], capture_output=True,
                           text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    html = tmp_path / "_build" / "html"
    assert COLAB in (html / "chapter.html").read_text()
    assert COLAB not in (html / "page.html").read_text()  # the theme would offer it: Colab cannot open a .md


def test_every_build_serves_the_student_notebooks_and_their_zip(tmp_path):
    import zipfile

    from rosetta_lite.book.build import SLIDES_FOLDER, SLIDES_ZIP, STUDENT_FOLDER, STUDENT_ZIP

    _mini_book(tmp_path)
    build = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    served = tmp_path / "_build" / "html" / STUDENT_FOLDER
    student = nbformat.read(served / "01_one.ipynb", as_version=4)
    assert [c.source for c in student.cells] == ["x = 1"]  # the solution left out
    with zipfile.ZipFile(served / STUDENT_ZIP) as bundle:
        assert bundle.namelist() == ["rosetta_lite_student/01_one.ipynb"]
    figures = tmp_path / "_build" / "html" / SLIDES_FOLDER
    assert (figures / "chapter-1.png").read_bytes()[:4] == b"\x89PNG"  # the chapter's one figure, as a file
    with zipfile.ZipFile(figures / SLIDES_ZIP) as bundle:
        assert bundle.namelist() == ["rosetta_lite_figures/chapter-1.png"]


def _shadow_site(folder: Path) -> Path:
    """The test venv's packages, rosetta_lite's own install left out, as one folder of links."""
    folder.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "rosetta_lite" not in entry.name and entry.suffix != ".pth":
            (folder / entry.name).symlink_to(entry)
    return folder


def test_the_install_cell_installs_the_checkout_and_it_imports(tmp_path):
    """The chapter's own pip line, its URL pointed at this checkout, in a fresh venv that sees this venv's
    packages: nothing is downloaded (no index is allowed), so the line must ask for nothing missing."""
    if not (ROOT / ".git").exists():
        pytest.skip("the checkout is not a git repository")
    cell = next(c.source for c in nbformat.read(CHAPTER, as_version=4).cells if INSTALL_URL.search(c.source))
    line = next(row.strip().removeprefix("!") for row in cell.splitlines() if "pip install" in row)
    line = INSTALL_URL.sub(lambda m: m.group(1) + f"file://localhost{ROOT}", line)  # pip 23 wants a host
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "shadow.pth").write_text(str(_shadow_site(tmp_path / "shadow")) + "\n")  # pip itself included
    python = venv / "bin" / "python"
    # offline: build isolation would fetch setuptools; the build needs nothing this venv lacks
    command = re.sub(r"^pip install", f"{python} -m pip install --no-build-isolation --no-index", line)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=600, env=env)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    assert "does not provide the extra" not in install.stderr, install.stderr[-2000:]
    where = subprocess.run([python, "-c", "import rosetta_lite, lpips; print(rosetta_lite.__file__)"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.strip().startswith(str(venv))  # the installed copy, not this checkout
