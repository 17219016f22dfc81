"""Shared fixtures, made once per test session: the built book, and a small mining run of the lite zoo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rosetta_lite.dictionary.runs import mine_zoo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def html(tmp_path_factory) -> Path:
    """The built site (``.../_build/html``): built here with warnings as errors, or ROSETTA_BOOK_BUILD's."""
    given = os.environ.get("ROSETTA_BOOK_BUILD")
    if given:
        out = Path(given)
    else:
        out = tmp_path_factory.mktemp("book")
        script = Path(sys.executable).parent / "jupyter-book"
        done = subprocess.run([str(script), "build", str(ROOT), "--warningiserror", "--path-output", str(out)],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    site = out / "_build" / "html"
    assert (site / "index.html").exists(), f"no built book under {site}"
    return site


@pytest.fixture(scope="session")
def lite_run(tmp_path_factory) -> Path:
    """A small mining run of the trained lite zoo (and its control), made here, so that no test
    depends on another having mined ``runs/lite``."""
    out = tmp_path_factory.mktemp("lite-run")
    mine_zoo("lite", images=256, out=out, k=3, batch_size=32, progress=False)
    return out


@pytest.fixture
def lock_holder(tmp_path):
    """Another process holding ``tmp_path``'s run lock until the test ends (then killed, as a crash would)."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import time; from rosetta_lite.files import run_lock\n"
                               f"with run_lock({str(tmp_path)!r}):\n print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
