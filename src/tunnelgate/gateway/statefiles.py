"""Private files in the state directory: what the self-signed default and ACME keep.

    private_dir(path)           mkdir 0700 (parents too), tightened if someone loosened it
    owner_only(path, mode)      chmod back to `mode` if group or others may read it
    write_private(path, data)   0600, atomic: a reader sees the old file or the whole new one
    locked(path)                an exclusive flock, for processes that start together
    try_locked(path)            the same without waiting: None if another process holds it

Nothing in the state directory is for other users (keys), so every file is 0600 and
every directory 0700. OSError is left to the caller, which knows the option to name.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tunnelgate.logs import EventLog

log = EventLog("tunnelgate.gateway.tls")


def private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner_only(path, 0o700)


def owner_only(path: Path, mode: int) -> None:
    """Tighten what someone else loosened (nothing here is for other users)."""
    found = stat.S_IMODE(path.stat().st_mode)
    if found & 0o077:
        path.chmod(mode)
        log.warning("tls_state_mode_fixed", path=str(path), was=oct(found), now=oct(mode))


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) so that a reader sees the old file or the whole
    new one, never a part: a temporary file beside it, synced, then renamed over it. The
    caller holds the directory's lock (the temporary file's name is fixed)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)  # left by a crash; we hold the lock
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class FileLock:
    """An exclusive flock held until `release()`: across awaits, where a `with` block
    in one thread cannot reach."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    def __repr__(self) -> str:
        return f"<FileLock {self.path} {'held' if self._fd is not None else 'released'}>"


def try_locked(path: Path) -> FileLock | None:
    """The lock at `path` if no other process holds it, else None (never waits)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return FileLock(path, fd)
