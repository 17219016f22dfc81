"""Atomic file writes: a crash leaves the old file or the new one, never half of one.

    with atomic_path("runs/table.safetensors") as tmp: save_file(tensors, tmp)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: the run folder that ``mine``, ``eval`` and the chapters share (relative to the project)
DEFAULT_RUN = "runs/lite"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

        with atomic_path("out/fig.png") as tmp: fig.savefig(tmp, format="png")
    """
    target = Path(path)
    writable_dir(target.parent)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes private files; results are ordinary files
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that files can be written there.

        out = writable_dir("runs/lite")
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"cannot create output folder {str(folder)!r}: {error.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {str(folder)!r} is not writable; choose another with --out")
    return folder


def project_path(path: str | os.PathLike) -> Path:
    """A path relative to the project's root when running from a checkout, else to the working folder.

        project_path("runs/lite")   # the same folder from notebooks/ and from the root
    """
    path = Path(path)
    if path.is_absolute():
        return path
    root = Path(__file__).resolve().parent.parent
    return (root / path) if (root / "pyproject.toml").exists() else (Path.cwd() / path)
