"""`verify`: re-hash every locked file in parallel against weightgate.lock, check every header,
and record the result as evidence for verify.checksum and verify.headers.

params:
    only_changed (false)   re-hash only files whose size or mtime moved since they last matched
    workers (all cores)
"""

from __future__ import annotations

import time

from core.jobs import JobContext


def run(ctx: JobContext) -> dict:
    from core.errors import InputError
    from core.verify import verify_lock
    from core.weights_checks import record_verification
    from core.workspace import Workspace

    if ctx.workspace is None:
        raise InputError("the verify job needs a workspace")
    ws = Workspace(ctx.workspace)
    began = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - began
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        ctx.progress(done, total, unit="B", message="hashing", eta_s=eta)

    report = verify_lock(ws, only_changed=bool(ctx.params.get("only_changed")),
                         workers=ctx.params.get("workers"), progress=progress)
    record_verification(ws, report)
    for result in report.failed():
        ctx.log(f"{result.path}: {result.status} {result.message}".strip(), level="error")
    ctx.metric({"mb_per_s": round(report.mb_per_s, 1), "bytes_hashed": report.bytes_hashed})
    if not report.ok:   # the evidence is recorded; the job itself ends failed, naming the files
        bad = ", ".join(f"{r.path} ({r.status if not r.ok else r.header})" for r in report.files
                        if not r.ok or (r.header_kind and r.header != "ok"))
        from core.lock import read_lock
        from core.weights_checks import restore_hint

        raise InputError(f"verification failed: {bad}", hint=restore_hint(read_lock(ws)))
    return report.to_dict()
