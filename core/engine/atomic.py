"""Crash-safe file writes: temp file + fsync + rename, and fsynced appends for journals."""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path` for the caller (or a library) to write; on success it
    is fsynced and renamed over `path`, so a reader sees the old file or the new one, never half.

    On an exception the temp file is removed and `path` is untouched. A file that already exists
    keeps its mode; a new one gets mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # Reopened by name: whoever wrote `tmp` (a library's save function, say) has closed it.
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Replace `path` with `data` so a reader sees the old file or the new one, never half."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(raw)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line (a newline is added) and fsync, so a crash loses at most this line.

    Appenders from several processes (TUI, CLI, jobs) serialise on an flock. A torn tail left
    by a crash mid-append is cut off first: it was never acknowledged, and gluing the next
    line to it would corrupt a good record too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "\n" in line:
        raise ValueError("a journal line must not contain a newline")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _cut_torn_tail(fd)
        os.write(fd, line.encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def _cut_torn_tail(fd: int) -> None:
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    # Find the last newline, reading backwards in blocks.
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename or a new entry in `directory` durable; best effort where a directory cannot
    be opened or fsynced (some filesystems refuse both, and the data itself is already synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
