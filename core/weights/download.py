"""Verified downloads from the hub into the standard Hugging Face cache.

Why our own transfer loop instead of wrapping `hf_hub_download`: in huggingface_hub 2.x,
`hf_hub_download` checks only a file's *size* on the plain-HTTP path, writes into a temp file
it opens itself (a hashing tee would have to follow its seeks and truncations on a resume),
and then moves whatever it got to `blobs/<etag>` and links it into the snapshot: a file with
wrong bytes of the right length would land exactly where the cache treats it as complete.
So we use the client's building blocks (`hf_hub_url`, `get_hf_file_metadata` for the HEAD,
its shared `get_session()` HTTP client with the hub headers and token, its error mapping, its
cache layout and lock files) and own the loop in between:

  - one pass: each chunk goes to the file and to sha256 (and, for small git files, to the git
    blob sha1) as it arrives; nothing is read back, except the bytes of a partial file left by
    an earlier run (hash state cannot be saved, so resuming across processes re-reads them);
  - a file becomes `blobs/<etag>` (atomic rename) only after its size and hash match what the
    hub published; a mismatch deletes the partial and fails naming the file;
  - interruptions resume with `Range` (206); a server that ignores Range (200) restarts the
    file from byte 0 with fresh hashers; attempts without progress are bounded;
  - the HEAD of every file is made at the *asked* revision and its X-Repo-Commit must equal the
    pinned commit (a branch that moved is refused); the bytes are then fetched at the pinned
    commit, which is immutable. Missing X-Repo-Commit, ETag or size headers are refused too.

Layout written (what `hf_hub_download` / `snapshot_download` read back without a network):
    <cache>/models--org--name/blobs/<etag>                  the bytes (etag = sha256 for LFS)
    <cache>/models--org--name/snapshots/<commit>/<path>     relative symlinks to the blobs
    <cache>/models--org--name/refs/<revision>               the commit a branch/tag resolved to
    <cache>/.locks/models--org--name/<etag>.lock            same lock files as the client
Partial downloads live at `blobs/<etag>.incomplete` (never read as complete by the client).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from weightgate.core.engine.atomic import fsync_dir
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.lock import HASH_COMPUTED, HASH_PUBLISHED, LockedFile, ModelLock
from weightgate.core.weights.sources import (
                                             HUB,
                                             FileInfo,
                                             HubError,
                                             Source,
                                             check_repo_paths,
                                             fetch_metadata,
                                             hub_endpoint,
                                             is_commit,
                                             parse_source,
                                             plan_files,
                                             repo_path_problem,
                                             resolve_revision,
)

CHUNK_BYTES = 1024 * 1024
PROGRESS_INTERVAL_S = 0.25
DEFAULT_WORKERS = 4
DEFAULT_ATTEMPTS = 5           # consecutive attempts without a new byte before giving up
HTTP_TIMEOUT_S = 30.0
INCOMPLETE_SUFFIX = ".incomplete"


class DownloadError(HubError):
    """A download that could not finish; nothing of the failing file is marked complete."""


class IntegrityError(DownloadError):
    """Bytes that are not the published ones."""


class BranchMovedError(DownloadError):
    """The asked branch or tag points to another commit than the one pinned."""


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
class DownloadResult:
    repo_id: str
    revision: str
    commit: str
    snapshot_dir: str
    files: list[FileResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    license: str = ""
    remote_code: bool = False
    bytes_downloaded: int = 0
    bytes_reused: int = 0
    seconds: float = 0.0

    def to_lock(self, source_spec: str) -> ModelLock:
        return ModelLock(
            kind=HUB, source=source_spec, revision=self.revision, commit=self.commit,
            local_dir=self.snapshot_dir, license=self.license, remote_code=self.remote_code,
            files=[LockedFile(path=f.path, size=f.size, sha256=f.sha256, hash_source=f.hash_source,
                              verified_at=f.verified_at, mtime=f.mtime) for f in self.files])

    def to_dict(self) -> dict:
        return asdict(self)


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


# --- the public entry point -----------------------------------------------------------------


def download_model(
    source: Source | str,
    *,
    commit: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    include: list[str] | None = None,
    trust_remote_code_at: str | None = None,
    workers: int = DEFAULT_WORKERS,
    on_progress: ProgressCallback | None = None,
    on_log: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_attempts: int = DEFAULT_ATTEMPTS,
    retry_wait_s: float = 1.0,
) -> DownloadResult:
    """Download what the model needs at a pinned commit, verified, into the HF cache.

    commit: the commit pinned earlier (e.g. at selection). The asked branch/tag must still
        point to it, or BranchMovedError. None pins the revision now.
    include: extra glob patterns to fetch (e.g. one GGUF variant of a GGUF-only repo).
    trust_remote_code_at: a repo whose config has an `auto_map` (or ships *.py) is refused
        unless this equals the pinned commit: consent is given per repo *and* commit.
    should_stop: polled between chunks; when true, workers stop and DownloadStopped is
        raised (partials stay for a resume). A JobCancelled raised in the calling thread
        (SIGTERM in a job) stops the workers the same way before it propagates.
    """
    began = time.monotonic()
    if isinstance(source, str):
        source = parse_source(source)
    if source.kind != HUB:
        raise InputError(f"{source}: only hub sources are downloaded; local sources are used in place")
    endpoint = hub_endpoint(endpoint)
    revision = source.revision_or_default
    if commit is None:
        commit = resolve_revision(source.repo_id, revision, endpoint=endpoint, token=token)
    elif not is_commit(commit):
        raise InputError(f"a pinned commit is 40 lowercase hex digits, not {commit!r}")
    elif revision != commit:
        now = resolve_revision(source.repo_id, revision, endpoint=endpoint, token=token)
        if now != commit:
            raise _moved(source.repo_id, revision, commit, now)

    meta = fetch_metadata(source, commit=commit, endpoint=endpoint, token=token, parameters=False)
    if meta.remote_code and trust_remote_code_at != commit:
        raise InputError(
            f"{source.repo_id}@{commit[:12]} ships remote code, refused without consent: "
            + "; ".join(meta.remote_code_reasons),
            hint=f"read the code, then trust this repo at commit {commit} to allow it "
                 "(consent is per commit; a new commit needs a new review)")
    by_path = {f.path: f for f in meta.files}
    wanted, skipped = plan_files(by_path, include_remote_code=meta.remote_code)
    for pattern in include or []:
        for path in by_path:
            if fnmatch.fnmatchcase(path, pattern) and path not in wanted:
                wanted.append(path)
                skipped.pop(path, None)
    if not wanted:
        raise DownloadError(f"{source.repo_id}@{commit[:12]}: nothing to download",
                            hint="pass include=[...] patterns to choose files")
    check_repo_paths(wanted, repo_id=source.repo_id)   # already checked in the listing; cheap to repeat

    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    storage = cache / ("models--" + source.repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)   # snapshots/<commit>/ appears with its first file
    files = [by_path[path] for path in sorted(wanted)]
    _check_disk_space(storage / "blobs", files)

    tracker = _Tracker(files, on_progress, on_log)
    stop = threading.Event()
    context = _Context(repo_id=source.repo_id, revision=revision, commit=commit, endpoint=endpoint, token=token,
                       storage=storage, snapshot=snapshot, lock_dir=cache / ".locks" / storage.name,
                       tracker=tracker, stop=stop, should_stop=should_stop, max_attempts=max(1, max_attempts),
                       retry_wait_s=max(0.0, retry_wait_s))
    try:
        results = _run_all(context, files, workers)
    finally:
        try:
            snapshot.rmdir()   # only if empty: a failed first run leaves no snapshot that looks cached
        except OSError:
            pass
    if revision != commit:
        _write_ref(storage, revision, commit)
    tracker.finish()
    result = DownloadResult(repo_id=source.repo_id, revision=revision, commit=commit, snapshot_dir=str(snapshot),
                            files=sorted(results, key=lambda r: r.path), skipped=skipped, license=meta.license,
                            remote_code=meta.remote_code, bytes_downloaded=tracker.downloaded,
                            bytes_reused=tracker.reused, seconds=time.monotonic() - began)
    return result


def _moved(repo_id: str, revision: str, pinned: str, now: str) -> BranchMovedError:
    return BranchMovedError(
        f"{repo_id}: {revision!r} moved from the pinned commit {pinned[:12]} to {now[:12]}; refusing to "
        "download a revision nobody reviewed",
        hint=f"inspect {repo_id}@{now[:12]} and pin it again, or download the pinned commit by its sha "
             f"({repo_id}@{pinned})")


def _default_cache_dir() -> Path:
    # Read now (huggingface_hub reads these once, at import).
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants  # lazy: huggingface_hub only where it runs, never at import

    return Path(constants.HF_HUB_CACHE)


def _check_disk_space(directory: Path, files: list[FileInfo]) -> None:
    need = sum(f.size or 0 for f in files)
    free = shutil.disk_usage(directory).free
    if need > free:
        raise DownloadError(f"not enough disk space in {directory}: need up to {need} bytes, {free} free",
                            hint="free space or point HF_HUB_CACHE elsewhere")


# --- orchestration --------------------------------------------------------------------------


@dataclass
class _Context:
    repo_id: str
    revision: str
    commit: str
    endpoint: str
    token: str | bool | None
    storage: Path
    snapshot: Path
    lock_dir: Path
    tracker: "_Tracker"
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


def _run_all(ctx: _Context, files: list[FileInfo], workers: int) -> list[FileResult]:
    """Files in parallel (a few at a time: hashing one overlaps the network of another). The
    first failure stops the rest; so does a stop request or an exception in this thread."""
    results: list[FileResult] = []
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(files))), thread_name_prefix="download")
    try:
        futures = [pool.submit(_fetch_file, ctx, info) for info in files]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                break
            if ctx.should_stop is not None and ctx.should_stop():
                ctx.stop.set()
        if pending:
            ctx.stop.set()   # a failure or a stop: the others end at their next chunk
            wait(pending)
        errors = [f.exception() for f in futures if f.done() and f.exception() is not None]
        real = [e for e in errors if not isinstance(e, DownloadStopped)]
        if real:
            raise real[0]
        if errors or pending:
            raise DownloadStopped("stopped; partial files are kept and the next run resumes them")
        results = [f.result() for f in futures]
    finally:
        # Also on JobCancelled (SIGTERM) raised in this thread: workers stop at their next chunk.
        ctx.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return results


@contextmanager
def _file_lock(ctx: _Context, etag: str) -> Iterator[None]:
    """The client's own per-blob lock file, so a concurrent hf_hub_download waits for us."""
    from filelock import FileLock, Timeout  # lazy: the hub client's lock, only while downloading

    ctx.lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(ctx.lock_dir / f"{etag}.lock"), mode=0o664)
    while True:
        try:
            lock.acquire(timeout=0.5)
            break
        except Timeout:
            ctx.check_stop()
    try:
        yield
    finally:
        lock.release()


def _fetch_file(ctx: _Context, info: FileInfo) -> FileResult:
    ctx.check_stop()
    etag, size = _head(ctx, info)
    blob = ctx.storage / "blobs" / etag
    pointer = _pointer_path(ctx.snapshot, info.path)
    with _file_lock(ctx, etag):
        reused = _reuse(ctx, info, etag, blob)
        if reused is not None:
            _link(pointer, blob)
            return reused
        result = _transfer(ctx, info, etag, size, blob)
        _link(pointer, blob)
        return result


def _head(ctx: _Context, info: FileInfo) -> tuple[str, int]:
    """HEAD at the asked revision: the commit, the etag and the size must all be there and
    agree with what was pinned and published."""
    from huggingface_hub import (  # lazy: huggingface_hub only where it runs, never at import
        get_hf_file_metadata,
        hf_hub_url,
    )

    url = hf_hub_url(ctx.repo_id, info.path, revision=ctx.revision, endpoint=ctx.endpoint)
    meta = _with_retries(ctx, info.path, lambda: get_hf_file_metadata(
        url, token=ctx.token, timeout=HTTP_TIMEOUT_S, library_name="weightgate", endpoint=ctx.endpoint))
    where = f"{ctx.repo_id}@{ctx.revision}: {info.path}"
    if not meta.commit_hash:
        raise DownloadError(f"{where}: the server sent no X-Repo-Commit header, so it cannot prove which "
                            "commit these bytes belong to; refusing",
                            hint="is HF_ENDPOINT a Hugging Face Hub (or a mirror that keeps its headers)?")
    if meta.commit_hash != ctx.commit:
        raise _moved(ctx.repo_id, ctx.revision, ctx.commit, meta.commit_hash)
    if not meta.etag:
        raise DownloadError(f"{where}: the server sent no ETag, so the file cannot be identified; refusing",
                            hint="is HF_ENDPOINT a Hugging Face Hub (or a mirror that keeps its headers)?")
    if meta.size is None:
        raise DownloadError(f"{where}: the server sent no size (X-Linked-Size / Content-Length); refusing",
                            hint="is HF_ENDPOINT a Hugging Face Hub (or a mirror that keeps its headers)?")
    etag = meta.etag.lower()
    expected_etag = info.sha256 if info.lfs else info.blob_id
    if expected_etag and etag != expected_etag:
        raise IntegrityError(f"{where}: the ETag {etag} disagrees with the published "
                             f"{'sha256' if info.lfs else 'git blob id'} {expected_etag}")
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", etag):
        raise DownloadError(f"{where}: malformed ETag {etag!r}")
    if info.size is not None and meta.size != info.size:
        raise IntegrityError(f"{where}: the server says {meta.size} bytes, the published size is {info.size}")
    return etag, meta.size


def _with_retries(ctx: _Context, path: str, call):
    """Retry transport errors and 5xx/429 a bounded number of times."""
    for attempt in range(1, ctx.max_attempts + 1):
        ctx.check_stop()
        try:
            with _errors(ctx, path):
                return call()
        except _Transient as exc:
            if attempt == ctx.max_attempts:
                raise DownloadError(f"{ctx.repo_id}: {path}: giving up after {attempt} attempts: {exc}",
                                    hint="check the network and retry; completed files are kept") from None
            ctx.sleep(min(8.0, ctx.retry_wait_s * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


class _Transient(Exception):
    pass


@contextmanager
def _errors(ctx: _Context, path: str) -> Iterator[None]:
    """Client errors -> _Transient (retry) or a HubError naming the file."""
    import httpx2  # lazy: the hub's HTTP client, only while downloading
    from huggingface_hub import errors as hf_errors  # lazy: huggingface_hub only where it runs, never at import

    try:
        yield
    except (InputError, DownloadStopped, _Transient):
        raise
    except hf_errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (429, 500, 502, 503, 504):
            raise _Transient(f"HTTP {status}") from None
        if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
            raise DownloadError(f"{ctx.repo_id}@{ctx.revision}: {path} is not on the hub") from None
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            raise DownloadError(f"{ctx.repo_id} has no revision {ctx.revision!r} any more") from None
        if isinstance(exc, (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError)):
            raise DownloadError(f"{ctx.repo_id}: no access (not found, private or gated)",
                                hint="log in (`hf auth login` or HF_TOKEN)") from None
        raise DownloadError(f"{ctx.repo_id}: {path}: HTTP {status}") from None
    except (httpx2.TransportError, httpx2.DecodingError) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from None


# --- reuse, transfer, placement -------------------------------------------------------------


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


def _check(ctx: _Context, info: FileInfo, etag: str, hashers: _Hashers, got_size: int, size: int) -> str | None:
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


def _reuse(ctx: _Context, info: FileInfo, etag: str, blob: Path) -> FileResult | None:
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


def _transfer(ctx: _Context, info: FileInfo, etag: str, size: int, blob: Path) -> FileResult:
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
            return _transfer(ctx, info, etag, size, blob)
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


def _fill(ctx: _Context, info: FileInfo, url: str, part: _Partial) -> int:
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
        except _Transient as exc:
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


def _stream(ctx: _Context, info: FileInfo, url: str, part: _Partial) -> None:
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
    with _errors(ctx, info.path):
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


def _pointer_path(snapshot: Path, path: str) -> Path:
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


def _link(pointer: Path, blob: Path) -> None:
    """snapshots/<commit>/<path> -> ../../blobs/<etag>, relative like the client makes them."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, pointer.parent)
    if pointer.is_symlink() and os.readlink(pointer) == target:
        return
    temp = pointer.with_name(f".{pointer.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temp.unlink(missing_ok=True)
    os.symlink(target, temp)
    os.replace(temp, pointer)   # atomic: a reader sees the old link or the new one


def _write_ref(storage: Path, revision: str, commit: str) -> None:
    ref = storage / "refs" / revision
    if repo_path_problem(revision) or not ref.resolve().is_relative_to((storage / "refs").resolve()):
        return   # check_revision already refused such names; never write outside refs/
    if ref.exists() and ref.read_text() == commit:
        return
    # Temp + rename (a reader never sees half a sha), with the umask's mode like the client's
    # refs (write_atomic's 0600 would lock other users of a shared cache out).
    ref.parent.mkdir(parents=True, exist_ok=True)
    temp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
    with open(temp, "w", encoding="ascii") as handle:
        handle.write(commit)   # no trailing newline: the client compares the text as is
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, ref)


# --- progress -------------------------------------------------------------------------------


class _Tracker:
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
