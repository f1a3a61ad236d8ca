"""Small file utilities shared by every stage: atomic writes and a folder lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from vw_robot.errors import DiskFullError

log = logging.getLogger(__name__)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file in the same folder, then
    rename it into place: readers and a crash never see a partial file, and the old content
    survives any failure.

    Raises:
        DiskFullError: the device is full (or the quota used up); the message names ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(path, exc) from exc
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(path, exc) from exc
        raise


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for lack of space (a full disk, a used-up quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: str | os.PathLike[str], exc: OSError) -> DiskFullError:
    """A :class:`DiskFullError` naming ``path``; callers that know what is kept on disk add it
    (``DiskFullError(f"{error}; the last checkpoint is kept: ...")``)."""
    reason = exc.strerror or os.strerror(exc.errno or errno.ENOSPC)
    return DiskFullError(f"{path}: not written: {reason}", str(path))


def _create_temp(path: Path) -> tuple[int, str]:
    """A new ``.<name>.<random>.tmp`` beside ``path``, opened for writing.

    Created with mode 0o666 so the process umask applies, as for any file a tool writes
    (``tempfile.mkstemp`` would make it 0600, and a dataset shared with other users would be
    unreadable to them).
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}.")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 text (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Atomically write ``payload`` as indented JSON."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LockHeldError(RuntimeError):
    """Another process holds the lock.

    Attributes:
        pid: the holder's process id, as it recorded it (None if it has not yet).
    """

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid

    @property
    def holder(self) -> str:
        """``"process <pid>"``, or ``"another process"`` when the PID is unknown."""
        return _holder(self.pid)


def _holder(pid: int | None) -> str:
    return "another process" if pid is None else f"process {pid}"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], name: str, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder/name``.

    The kernel releases a ``flock`` when its process ends, however it ends, so a lock never
    outlives its holder. The holder writes its PID into the file and empties it on release:
    a process refused is told whose lock it is, and a PID found on taking the lock was left by
    a process that ended without releasing it (killed, crashed), which is logged.

    Raises:
        LockHeldError: ``wait`` is False and another process holds the lock (its PID named).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            pid = _recorded_pid(handle)
            raise LockHeldError(
                f"{path}: held by {_holder(pid)}; wait for it to finish.", pid
            ) from None
        left = _recorded_pid(handle)
        if left is not None and left != os.getpid():
            log.info(
                "%s: taking over the lock left by process %d, which ended without releasing it",
                path,
                left,
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _recorded_pid(handle: IO[str]) -> int | None:
    """The PID in an open lock file, or None (empty: released, or not written yet)."""
    handle.seek(0)
    text = handle.read().strip()
    return int(text) if text.isdigit() else None
