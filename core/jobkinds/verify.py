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
"missing", ... (core.verify's statuses), with "header" (ok / a fault code) for weight files.
"""

from __future__ import annotations

import threading
import time

from core.jobs import JobContext

HASHING = "hashing"
EMIT_INTERVAL_S = 0.25   # journal lines are fsynced: write from a side thread, a few a second


def run(ctx: JobContext) -> dict:
    from core.errors import InputError
    from core.verify import verify_lock
    from core.weights_checks import record_verification
    from core.workspace import Workspace

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
        from core.lock import read_lock
        from core.weights_checks import restore_hint

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
