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
                           written by `weightgate trust remote-code`). Remote code is refused
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

from __future__ import annotations

from core.jobs import JobContext


def keep_converted_twins(ws: Workspace, lock):
    """A re-download writes the lock from what the hub lists; the safetensors twins `weightgate
    convert` made of its pickles are not on the hub. Keep each twin (and the shard index) the old
    lock had, when its pickle's bytes are unchanged and the twin is still in the same snapshot."""
    from pathlib import Path

    from core.errors import InputError
    from core.lock import read_lock
    from core.pickle_policy import twin_name
    from core.picklescan import PICKLE_SUFFIXES

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


def run(ctx: JobContext) -> dict:
    from core.download import ProgressUpdate, download_model
    from core.errors import InputError
    from core.lock import write_lock
    from core.sources import parse_source
    from core.workspace import Workspace

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
        from core.pickle_policy import remote_code_trust

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
        from core.weights_checks import record_download
        data["evidence"] = record_download(workspace, lock)
    return data
