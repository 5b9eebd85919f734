"""One file of a verified download: reuse it from the cache after re-hashing, resume a partial
blob, or stream it, hashing the bytes as they arrive and refusing any that are not the published
ones; then the snapshot's pointer to the blob. Progress (per file and in total, rate and ETA) is
throttled to a few updates a second. download.py runs these for every file, in parallel.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from weightgate.core.engine.atomic import fsync_dir
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.lock import HASH_COMPUTED, HASH_PUBLISHED
from weightgate.core.weights.sources import FileInfo, HubError, repo_path_problem

CHUNK_BYTES = 1024 * 1024
PROGRESS_INTERVAL_S = 0.25
HTTP_TIMEOUT_S = 30.0
INCOMPLETE_SUFFIX = ".incomplete"


class DownloadError(HubError):
    """A download that could not finish; nothing of the failing file is marked complete."""


class IntegrityError(DownloadError):
    """Bytes that are not the published ones."""


class DownloadStopped(Exception):
    """The caller asked to stop; partial files stay for a resume."""


@dataclass
class FileResult:
    path: str
    size: int
    sha256: str
    hash_source: str            # HASH_PUBLISHED (matched the LFS sha256) | HASH_COMPUTED (git file)
    etag: str
    reused: bool                # was already in the cache (re-verified by hash)
    resumed_from: int = 0       # bytes kept from an earlier partial or interrupted attempt
    attempts: int = 1
    verified_at: float = 0.0
    mtime: float = 0.0


@dataclass
class ProgressUpdate:
    scope: str                  # "file" | "total"
    path: str                   # the file ("" for total)
    done: int
    total: int
    rate_bps: float
    eta_s: float | None
    state: str                  # queued | downloading | retrying | reused | verified | failed | done


ProgressCallback = Callable[[ProgressUpdate], None]


@dataclass
class TransferContext:
    repo_id: str
    revision: str
    commit: str
    endpoint: str
    token: str | bool | None
    storage: Path
    snapshot: Path
    lock_dir: Path
    tracker: "ProgressTracker"
    stop: threading.Event
    should_stop: Callable[[], bool] | None
    max_attempts: int
    retry_wait_s: float

    def check_stop(self) -> None:
        if self.stop.is_set() or (self.should_stop is not None and self.should_stop()):
            self.stop.set()
            raise DownloadStopped("stopped")

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise DownloadStopped("stopped")
        self.check_stop()


class Transient(Exception):
    pass


class _Hashers:
    """sha256 always; the git blob sha1 too for a git file (its published identity)."""

    def __init__(self, size: int, git: bool) -> None:
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(b"blob %d\0" % size) if git else None

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        if self.git is not None:
            self.git.update(chunk)


@dataclass
class _Partial:
    """The file being written: its handle, how far it got and the hashes of those bytes.
    Mutated in place, so an interrupted GET keeps the bytes it delivered."""

    handle: object
    size: int
    git: bool
    offset: int = 0
    hashers: _Hashers = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.hashers = _Hashers(self.size, self.git)

    def restart(self) -> None:
        self.handle.seek(0)
        self.handle.truncate(0)
        self.offset = 0
        self.hashers = _Hashers(self.size, self.git)


def _check(ctx: TransferContext, info: FileInfo, etag: str, hashers: _Hashers, got_size: int, size: int) -> str | None:
    """None if the bytes are the published ones, else what is wrong."""
    if got_size != size:
        return f"size {got_size}, expected {size}"
    digest = hashers.sha256.hexdigest()
    if info.lfs:
        if digest != info.sha256:
            return f"sha256 {digest}, published {info.sha256}"
    elif hashers.git is not None and hashers.git.hexdigest() != etag:
        return f"git blob id {hashers.git.hexdigest()}, published {etag}"
    return None


def reuse_cached(ctx: TransferContext, info: FileInfo, etag: str, blob: Path) -> FileResult | None:
    """A blob already in the cache counts only after its bytes hash to the published values."""
    if not blob.exists():
        return None
    size = blob.stat().st_size
    hashers = _Hashers(size, git=not info.lfs)
    with open(blob, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            ctx.check_stop()
            hashers.update(chunk)
    problem = _check(ctx, info, etag, hashers, size, info.size if info.size is not None else size)
    if problem is not None:
        # Someone's earlier, unverified download (or tampering): it must not stay "complete".
        ctx.tracker.log(info.path, f"cached copy is bad ({problem}); downloading again")
        blob.unlink()
        return None
    ctx.tracker.reused_file(info.path, size)
    stat = blob.stat()
    return FileResult(path=info.path, size=size, sha256=hashers.sha256.hexdigest(),
                      hash_source=HASH_PUBLISHED if info.lfs else HASH_COMPUTED, etag=etag, reused=True,
                      attempts=0, verified_at=time.time(), mtime=stat.st_mtime)


def transfer_file(ctx: TransferContext, info: FileInfo, etag: str, size: int, blob: Path) -> FileResult:
    from huggingface_hub import hf_hub_url  # lazy: huggingface_hub only where it runs, never at import

    partial_path = blob.with_name(blob.name + INCOMPLETE_SUFFIX)
    url = hf_hub_url(ctx.repo_id, info.path, revision=ctx.commit, endpoint=ctx.endpoint)  # immutable
    mode = "r+b" if partial_path.exists() else "w+b"
    with open(partial_path, mode) as handle:
        part = _Partial(handle, size, git=not info.lfs)
        if mode == "r+b":
            # A partial left by an earlier run: hash what is there (hash state cannot be saved).
            if os.fstat(handle.fileno()).st_size > size:
                handle.truncate(0)
            while chunk := handle.read(CHUNK_BYTES):
                part.hashers.update(chunk)
                part.offset += len(chunk)
        resumed_from = part.offset
        ctx.tracker.start_file(info.path, part.offset)
        try:
            attempts = _fill(ctx, info, url, part)
        except BaseException:
            if part.offset == 0:
                handle.close()
                partial_path.unlink(missing_ok=True)   # nothing worth resuming
            raise
        handle.flush()
        os.fsync(handle.fileno())
        hashers, got = part.hashers, part.offset
    problem = _check(ctx, info, etag, hashers, got, size)
    if problem is not None:
        partial_path.unlink(missing_ok=True)
        ctx.tracker.file_state(info.path, "failed")
        if resumed_from:
            # The bad bytes may be the old partial's; one clean retry from zero settles it.
            ctx.tracker.log(info.path, f"verification failed after resuming an old partial ({problem}); "
                                       "downloading from scratch")
            return transfer_file(ctx, info, etag, size, blob)
        raise IntegrityError(
            f"{ctx.repo_id}@{ctx.commit[:12]}: {info.path} failed verification: {problem}. The file was deleted "
            "and is not marked verified.",
            hint="retry; if it fails again, the hub copy or something between you and it is corrupting data")
    os.chmod(partial_path, 0o644)
    os.replace(partial_path, blob)   # only now does the cache see a complete file
    fsync_dir(blob.parent)
    ctx.tracker.file_state(info.path, "verified")
    stat = blob.stat()
    return FileResult(path=info.path, size=size, sha256=hashers.sha256.hexdigest(),
                      hash_source=HASH_PUBLISHED if info.lfs else HASH_COMPUTED, etag=etag, reused=False,
                      resumed_from=resumed_from, attempts=attempts, verified_at=time.time(), mtime=stat.st_mtime)


def _fill(ctx: TransferContext, info: FileInfo, url: str, part: _Partial) -> int:
    """GET until the file is whole, resuming after interruptions; returns the attempts made.
    Gives up after max_attempts in a row that brought no new byte."""
    size = part.size
    attempts, fruitless = 0, 0
    while part.offset < size:
        ctx.check_stop()
        attempts += 1
        before = part.offset
        problem = ""
        try:
            _stream(ctx, info, url, part)
        except Transient as exc:
            problem = str(exc)
        if part.offset >= size:
            break
        # Interrupted (or a close-delimited body that ended early): resume after what arrived.
        problem = problem or "the body ended early"
        fruitless = 0 if part.offset > before else fruitless + 1
        if fruitless >= ctx.max_attempts:
            ctx.tracker.file_state(info.path, "failed")
            raise DownloadError(
                f"{ctx.repo_id}@{ctx.commit[:12]}: {info.path}: stopped at byte {part.offset} of {size} after "
                f"{fruitless} attempts without progress (last: {problem})",
                hint="the partial file is kept; run the download again to resume")
        ctx.tracker.file_state(info.path, "retrying")
        ctx.tracker.log(info.path, f"interrupted at byte {part.offset} of {size} ({problem}); resuming")
        ctx.sleep(min(8.0, ctx.retry_wait_s * 2 ** max(0, fruitless - 1)))
    return attempts


def _stream(ctx: TransferContext, info: FileInfo, url: str, part: _Partial) -> None:
    """One GET from part.offset, appending to the file and the hashes as bytes arrive."""
    from huggingface_hub.utils import (  # lazy: huggingface_hub only where it runs, never at import
        build_hf_headers,
        get_session,
        hf_raise_for_status,
    )

    headers = build_hf_headers(token=ctx.token, library_name="weightgate")
    headers["Accept-Encoding"] = "identity"   # the bytes as stored, so sizes and hashes mean something
    if part.offset:
        headers["Range"] = f"bytes={part.offset}-"
    where = f"{ctx.repo_id}@{ctx.commit[:12]}: {info.path}"
    with client_errors(ctx, info.path):
        with get_session().stream("GET", url, headers=headers, timeout=HTTP_TIMEOUT_S) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            commit = response.headers.get("X-Repo-Commit")
            if commit and commit != ctx.commit:
                raise DownloadError(f"{where}: the bytes came from commit {commit}, not the pinned {ctx.commit}")
            if response.status_code == 206:
                match = re.match(r"bytes (\d+)-(\d+)/(\d+)$", response.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != part.offset or int(match.group(3)) != part.size:
                    raise DownloadError(f"{where}: the server answered range "
                                        f"{response.headers.get('Content-Range')!r} to a request from byte "
                                        f"{part.offset}")
            elif response.status_code == 200:
                if part.offset:
                    # Range ignored: the body starts at byte 0. Restart the file and its hashes.
                    ctx.tracker.log(info.path, f"the server ignored Range; restarting from byte 0 "
                                               f"(had {part.offset})")
                    ctx.tracker.add(info.path, -part.offset)
                    part.restart()
            else:
                raise DownloadError(f"{where}: unexpected HTTP {response.status_code}")
            part.handle.seek(part.offset)
            ctx.tracker.file_state(info.path, "downloading")
            # Network reads are gathered into ~1 MiB before the write and the hash: one GIL
            # round trip and one syscall per MiB instead of per 64 KiB read.
            buffer = bytearray()

            def flush() -> None:
                if buffer:
                    part.handle.write(buffer)
                    part.hashers.update(buffer)
                    part.offset += len(buffer)
                    ctx.tracker.add(info.path, len(buffer))
                    buffer.clear()

            try:
                # No chunk_size: httpx would buffer up to it itself, and an interrupted
                # connection would lose that buffer; ours is flushed on the way out.
                for chunk in response.iter_raw():
                    if part.offset + len(buffer) + len(chunk) > part.size:
                        raise IntegrityError(f"{where}: the server sent more than the published {part.size} bytes")
                    buffer += chunk
                    if len(buffer) >= CHUNK_BYTES:
                        flush()
                        ctx.check_stop()
            finally:
                flush()               # what arrived stays, so the next attempt resumes after it
                part.handle.flush()


def pointer_path(snapshot: Path, path: str) -> Path:
    problem = repo_path_problem(path)
    if problem:
        raise DownloadError(f"refusing unsafe file name {path!r} ({problem})")
    pointer = snapshot.joinpath(*path.split("/"))
    # No component inside the snapshot may be a symlink to elsewhere (a planted directory link).
    current = snapshot
    for part in path.split("/")[:-1]:
        current = current / part
        if current.is_symlink():
            raise DownloadError(f"refusing to write through the symlinked directory {current}")
    return pointer


def link_pointer(pointer: Path, blob: Path) -> None:
    """snapshots/<commit>/<path> -> ../../blobs/<etag>, relative like the client makes them."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, pointer.parent)
    if pointer.is_symlink() and os.readlink(pointer) == target:
        return
    temp = pointer.with_name(f".{pointer.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temp.unlink(missing_ok=True)
    os.symlink(target, temp)
    os.replace(temp, pointer)   # atomic: a reader sees the old link or the new one


class ProgressTracker:
    """Per-file and total bytes, rate and ETA, throttled to a few updates a second."""

    def __init__(self, files: list[FileInfo], callback: ProgressCallback | None,
                 on_log: Callable[[str], None] | None = None) -> None:
        self.callback = callback
        self.on_log = on_log
        self.sizes = {f.path: f.size or 0 for f in files}
        self.total = sum(self.sizes.values())
        self.done = dict.fromkeys(self.sizes, 0)
        self.this_run = dict.fromkeys(self.sizes, 0)   # bytes moved by this run (for rates)
        self.started: dict[str, float] = {}
        self.last_emit: dict[str, float] = {}
        self.downloaded = 0
        self.reused = 0
        self.began = time.monotonic()
        self.lock = threading.Lock()

    def _emit(self, path: str | None, state: str, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        updates = []
        with self.lock:
            if path is not None and (force or now - self.last_emit.get(path, 0.0) >= PROGRESS_INTERVAL_S):
                self.last_emit[path] = now
                rate = 0.0
                if path in self.started:
                    rate = self.this_run[path] / max(1e-6, now - self.started[path])
                left = self.sizes[path] - self.done[path]
                updates.append(ProgressUpdate("file", path, self.done[path], self.sizes[path], rate,
                                              left / rate if rate > 0 else (0.0 if left == 0 else None), state))
            if force or now - self.last_emit.get("", 0.0) >= PROGRESS_INTERVAL_S:
                self.last_emit[""] = now
                rate = self.downloaded / max(1e-6, now - self.began)
                done = sum(self.done.values())
                left = self.total - done
                updates.append(ProgressUpdate("total", "", done, self.total, rate,
                                              left / rate if rate > 0 else (0.0 if left == 0 else None),
                                              "done" if left == 0 else "downloading"))
        for update in updates:
            self.callback(update)

    def start_file(self, path: str, offset: int) -> None:
        with self.lock:
            self.started[path] = time.monotonic()
            self.done[path] = offset
        self._emit(path, "downloading", force=True)

    def add(self, path: str, count: int) -> None:
        with self.lock:
            self.done[path] += count
            self.this_run[path] += count
            self.downloaded += count
        self._emit(path, "downloading")

    def reused_file(self, path: str, size: int) -> None:
        with self.lock:
            self.done[path] = size
            self.reused += size
        self._emit(path, "reused", force=True)

    def file_state(self, path: str, state: str) -> None:
        self._emit(path, state, force=state in ("verified", "failed", "retrying"))

    def log(self, path: str, message: str) -> None:
        if self.on_log is not None:
            self.on_log(f"{path}: {message}")

    def finish(self) -> None:
        self._emit(None, "done", force=True)


@contextmanager
def client_errors(ctx: TransferContext, path: str) -> Iterator[None]:
    """Client errors -> Transient (retry) or a HubError naming the file."""
    import httpx2  # lazy: the hub's HTTP client, only while downloading
    from huggingface_hub import errors as hf_errors  # lazy: huggingface_hub only where it runs, never at import

    try:
        yield
    except (InputError, DownloadStopped, Transient):
        raise
    except hf_errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (429, 500, 502, 503, 504):
            raise Transient(f"HTTP {status}") from None
        if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
            raise DownloadError(f"{ctx.repo_id}@{ctx.revision}: {path} is not on the hub") from None
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            raise DownloadError(f"{ctx.repo_id} has no revision {ctx.revision!r} any more") from None
        if isinstance(exc, (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError)):
            raise DownloadError(f"{ctx.repo_id}: no access (not found, private or gated)",
                                hint="log in (`hf auth login` or HF_TOKEN)") from None
        raise DownloadError(f"{ctx.repo_id}: {path}: HTTP {status}") from None
    except (httpx2.TransportError, httpx2.DecodingError) as exc:
        raise Transient(f"{type(exc).__name__}: {exc}") from None
