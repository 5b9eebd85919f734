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

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.lock import LockedFile, ModelLock
from weightgate.core.weights.hub import hub_endpoint, resolve_revision
from weightgate.core.weights.metadata import fetch_metadata
from weightgate.core.weights.sources import (
    HUB,
    FileInfo,
    Source,
    check_repo_paths,
    is_commit,
    parse_source,
    plan_files,
    repo_path_problem,
)
from weightgate.core.weights.transfer import (
    HTTP_TIMEOUT_S,
    DownloadError,
    DownloadStopped,
    FileResult,
    IntegrityError,
    ProgressCallback,
    ProgressTracker,
    TransferContext,
    Transient,
    client_errors,
    link_pointer,
    pointer_path,
    reuse_cached,
    transfer_file,
)

DEFAULT_WORKERS = 4
DEFAULT_ATTEMPTS = 5           # consecutive attempts without a new byte before giving up


class BranchMovedError(DownloadError):
    """The asked branch or tag points to another commit than the one pinned."""


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

    tracker = ProgressTracker(files, on_progress, on_log)
    stop = threading.Event()
    context = TransferContext(repo_id=source.repo_id, revision=revision, commit=commit, endpoint=endpoint, token=token,
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


def _run_all(ctx: TransferContext, files: list[FileInfo], workers: int) -> list[FileResult]:
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
def _file_lock(ctx: TransferContext, etag: str) -> Iterator[None]:
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


def _fetch_file(ctx: TransferContext, info: FileInfo) -> FileResult:
    ctx.check_stop()
    etag, size = _head(ctx, info)
    blob = ctx.storage / "blobs" / etag
    pointer = pointer_path(ctx.snapshot, info.path)
    with _file_lock(ctx, etag):
        reused = reuse_cached(ctx, info, etag, blob)
        if reused is not None:
            link_pointer(pointer, blob)
            return reused
        result = transfer_file(ctx, info, etag, size, blob)
        link_pointer(pointer, blob)
        return result


def _head(ctx: TransferContext, info: FileInfo) -> tuple[str, int]:
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


def _with_retries(ctx: TransferContext, path: str, call):
    """Retry transport errors and 5xx/429 a bounded number of times."""
    for attempt in range(1, ctx.max_attempts + 1):
        ctx.check_stop()
        try:
            with client_errors(ctx, path):
                return call()
        except Transient as exc:
            if attempt == ctx.max_attempts:
                raise DownloadError(f"{ctx.repo_id}: {path}: giving up after {attempt} attempts: {exc}",
                                    hint="check the network and retry; completed files are kept") from None
            ctx.sleep(min(8.0, ctx.retry_wait_s * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


# --- the cache's refs ---------------------------------------------------------------------


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
