"""Atomic file writes: a crash leaves the old file or the new one, never half of one.

    with atomic_path("runs/table.safetensors") as tmp: save_file(tensors, tmp)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: the run folder that ``mine``, ``eval`` and the chapters share (relative to the project)
DEFAULT_RUN = "runs/lite"
#: the ending of ``atomic_path``'s temporary folders: a lock's holder removes these, and only these
TMP_SUFFIX = ".rosetta-tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

        with atomic_path("out/fig.png") as tmp: fig.savefig(tmp, format="png")

    The temporary file (named like the target) sits in a private hidden folder beside it,
    so that a writer's own scratch files (safetensors writes a ``.tmpXXXXXX`` first) land
    there too, and a killed write leaves only that folder, which the next lock holder
    of the folder removes (:func:`run_lock`).
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{str(target)!r} is a folder; give the path of a file to write, e.g. {str(target / 'out')!r}")
    writable_dir(target.parent)
    scratch = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    tmp = os.path.join(scratch, target.name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        try:
            yield tmp
        except Exception as error:
            if _disk_full(error):
                raise RuntimeError(f"could not write {target}: no space left on the device; the previous "
                                   f"{target.name} (if any) is kept; free some space and run again") from None
            if tmp in str(error):  # the user asked for the target; the hidden temporary file means nothing to them
                raise RuntimeError(f"could not write {target}: {str(error).replace(tmp, str(target))}; the "
                                   f"previous {target.name} (if any) is kept") from None
            raise
        # mkstemp (and some writers, e.g. safetensors) make private files; results are ordinary files
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _disk_full(error: BaseException) -> bool:
    import errno

    return getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error)


def writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that files can be written there.

        out = writable_dir("runs/lite")
    """
    if not str(folder).strip():
        raise ValueError("the output folder's name is empty; give a folder, e.g. --out runs/lite")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{str(folder)!r} is a file, not a folder; give a folder's path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if folder.is_symlink():
            raise NotADirectoryError(f"output folder {str(folder)!r} is a symbolic link to nowhere (a missing target "
                                     "or a loop); give a real folder") from None
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

    The lock is an exclusive ``flock`` on a file in the folder, which also records the
    holder's process id and host: taking it is one atomic step, and the kernel releases it
    when its process ends however it ends, so a killed writer never blocks the folder. A
    lock left by a process that is gone is taken over with a notice; the temporary files
    that killed writes left behind (``atomic_path``'s own, and no others) are removed then.
    Only the holder removes the lock file. The same process may take the lock again inside.
    (flock is per host: two machines writing one network folder are not kept apart.)
    """
    shown = str(folder)  # messages name the folder as the caller wrote it
    folder = writable_dir(folder).resolve()
    if folder in _HELD:
        _HELD[folder] += 1
        try:
            yield folder
        finally:
            _HELD[folder] -= 1
        return
    lock = folder / LOCK_NAME
    handle = _acquire(lock, shown)
    _HELD[folder] = 1
    try:
        for leftover in folder.glob(f".*{TMP_SUFFIX}"):  # no other writer can be here now
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        yield folder
    finally:
        del _HELD[folder]
        lock.unlink(missing_ok=True)  # while still holding it: a waiter that opened this file retries
        os.close(handle)


def _acquire(lock: Path, shown: str) -> int:
    """Take the lock file's flock; the open descriptor that holds it (``shown``: the folder, for messages)."""
    import fcntl
    import json
    import socket
    import time
    import warnings

    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(20):
        handle = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            os.close(handle)
            raise RuntimeError(
                f"{shown} is being written by process {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"(since {holder.get('since', '?')}); wait for it to finish or choose another --out folder") from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(handle).st_ino:  # its holder released (and removed) it after we opened it
            os.close(handle)
            continue
        previous = _read_holder(handle)
        if previous:
            warnings.warn(f"{shown}: taking over the lock of process {previous.get('pid', '?')}, which is gone",
                          UserWarning, stacklevel=4)
        try:
            os.ftruncate(handle, 0)
            os.pwrite(handle, json.dumps(me).encode(), 0)
        except OSError as error:
            lock.unlink(missing_ok=True)
            os.close(handle)
            raise RuntimeError(f"could not take the lock of {shown}: {error.strerror}"
                               + ("; free some space and run again" if _disk_full(error) else "")) from None
        return handle
    raise RuntimeError(f"could not take the lock of {shown}: other processes keep taking and releasing it")


def _read_holder(handle: int) -> dict:
    import json

    try:
        holder = json.loads(os.pread(handle, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
