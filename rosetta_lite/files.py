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
    if target.is_dir():
        raise ValueError(f"{str(target)!r} is a folder; give the path of a file to write, e.g. {str(target / 'out')!r}")
    writable_dir(target.parent)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    try:
        try:
            yield tmp
        except Exception as error:
            if _disk_full(error):
                raise RuntimeError(f"could not write {target}: no space left on the device; the previous "
                                   f"{target.name} (if any) is kept; free some space and run again") from None
            raise
        # mkstemp (and some writers, e.g. safetensors) make private files; results are ordinary files
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _disk_full(error: BaseException) -> bool:
    import errno

    return getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error)


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


LOCK_NAME = ".rosetta-lock"
_HELD: dict[Path, int] = {}  # folders this process holds, with how many nested holders


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder`` as its one writer: a second process is refused, naming the holder.

        with run_lock("runs/lite"): mine(...)

    The lock is a file with the holder's process id and host. One left by a process that
    is gone (killed, crashed) is taken over with a notice; temporary files that killed
    writes left behind are removed then. The same process may take the lock again inside.
    """
    folder = writable_dir(folder).resolve()
    if folder in _HELD:
        _HELD[folder] += 1
        try:
            yield folder
        finally:
            _HELD[folder] -= 1
        return
    lock = folder / LOCK_NAME
    _acquire(lock)
    _HELD[folder] = 1
    try:
        for leftover in folder.glob(".*.tmp"):  # no other writer can be here now
            leftover.unlink(missing_ok=True)
        yield folder
    finally:
        del _HELD[folder]
        lock.unlink(missing_ok=True)


def _acquire(lock: Path) -> None:
    import json
    import socket
    import time
    import warnings

    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder and (holder.get("host") != me["host"] or _alive(holder.get("pid"))):
                raise RuntimeError(
                    f"{lock.parent} is being written by process {holder.get('pid')} on {holder.get('host')} "
                    f"(since {holder.get('since')}); wait for it to finish or choose another --out folder "
                    f"(if that process is gone, delete {lock})") from None
            warnings.warn(f"{lock.parent}: taking over the lock of process {holder.get('pid', '?')}, which is gone",
                          UserWarning, stacklevel=4)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(handle, "w") as out:
            json.dump(me, out)
        return
    raise RuntimeError(f"could not take the lock {lock}: another process keeps taking it")


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
