"""sha256 of weight files at the speed of the CPU: one stream per core, large zero-copy reads.

Threads are enough: hashlib releases the GIL while hashing any buffer over 2047 bytes, and
`readinto` releases it while the kernel copies, so N threads keep N cores busy.

Parallelism is across files (a model's shards), never inside one file: sha256 is a
Merkle-Damgard chain where every block needs the previous block's state, so a single file is
one sequential stream on one core, however many cores there are. Hub checkpoints are sharded
at a few GB, which gives every core a file; a lone 10 GB GGUF hashes at one core's speed.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import BinaryIO, Callable, Hashable, Iterable, TypeVar

from weightgate.core.engine.timers import HASHING, timed

# 1 MiB: the buffer stays in a core's L2, so sha256 reads back what readinto just wrote from
# cache, not DRAM (measured here: 1 MiB ~5% faster than 8 MiB per core); 1000 syscalls a second
# per core at 1 GB/s is nothing.
DEFAULT_CHUNK = 1 << 20
PROGRESS_INTERVAL = 0.1         # seconds between progress calls (a UI repaints ~10x a second)

ProgressFn = Callable[[int, int], None]    # (bytes done, bytes total)
P = TypeVar("P", bound=Hashable)
FileProgressFn = Callable[[P, int, int], None]   # (the path as passed in, bytes done, file size)


def default_workers() -> int:
    """The cores this process may run on (a cgroup/taskset limit counts, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@timed(HASHING)
def sha256_file(path: str | os.PathLike, chunk: int = DEFAULT_CHUNK, *,
                on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of one file, reading `chunk` bytes at a time into one reused buffer."""
    # buffering=0: readinto goes straight from the page cache into our buffer; a BufferedReader
    # would copy every byte twice.
    with open(path, "rb", buffering=0) as handle:
        _advise_sequential(handle.fileno())
        return sha256_handle(handle, chunk, on_bytes=on_bytes)


def sha256_handle(handle: BinaryIO, chunk: int = DEFAULT_CHUNK, *,
                  on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of what is left to read in an open binary file (for callers that must hash
    the very bytes they go on to read through the same handle)."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    while True:
        n = handle.readinto(buffer)
        if not n:
            break
        digest.update(view[:n])
        if on_bytes is not None:
            on_bytes(n)
    return digest.hexdigest()


@timed(HASHING)
def hash_files(paths: Iterable[P], workers: int | None = None, progress: ProgressFn | None = None, *,
               chunk: int = DEFAULT_CHUNK, errors: dict[P, OSError] | None = None,
               interval: float = PROGRESS_INTERVAL,
               file_progress: FileProgressFn | None = None) -> dict[P, str]:
    """sha256 of every path, `workers` files at a time (default: one per available core).

    Returns {path: hex} keyed by the objects passed in. `progress(done, total)` is called from
    the worker threads, at most every `interval` seconds and once at the end, never two calls at
    once; keep it cheap (post a message, set a variable); an exception it raises cancels the
    whole run and is re-raised here. A file that cannot be read raises its OSError, unless an
    `errors` dict is given: then failures are collected there and the other files still hashed.

    `file_progress(path, done, size)` is the same per file: at most every `interval` seconds for
    each file, and always once when that file is hashed through (done == its size as read), under
    the same lock as `progress`, so the two never run at once.
    """
    unique = list(dict.fromkeys(paths))
    sizes = {p: _size(p) for p in unique}
    tracker = _Progress(sum(sizes.values()), progress, interval, file_progress, sizes)
    count = max(1, min(workers or default_workers(), len(unique) or 1))
    # Largest first: when shards differ in size, starting the big ones first keeps every core
    # busy until the end instead of leaving one core on a big file while the others idle.
    order = sorted(unique, key=lambda p: sizes[p], reverse=True)
    results: dict[P, str] = {}
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="weightgate-hash") as pool:
        futures = {pool.submit(_hash_one, p, chunk, tracker): p for p in order}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                path = futures[future]
                exc = future.exception()
                if exc is None:
                    results[path] = future.result()
                elif isinstance(exc, OSError) and errors is not None:
                    errors[path] = exc
                else:
                    tracker.stop()      # running workers give up after their current chunk
                    for other in pending:
                        other.cancel()
                    raise exc
    tracker.finish()
    return {p: results[p] for p in unique if p in results}


def _hash_one(path: P, chunk: int, tracker: _Progress) -> str:
    if tracker.file_callback is None:
        return sha256_file(os.fspath(path), chunk, on_bytes=tracker.add)
    digest = sha256_file(os.fspath(path), chunk, on_bytes=lambda n: tracker.add(n, path))
    tracker.file_finished(path)
    return digest


class _Stopped(Exception):
    """Raised inside a worker once another file has failed: no point finishing this one."""


class _Progress:
    """Thread-safe byte counter that calls back at most every `interval` seconds (in total, and
    per file when a per-file callback is given)."""

    def __init__(self, total: int, callback: ProgressFn | None, interval: float,
                 file_callback: FileProgressFn | None = None, sizes: dict | None = None):
        self.total, self.callback, self.interval = total, callback, interval
        self.file_callback = file_callback
        self.sizes = sizes or {}
        self.done = 0
        self.last = float("-inf")     # the first chunk reports at once
        self.file_done: dict = {}
        self.file_last: dict = {}
        self.stopped = False
        self.lock = threading.Lock()

    def stop(self) -> None:
        self.stopped = True

    def add(self, n: int, path=None) -> None:
        if self.stopped:
            raise _Stopped()
        with self.lock:
            self.done += n
            now = None
            if path is not None:
                done = self.file_done[path] = self.file_done.get(path, 0) + n
                now = time.monotonic()
                if now - self.file_last.get(path, float("-inf")) >= self.interval:
                    self.file_last[path] = now
                    self.file_callback(path, done, max(self.sizes.get(path, 0), done))
            if self.callback is None:
                return
            now = time.monotonic() if now is None else now
            if now - self.last < self.interval:
                return
            self.last = now
            # Called under the lock: calls are serialised and `done` never goes backwards.
            self.callback(self.done, max(self.total, self.done))

    def file_finished(self, path) -> None:
        with self.lock:
            done = self.file_done.get(path, 0)
            self.file_callback(path, done, done)   # the size as read: a file may have changed meanwhile

    def finish(self) -> None:
        if self.callback is not None:
            with self.lock:
                self.callback(self.done, max(self.total, self.done))


def _size(path: str | os.PathLike) -> int:
    try:
        return os.stat(path).st_size
    except (OSError, TypeError, ValueError):
        return 0


def _advise_sequential(fd: int) -> None:
    # Doubles the kernel's readahead for a cold file; harmless when it is already cached.
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        try:
            advise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass


def hash_rate(nbytes: int, seconds: float) -> float:
    """MB/s (10^6 bytes per second), the unit disks and networks are sold in."""
    return nbytes / seconds / 1e6 if seconds > 0 else 0.0


