"""Progress bars: hidden when asked, and when the environment (the book build) says so."""

import os
import subprocess
import sys

from rosetta_lite.progress import progress_bar

PROBE = "from rosetta_lite.progress import progress_bar; print(progress_bar(total=3, enabled=True).disable)"


def test_a_bar_is_hidden_when_not_enabled():
    assert progress_bar(total=3, enabled=False).disable
    assert list(progress_bar(range(3), enabled=False)) == [0, 1, 2]  # hidden, still iterates


def test_the_environment_of_a_new_process_hides_every_bar():
    """tqdm reads TQDM_* when it is imported: the chapters' kernels, started by the build, see it."""
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    shown = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    hidden = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            env={**env, "TQDM_DISABLE": "1"}, check=True)
    assert shown.stdout.split()[-1] == "False" and hidden.stdout.split()[-1] == "True"


def test_the_book_build_sets_it_for_the_chapters(monkeypatch):
    from rosetta_lite.book import build

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    build._silence_progress_bars(None)
    assert os.environ["TQDM_DISABLE"] == "1"
