"""Inside a job process: `python -m weightgate.core.engine.job_process run <job-dir>`.

Reads the spec, marks the job running, calls the kind's function (engine/job_kinds.py) with a
JobContext (params, journal, cancellation), and records how it ended: `result` in the journal
and the end state in status.json. The first SIGTERM becomes one JobCancelled inside the kind
function, so it can save a checkpoint; the runner's own bookkeeping is never interrupted.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import psutil

from weightgate.core.engine import job_kinds as jobkinds
from weightgate.core.engine import timers
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import Artifact, Error, Event, JournalWriter, Log, Metric, Payload, Progress, Result
from weightgate.core.engine.jobs import (
    CANCEL_FILE,
    CANCELLED,
    EXIT_CODES,
    FAILED,
    RUNNING,
    SUCCEEDED,
    events_path,
    load_status,
    read_spec,
    write_status,
)
from weightgate.core.engine.workspace import CONFIG_NAME, Workspace, load_config, open_workspace


class JobCancelled(BaseException):
    """Raised in the kind function when the job is cancelled (SIGTERM).

    A BaseException, like KeyboardInterrupt, so a kind's `except Exception` does not swallow
    it. Catch it to save a checkpoint, then re-raise.
    """


class _CancelSwitch:
    """Turns the first SIGTERM into one JobCancelled in the kind function, never elsewhere.

    Outside the kind function (runner bookkeeping) and inside `shielded()` blocks (journal
    appends, checkpoint writes) the signal is only noted; a shielded block raises it on exit.
    This keeps seq numbers gap-free and files whole.
    """

    def __init__(self) -> None:
        self.requested = False
        self.armed = False
        self.shield = 0
        self.raised = False

    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.raise_if_due()

    def raise_if_due(self) -> None:
        # Only the main thread: that is where Python runs signal handlers and the kind function.
        if (self.requested and self.armed and self.shield == 0 and not self.raised
                and threading.current_thread() is threading.main_thread()):
            self.raised = True
            raise JobCancelled("cancelled (SIGTERM)")


@dataclass
class JobContext:
    """What a kind function gets: its params, its directory, the journal, and cancellation."""

    job_id: str
    job_dir: Path
    params: dict
    workspace: Path | None
    journal: JournalWriter
    _switch: _CancelSwitch = field(default_factory=_CancelSwitch, repr=False)

    @property
    def cancelled(self) -> bool:
        return self._switch.requested

    def open_workspace(self) -> Workspace:
        """The workspace the job was started in (an InputError for a job started without one)."""
        if self.workspace is None:
            raise InputError("this job needs a workspace", hint="start it with start_job(..., workspace=DIR)")
        return open_workspace(self.workspace)

    def check_cancel(self) -> None:
        """Raise JobCancelled if a cancel was requested (for loops that poll)."""
        if self._switch.requested:
            self._switch.raised = True
            raise JobCancelled("cancelled")

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """A block SIGTERM does not interrupt; a cancel that arrived meanwhile is raised after."""
        # Signals land in the main thread only, so only its blocks need shielding; counting
        # other threads' blocks too would delay (and misplace) the main thread's cancel.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._switch.shield += 1
        try:
            yield
        finally:
            self._switch.shield -= 1
        self._switch.raise_if_due()

    def emit(self, kind_or_payload: str | Payload, payload: dict | None = None, **fields_: Any) -> Event:
        with self.shielded():
            return self.journal.emit(kind_or_payload, payload, **fields_)

    def declare_stop_grace(self, seconds: float) -> None:
        """Say how long a clean stop may take, so `cancel` waits that long before SIGKILL."""
        with self.shielded():
            status = load_status(self.job_dir)
            if status.state == RUNNING:
                write_status(self.job_dir, replace(status, stop_grace_s=round(float(seconds), 1),
                                                    updated=time.time()))

    def progress(self, done: float, total: float | None = None, *, unit: str = "step", message: str = "",
                 eta_s: float | None = None) -> Event:
        return self.emit(Progress(done=done, total=total, unit=unit, message=message, eta_s=eta_s))

    def metric(self, values: dict[str, float], step: int | None = None) -> Event:
        return self.emit(Metric(values=values, step=step))

    def log(self, message: str, level: str = "info") -> Event:
        return self.emit(Log(message=message, level=level))

    def artifact(self, path: str | os.PathLike, label: str = "") -> Event:
        return self.emit(Artifact(path=str(path), label=label))


def run_job(job_dir: str | os.PathLike) -> int:
    """The body of `python -m weightgate.core.engine.job_process run <job-dir>`; returns the process exit code."""
    job_dir = Path(job_dir).resolve()
    switch = _CancelSwitch()
    signal.signal(signal.SIGTERM, switch.on_sigterm)
    try:
        spec = read_spec(job_dir)
        status = load_status(job_dir)
    except InputError as exc:
        # Not a job we can run; readers will see it stay queued and report it crashed with this.
        print(f"weightgate job: {exc}", file=sys.stderr)
        return 2
    if status.is_terminal:
        print(f"job {spec.job_id} is already {status.state}; not running it", file=sys.stderr)
        return 0
    if (job_dir / CANCEL_FILE).exists():
        switch.requested = True
    journal = JournalWriter(events_path(job_dir))
    now = time.time()
    status = replace(status, state=RUNNING, pid=os.getpid(), pid_create_time=psutil.Process().create_time(),
                     started=now, updated=now)
    write_status(job_dir, status)
    ctx = JobContext(job_id=spec.job_id, job_dir=job_dir, params=spec.params,
                     workspace=Path(spec.workspace) if spec.workspace else None,
                     journal=journal, _switch=switch)
    data: Any = None
    error: str | None = None
    try:
        function = jobkinds.resolve(spec.kind)
        switch.armed = True
        try:
            switch.raise_if_due()  # cancelled before it started
            data = function(ctx)
        finally:
            switch.armed = False
        state = CANCELLED if switch.requested else SUCCEEDED
    except JobCancelled:
        state = CANCELLED
    except BaseException as exc:  # noqa: BLE001 - whatever the kind raised is the job's failure
        error = f"{type(exc).__name__}: {exc}"
        trace = traceback.format_exc()
        print(trace, file=sys.stderr)
        journal.emit(Error(message=error, traceback=trace))
        state = CANCELLED if switch.requested else FAILED
    _mirror_to_trackers(ctx, spec.kind, state)
    result = _as_result_data(data)
    result.setdefault("timing", job_timing(time.time() - now))
    journal.emit(Result(status=state, data=result))
    now = time.time()
    write_status(job_dir, replace(status, state=state, updated=now, ended=now, exit_code=EXIT_CODES[state],
                                   error=error))
    return EXIT_CODES[state]


# Tracking sits above the engine (it reads eval runs and the registry), so the engine names its
# hook as a string, as it names job kinds, and imports it only in a workspace with [tracking].
TRACKING_HOOK = "weightgate.core.tracking.sync:mirror_finished_job"


def _mirror_to_trackers(ctx: JobContext, kind: str, state: str) -> None:
    """Copy the job's results to the workspace's trackers before its `result` is written (so
    a warning lands in the journal readers follow). Never fails the job: the journal stays the
    source of truth and `weightgate track sync` replays it later."""
    if ctx.workspace is None:
        return
    try:
        configured = "tracking" in load_config(ctx.workspace / CONFIG_NAME)
    except Exception:  # noqa: BLE001 - no readable weightgate.toml: nothing asks for a tracker
        return
    if not configured:
        return
    try:
        module_name, _, function_name = TRACKING_HOOK.partition(":")
        getattr(importlib.import_module(module_name), function_name)(ctx, kind, state)
    except Exception as exc:  # noqa: BLE001 - a tracker (or its config) never fails a job
        reason = re.sub(r"://[^/@\s]*@", "://***@", " ".join(str(exc).split())[:300])   # no credential in a journal
        ctx.journal.emit(Log(message=f"tracking: not mirrored ({type(exc).__name__}: {reason}); "
                                     "the journal keeps everything: run `weightgate track sync` later",
                             level="warning"))


def job_timing(wall_s: float) -> dict:
    """The job's wall time and the seconds it spent generating, training, hashing and loading
    (core.engine.timers): what the headless demo's timing table adds up per phase."""
    # microseconds: a tiny file hashes in well under a millisecond, and 0.0 would read as "not timed"
    return {"wall_s": round(wall_s, 3), **{f"{category}_s": round(seconds, 6)
                                           for category, seconds in timers.totals().items()}}


def _as_result_data(data: Any) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        data = {"value": data}
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        return {"repr": repr(data)}
    return data


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "run":
        print("usage: python -m weightgate.core.engine.job_process run <job-dir>", file=sys.stderr)
        return 2
    return run_job(argv[1])


if __name__ == "__main__":
    # Run through the imported module, not this __main__ copy: kind functions import
    # weightgate.core.engine.job_process, and JobCancelled must be one and the same class for both.
    from weightgate.core.engine.job_process import main as _main

    sys.exit(_main())
