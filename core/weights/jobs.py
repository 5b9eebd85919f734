"""Phase 2's job kinds, each in its own process (engine/job_kinds.py names them):

    download         fetch a hub model at a pinned commit, hashed while downloading; write the lock
    verify           re-hash every locked file against the lock, check every header
    lock_gguf        hash a GGUF (against its published sha256), check it, convert it once, lock both
    convert_pickle   a trusted pickle checkpoint -> its safetensors twin, locked

Each function's docstring lists its params and the events it writes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.hashing import sha256_file
from weightgate.core.engine.job_process import JobContext
from weightgate.core.engine.lock import read_lock, write_lock
from weightgate.core.engine.workspace import Workspace
from weightgate.core.weights.checks import record_download, record_verification
from weightgate.core.weights.convert import (
    flatten_state_dict,
    lock_twin,
    plan_conversion,
    prepare_tensors,
    save_tensors,
    select_tensors,
    verify_saved,
)
from weightgate.core.weights.download import download_model
from weightgate.core.weights.gguf_source import lock_gguf_source
from weightgate.core.weights.pickle_policy import TWIN_SOURCE_KEY, check_pickle_handle, remote_code_trust, twin_name
from weightgate.core.weights.picklescan import PICKLE_SUFFIXES
from weightgate.core.weights.sources import parse_source
from weightgate.core.weights.transfer import ProgressUpdate
from weightgate.core.weights.verify import restore_hint, verify_lock


def keep_converted_twins(ws: Workspace, lock):
    """A re-download writes the lock from what the hub lists; the safetensors twins `weightgate
    convert` made of its pickles are not on the hub. Keep each twin (and the shard index) the old
    lock had, when its pickle's bytes are unchanged and the twin is still in the same snapshot."""


    try:
        old = read_lock(ws)
    except InputError:
        return lock
    if old is None or Path(old.local_dir) != Path(lock.local_dir):
        return lock
    carried = []
    for entry in list(lock.files):
        before = old.file(entry.path)
        if not entry.path.endswith(PICKLE_SUFFIXES) or before is None or before.sha256 != entry.sha256:
            continue
        twin = old.file(twin_name(entry.path))
        if twin is not None and lock.file(twin.path) is None and (Path(lock.local_dir) / twin.path).is_file():
            carried.append(twin)
    index = old.file("model.safetensors.index.json")
    if carried and index is not None and lock.file(index.path) is None and (Path(lock.local_dir) / index.path).is_file():
        carried.append(index)
    lock.files.extend(carried)
    return lock


def run_download(ctx: JobContext) -> dict:
    """`download`: fetch a hub model at a pinned commit, verified, into the HF cache; write the lock.

    params:
        source                 "org/name" or "org/name@revision" (required)
        commit                 the commit pinned at selection; the revision must still point to it.
                               Absent: the revision is pinned when the job starts.
        cache_dir              default: HF_HUB_CACHE / HF_HOME/hub, as the client resolves it
        endpoint               default: HF_ENDPOINT
        include                extra glob patterns to fetch
        trust_remote_code_at   the commit the user trusted the repo's code at. Absent: read from the
                               workspace's weightgate.toml ([trust.remote_code."org/name"] commit, as
                               written by `weightgate weights trust remote-code`). Remote code is refused
                               unless it equals the pinned commit.
        workers (4), max_attempts (5), retry_wait_s (1.0)
        write_lock (true)      write weightgate.lock in the job's workspace after success

    Never pass a token here: params are stored in spec.json. The client reads HF_TOKEN or the
    login cache itself.

    Events: `progress` per file and for the total, in bytes, with extra keys the TUI may use:
        {"done", "total", "unit": "B", "eta_s", "message", "scope": "file"|"total",
         "file": path (file scope), "rate_bps", "state"}
    `log` for skipped files, resumes and restarts; `artifact` for the snapshot and the lock.
    """

    params = ctx.params
    if "token" in params:
        raise InputError("a token must not be passed as a job parameter (it would be stored in spec.json)",
                         hint="set HF_TOKEN in the environment or log in with `hf auth login`")
    spec = params.get("source")
    if not isinstance(spec, str):
        raise InputError("the download job needs a `source` (org/name or org/name@revision)")
    source = parse_source(spec)

    def on_progress(update: ProgressUpdate) -> None:
        payload = {"done": update.done, "total": update.total, "unit": "B", "scope": update.scope,
                   "rate_bps": round(update.rate_bps, 1), "state": update.state,
                   "message": update.path if update.scope == "file" else "total"}
        if update.eta_s is not None:
            payload["eta_s"] = round(update.eta_s, 2)
        if update.scope == "file":
            payload["file"] = update.path
        ctx.emit("progress", payload)

    trusted_at = params.get("trust_remote_code_at")
    if trusted_at is None and ctx.workspace is not None:
        trust = remote_code_trust(Workspace(ctx.workspace), source.repo_id)
        trusted_at = trust.commit if trust is not None else None
    ctx.log(f"download {source} " + (f"at pinned commit {params['commit']}" if params.get("commit")
                                     else "(pinning the revision now)"))
    result = download_model(
        source,
        commit=params.get("commit"),
        cache_dir=params.get("cache_dir"),
        endpoint=params.get("endpoint"),
        include=params.get("include"),
        trust_remote_code_at=trusted_at,
        workers=int(params.get("workers", 4)),
        max_attempts=int(params.get("max_attempts", 5)),
        retry_wait_s=float(params.get("retry_wait_s", 1.0)),
        on_progress=on_progress,
        on_log=lambda message: ctx.log(message),
        should_stop=lambda: ctx.cancelled,
    )
    for path, why in sorted(result.skipped.items()):
        ctx.log(f"skipped {path}: {why}")
    ctx.artifact(result.snapshot_dir, label="snapshot")
    data = {
        "repo_id": result.repo_id, "revision": result.revision, "commit": result.commit,
        "snapshot_dir": result.snapshot_dir, "files": len(result.files),
        "bytes_downloaded": result.bytes_downloaded, "bytes_reused": result.bytes_reused,
        "seconds": round(result.seconds, 3), "skipped": result.skipped, "license": result.license,
        "remote_code": result.remote_code, "lock": None,
    }
    if ctx.workspace is not None and params.get("write_lock", True):
        workspace = Workspace(ctx.workspace)
        lock = keep_converted_twins(workspace, result.to_lock(source.repo_id))
        with ctx.shielded():   # a cancel arriving now waits: the lock is written whole or not at all
            write_lock(workspace, lock)
        ctx.artifact(workspace.lock_path, label="lock")
        data["lock"] = str(workspace.lock_path)
        # Every byte was hashed on the way in; headers are read now (no tensor data).
        data["evidence"] = record_download(workspace, lock)
    return data


HASHING = "hashing"
EMIT_INTERVAL_S = 0.25   # journal lines are fsynced: write from a side thread, a few a second


def run_verify(ctx: JobContext) -> dict:
    """`verify`: re-hash every locked file in parallel against weightgate.lock, check every header,
    and record the result as evidence for verify.checksum and verify.headers.

    params:
        only_changed (false)   re-hash only files whose size or mtime moved since they last matched
        workers (all cores)

    Events: `progress` for the total and per file, in bytes, in the download job's form (so one
    reader shows both):
        {"done", "total", "unit": "B", "eta_s", "rate_bps", "message", "scope": "total"}
        {"done", "total", "unit": "B", "rate_bps", "message", "scope": "file", "file": path, "state"}
    A file's state is "hashing" while its bytes are read, then, once the whole lock is checked, one
    last event per locked file carries its outcome: "ok", "unchanged", "mismatch", "size_differs",
    "missing", ... (core.weights.verify's statuses), with "header" (ok / a fault code) for weight files.
    """

    if ctx.workspace is None:
        raise InputError("the verify job needs a workspace")
    ws = Workspace(ctx.workspace)
    reporter = _Reporter(ctx)
    reporter.start()
    try:
        report = verify_lock(ws, only_changed=bool(ctx.params.get("only_changed")),
                             workers=ctx.params.get("workers"), progress=reporter.total,
                             file_progress=reporter.file)
    finally:
        reporter.close()
    for result in report.files:   # each file's outcome, for a per-file view
        size = result.size if result.size is not None else result.expected_size
        payload = {"done": size if result.sha256 or result.status == "unchanged" else 0, "total": size,
                   "unit": "B", "scope": "file", "file": result.path, "message": result.path,
                   "state": result.status}
        if result.header_kind:
            payload["header"] = result.header
        ctx.emit("progress", payload)
    record_verification(ws, report)
    for result in report.failed():
        ctx.log(f"{result.path}: {result.status} {result.message}".strip(), level="error")
    ctx.metric({"mb_per_s": round(report.mb_per_s, 1), "bytes_hashed": report.bytes_hashed})
    if not report.ok:   # the evidence is recorded; the job itself ends failed, naming the files
        bad = ", ".join(f"{r.path} ({r.status if not r.ok else r.header})" for r in report.files
                        if not r.ok or (r.header_kind and r.header != "ok"))

        raise InputError(f"verification failed: {bad}", hint=restore_hint(read_lock(ws)))
    return report.to_dict()


class _Reporter:
    """Takes hash_files' callbacks (on the hashing threads, under its lock: they only store
    numbers) and writes them to the journal from its own thread every EMIT_INTERVAL_S, so no
    hashing thread ever waits for an fsync."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self.began = time.monotonic()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.totals: tuple[int, int] | None = None
        self.files: dict[str, list] = {}        # path -> [done, size, first seen, written done]
        self.thread = threading.Thread(target=self._loop, name="verify-progress", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def total(self, done: int, total: int) -> None:
        with self.lock:
            self.totals = (done, total)

    def file(self, path: str, done: int, size: int) -> None:
        with self.lock:
            entry = self.files.setdefault(path, [0, 0, time.monotonic(), -1])
            entry[0], entry[1] = done, size

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self._flush()

    def _loop(self) -> None:
        while not self.stopped.wait(EMIT_INTERVAL_S):
            self._flush()

    def _flush(self) -> None:
        now = time.monotonic()
        events = []
        with self.lock:
            for path, entry in self.files.items():
                done, size, first, written = entry
                if done == written:
                    continue
                entry[3] = done
                rate = done / (now - first) if now > first else 0.0
                events.append({"done": done, "total": size, "unit": "B", "scope": "file", "file": path,
                               "message": path, "state": HASHING, "rate_bps": round(rate, 1)})
            if self.totals is not None:
                done, total = self.totals
                self.totals = None
                elapsed = now - self.began
                rate = done / elapsed if elapsed > 0 else 0.0
                payload = {"done": done, "total": total, "unit": "B", "scope": "total", "message": "hashing",
                           "rate_bps": round(rate, 1)}
                if rate > 0:
                    payload["eta_s"] = round((total - done) / rate, 2)
                events.append(payload)
        for payload in events:
            self.ctx.emit("progress", payload)


def run_lock_gguf(ctx: JobContext) -> dict:
    """`lock_gguf`: hash a GGUF file (against its published sha256 when the candidate names one),
    check its header, convert it once to a safetensors model (cached by its sha256) and lock both
    (core.weights.gguf_source). One progress event per stage, and per-file hashing progress.

    params:
        source            the .gguf path
        published_sha256  the sha256 its publisher gives ("" when none is known)
        provenance, origin  recorded in the lock (where the bytes came from; the hub repo they derive from)
    """

    ws = ctx.open_workspace()
    params = ctx.params
    current = {"stage": "hash"}

    def on_stage(name: str, done: int, total: int) -> None:
        current["stage"] = name
        ctx.progress(done, total, unit="stage", message=name)

    def progress(done: int, total: int) -> None:
        ctx.emit("progress", {"done": done, "total": total, "unit": "B", "message": current["stage"]})

    with ctx.shielded():   # the lock and its evidence are written whole
        lock = lock_gguf_source(ws, params["source"], published_sha256=str(params.get("published_sha256") or ""),
                                provenance=str(params.get("provenance") or ""), origin=str(params.get("origin") or ""),
                                log=ctx.log, on_stage=on_stage, progress=progress)
    ctx.progress(5, 5, unit="stage", message="locked")
    ctx.artifact(ws.lock_path, label="lock")
    gguf = lock.files[0]
    return {"source": lock.source, "files": len(lock.files), "bytes": lock.total_bytes(), "lock": str(ws.lock_path),
            "gguf_sha256": gguf.sha256, "hash_source": gguf.hash_source, "model_dir": f"{lock.local_dir}/{lock.load_dir}"}


def run_convert_pickle(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    raw = ctx.params.get("path")
    if not raw:
        raise InputError("convert_pickle: params.path is required")
    plan = plan_conversion(ws, raw, output_dir=ctx.params.get("output_dir"),
                           overwrite=bool(ctx.params.get("overwrite")))
    source, output = plan.source, plan.output

    with open(source, "rb") as handle:
        scan, source_sha = check_pickle_handle(ws, source, handle)  # raises PickleRefused
        ctx.log(f"{source.name}: trusted, sha256 {source_sha}; scan clean "
                f"({scan.format}, {len(scan.imports)} allowlisted imports)")
        import torch  # only now: a refused file never even costs the torch import

        handle.seek(0)
        loaded = torch.load(handle, map_location="cpu", weights_only=True)

    selected = select_tensors(loaded, ctx.params.get("key"))
    tensors = flatten_state_dict(selected)
    prepared, cloned = prepare_tensors(tensors)
    if cloned:
        ctx.log(f"cloned {len(cloned)} tensor(s) sharing storage (safetensors stores no aliases): "
                + ", ".join(cloned[:8]) + (" ..." if len(cloned) > 8 else ""))
    metadata = {"format": "pt", "source": source.name, TWIN_SOURCE_KEY: source_sha}
    save_tensors(prepared, output, metadata)
    verify_saved(output, tensors, ctx)
    output_sha = sha256_file(output)
    ctx.artifact(output, label=f"safetensors sha256:{output_sha}")
    ctx.log(f"wrote {output.name} ({len(prepared)} tensors, sha256 {output_sha})")
    locked = lock_twin(ws, plan, source_sha, output_sha, ctx)
    return {"output": str(output), "sha256": output_sha, "source": str(source), "source_sha256": source_sha,
            "tensors": len(prepared), "cloned_shared": cloned, "locked": locked}
