"""`lock_gguf`: hash a GGUF file (against its published sha256 when the candidate names one),
check its header, convert it once to a safetensors model (cached by its sha256) and lock both
(core.gguf_source). One progress event per stage, and per-file hashing progress.

params:
    source            the .gguf path
    published_sha256  the sha256 its publisher gives ("" when none is known)
    provenance, origin  recorded in the lock (where the bytes came from; the hub repo they derive from)
"""

from __future__ import annotations

from core.jobs import JobContext


def run(ctx: JobContext) -> dict:
    from core.errors import InputError
    from core.gguf_source import lock_gguf_source
    from core.workspace import open_workspace

    if ctx.workspace is None:
        raise InputError("the lock_gguf job needs a workspace")
    ws = open_workspace(ctx.workspace)
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
