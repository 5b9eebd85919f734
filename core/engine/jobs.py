"""Detached jobs: a separate process per job that talks to its readers only through files.

    <workspace>/.weightgate/jobs/<job-id>/     (ids j1, j2, ...: a per-workspace counter)
        spec.json      what to run: kind, params, created, workspace        (written once)
        status.json    queued -> running (pid + process start time) -> an end state
        events.jsonl   the journal (core.engine.events); every job's journal ends with a `result`
        stdout.log, stderr.log
        cancel.json    present once someone asked the job to stop

The job runs in its own session (`start_new_session`), so it survives the TUI, the SSH
connection and the process that started it. Readers tail the journal; there is never a pipe.

Who writes status.json: the job itself while it lives. When the job's process is gone without
having recorded an end, the first reader to notice records `crashed` (or `cancelled`, if a
cancel was requested), so every later reader agrees and the journal gets its closing `result`.
That is safe because a dead process can no longer write; an exclusive marker file (`.ended`)
makes sure only one reader does it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Iterator

import psutil

from weightgate.core.engine import job_kinds as jobkinds
from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import (
    Error,
    Event,
    JournalWriter,
    Log,
    Result,
    follow,
)

SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"
EVENTS_FILE = "events.jsonl"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
CANCEL_FILE = "cancel.json"
ENDED_MARKER = ".ended"

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
CRASHED = "crashed"
UNKNOWN = "unknown"  # list_jobs only: a job directory whose files cannot be read
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, CRASHED, UNKNOWN)
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, CRASHED})

# A job still `queued` this long after creation never got its process started.
QUEUED_TIMEOUT_S = 30.0
EXIT_CODES = {SUCCEEDED: 0, FAILED: 1, CANCELLED: 128 + signal.SIGTERM}
# psutil derives create_time from boot time + clock ticks; the same process can read back a
# hair differently, while a reused pid starts later by far more than this.
_CREATE_TIME_TOLERANCE_S = 0.5


def jobs_dir_for(workspace: str | os.PathLike) -> Path:
    return Path(workspace) / ".weightgate" / "jobs"


def events_path(job_dir: str | os.PathLike) -> Path:
    return Path(job_dir) / EVENTS_FILE


# --- records --------------------------------------------------------------------------------


@dataclass
class JobSpec:
    job_id: str
    kind: str
    params: dict
    created: float
    workspace: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


@dataclass
class JobStatus:
    job_id: str
    kind: str
    state: str  # one of STATES
    created: float
    updated: float
    pid: int | None = None
    pid_create_time: float | None = None  # psutil create_time(): tells our pid from a reused one
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None  # 0 ok, 1 failed, 143 cancelled, -9 killed, None unknown
    error: str | None = None  # failed: the exception; crashed: why we think so
    detail: str | None = None  # any other human note (e.g. "killed after the grace period")
    stop_grace_s: float | None = None  # how long the job says a clean stop may take (a training step + a checkpoint)
    job_dir: Path | None = field(default=None, compare=False)  # where it was read from; not stored

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    def to_json(self) -> str:
        data = asdict(self)
        del data["job_dir"]
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


@dataclass
class JobHandle:
    job_id: str
    job_dir: Path
    pid: int
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)


@dataclass
class CancelOutcome:
    status: JobStatus
    message: str
    signalled: bool  # SIGTERM was sent
    killed: bool  # SIGKILL was needed


# --- starting -------------------------------------------------------------------------------


def start_job(
    jobs_dir: str | os.PathLike,
    kind: str,
    params: dict | None = None,
    *,
    workspace: str | os.PathLike | None = None,
) -> JobHandle:
    """Write the job's spec and `queued` status, spawn its process, return at once."""
    jobkinds.check_kind(kind)
    params = dict(params or {})
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"job params must be plain JSON values: {exc}",
                         hint="use numbers, strings, lists and dicts; pass paths as strings") from None
    jobs_dir = Path(jobs_dir).resolve()  # the job process runs elsewhere (cwd = its job dir)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    created = time.time()
    job_dir = _make_job_dir(jobs_dir)
    spec = JobSpec(job_id=job_dir.name, kind=kind, params=params, created=created,
                   workspace=str(Path(workspace).resolve()) if workspace is not None else None)
    write_atomic(job_dir / SPEC_FILE, spec.to_json())
    write_status(job_dir, JobStatus(job_id=spec.job_id, kind=kind, state=QUEUED,
                                     created=created, updated=created))
    try:
        process = _spawn(job_dir)
    except OSError as exc:
        now = time.time()
        write_status(job_dir, JobStatus(job_id=spec.job_id, kind=kind, state=FAILED, created=created,
                                         updated=now, ended=now, error=f"could not start the job process: {exc}"))
        raise
    return JobHandle(job_id=spec.job_id, job_dir=job_dir, pid=process.pid, process=process)


JOB_ID_PREFIX = "j"
_JOB_ID = re.compile(rf"^{JOB_ID_PREFIX}(\d+)$")
COUNTER_FILE = ".last-job-number"   # in jobs_dir: numbers are not reused when a job's directory is deleted


def _make_job_dir(jobs_dir: Path) -> Path:
    """A new job's directory, named by a per-workspace counter: j1, j2, ... Short enough to
    type whole (`weightgate attach j7`); the order of creation is in the spec's `created`.
    mkdir is the lock: two starters racing for one number both move on until one gets it."""
    number = max(_last_job_number(jobs_dir), _read_counter(jobs_dir)) + 1
    while True:
        job_dir = jobs_dir / f"{JOB_ID_PREFIX}{number}"
        try:
            job_dir.mkdir()
        except FileExistsError:
            number += 1
            continue
        try:
            write_atomic(jobs_dir / COUNTER_FILE, f"{number}\n")
        except OSError:
            pass   # the counter only guards against reuse after a deletion; the directories rule
        return job_dir


def _last_job_number(jobs_dir: Path) -> int:
    numbers = [int(match.group(1)) for name in os.listdir(jobs_dir) if (match := _JOB_ID.match(name))]
    return max(numbers, default=0)


def _read_counter(jobs_dir: Path) -> int:
    try:
        return int((jobs_dir / COUNTER_FILE).read_text(encoding="utf-8").strip() or 0)
    except (OSError, ValueError):
        return 0


def _spawn(job_dir: Path) -> subprocess.Popen:
    # The job runs on this interpreter, where weightgate is installed (a wheel or `pip install -e`).
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # stdout.log / stderr.log fill live
    with open(job_dir / STDOUT_FILE, "ab") as out, open(job_dir / STDERR_FILE, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "weightgate.core.engine.job_process", "run", str(job_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            # job_dir, not the workspace: `-m` puts cwd first on sys.path, and a workspace
            # could hold a directory named `weightgate`.
            cwd=job_dir,
            env=env,
            start_new_session=True,  # own session + process group: no SIGHUP/SIGINT from the starter's terminal
            close_fds=True,
        )


# --- reading --------------------------------------------------------------------------------


def read_spec(job_dir: str | os.PathLike) -> JobSpec:
    path = Path(job_dir) / SPEC_FILE
    data = _read_json(path)
    try:
        return JobSpec(**{f.name: data[f.name] for f in fields(JobSpec) if f.name in data})
    except TypeError as exc:
        raise InputError(f"job spec is incomplete: {exc}", path=path) from None


def read_status(job_dir: str | os.PathLike) -> JobStatus:
    """The job's status, with `running`/`queued` jobs whose process is gone reported as crashed."""
    job_dir = Path(job_dir)
    status = load_status(job_dir)
    for _ in range(3):
        if status.is_terminal:
            return status
        reason = _why_gone(status)
        if reason is None:
            return status
        # It may have recorded its end just before exiting: only an unchanged file is a crash.
        again = load_status(job_dir)
        if (again.state, again.pid, again.updated) == (status.state, status.pid, status.updated):
            if (job_dir / CANCEL_FILE).exists():
                return _record_end_of_dead_job(job_dir, CANCELLED, f"cancel requested; {reason}")
            return _record_end_of_dead_job(job_dir, CRASHED, reason)
        status = again
    return status


def list_jobs(jobs_dir: str | os.PathLike) -> list[JobStatus]:
    """Every job under jobs_dir, newest first. Unreadable ones appear with state `unknown`."""
    jobs_dir = Path(jobs_dir)
    if not jobs_dir.is_dir():
        return []
    found = []
    for job_dir in jobs_dir.iterdir():
        if not (job_dir / SPEC_FILE).exists():
            continue  # not a job, or start_job is still creating it
        try:
            found.append(read_status(job_dir))
        except InputError as exc:
            mtime = job_dir.stat().st_mtime
            found.append(JobStatus(job_id=job_dir.name, kind="?", state=UNKNOWN, created=mtime,
                                   updated=mtime, error=str(exc), job_dir=job_dir))
    found.sort(key=lambda s: (s.created, s.job_id), reverse=True)
    return found


def find_job(jobs_dir: str | os.PathLike, id_or_prefix: str) -> Path:
    """The job directory whose id is `id_or_prefix` or starts with it (uniquely). Ids are short
    (j7) since the counter; the long timestamped ids of older workspaces resolve the same way."""
    jobs_dir = Path(jobs_dir)
    wanted = id_or_prefix.strip()
    ids = sorted(p.name for p in jobs_dir.iterdir() if (p / SPEC_FILE).exists()) if jobs_dir.is_dir() else []
    if wanted in ids:
        return jobs_dir / wanted
    matches = [job_id for job_id in ids if wanted and job_id.startswith(wanted)]
    if len(matches) == 1:
        return jobs_dir / matches[0]
    if not matches:
        raise InputError(f"no job matches {wanted!r}", path=jobs_dir,
                         hint="`weightgate jobs` lists the job ids" if ids else "no jobs have been started here")
    shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise InputError(f"{wanted!r} matches {len(matches)} jobs: {shown}", path=jobs_dir,
                     hint="give more characters of the job id")


def follow_job(
    job_dir: str | os.PathLike,
    *,
    poll_s: float = 0.1,
    offset: int = 0,
    stop: Callable[[], bool] | None = None,
) -> Iterator[Event]:
    """Replay the job's whole journal, then follow it until the job has ended and it is drained.

    `stop` lets a caller detach early (the job keeps running). Blocking: run it in a thread
    worker in the TUI, or poll `core.engine.events.read_events` with an offset from a timer instead.
    """
    job_dir = Path(job_dir)
    read_status(job_dir)  # a missing or foreign directory fails here, before any waiting

    def finished() -> bool:
        return (stop is not None and stop()) or read_status(job_dir).is_terminal

    yield from follow(events_path(job_dir), poll_s=poll_s, stop=finished, offset=offset)


def load_status(job_dir: Path) -> JobStatus:
    path = job_dir / STATUS_FILE
    if not path.exists():
        if not (job_dir / SPEC_FILE).exists():
            raise InputError("not a job directory (no spec.json)", path=job_dir)
        # start_job died between writing the spec and the status: it never got going.
        spec = read_spec(job_dir)
        return JobStatus(job_id=spec.job_id, kind=spec.kind, state=QUEUED, created=spec.created,
                         updated=spec.created, job_dir=job_dir)
    data = _read_json(path)
    known = {f.name for f in fields(JobStatus)} - {"job_dir"}
    try:
        status = JobStatus(**{key: value for key, value in data.items() if key in known}, job_dir=job_dir)
    except TypeError as exc:
        raise InputError(f"job status is incomplete: {exc}", path=path) from None
    if status.state not in STATES:
        raise InputError(f"unknown job state {status.state!r}", path=path)
    return status


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno, column=exc.colno) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=path)
    return data


def write_status(job_dir: Path, status: JobStatus) -> None:
    write_atomic(job_dir / STATUS_FILE, status.to_json())


# --- liveness -------------------------------------------------------------------------------


def _why_gone(status: JobStatus) -> str | None:
    """None while the job's process may still be working; else why we think it is gone."""
    if status.state == QUEUED:
        waited = time.time() - status.created
        if waited > QUEUED_TIMEOUT_S:
            return f"queued {waited:.0f} s ago and its process never started"
        return None
    if status.state != RUNNING:
        return None
    if status.pid is None:
        return "status says running but records no process id"
    try:
        process = psutil.Process(status.pid)
        if (status.pid_create_time is not None
                and abs(process.create_time() - status.pid_create_time) > _CREATE_TIME_TOLERANCE_S):
            return f"process {status.pid} is gone (that pid now belongs to another process)"
        if process.status() == psutil.STATUS_ZOMBIE:
            return f"process {status.pid} exited without recording an end"
    except psutil.NoSuchProcess:
        return f"process {status.pid} is gone without recording an end"
    except psutil.AccessDenied:
        return None  # someone else's process with our pid and start time: assume it is ours
    return None


def _record_end_of_dead_job(job_dir: Path, state: str, reason: str, *, exit_code: int | None = None,
                            detail: str | None = None) -> JobStatus:
    """Record the end of a job whose process is gone; only the first caller writes."""
    status = load_status(job_dir)
    if status.is_terminal:
        return status
    if detail is None and state == CRASHED:
        tail = _stderr_tail(job_dir)  # often says why (an import error, an OOM kill message)
        detail = f"last stderr: {tail}" if tail else None
    elif detail is None:
        detail = reason
    now = time.time()
    ended = replace(status, state=state, updated=now, ended=now, exit_code=exit_code,
                    error=reason if state == CRASHED else status.error, detail=detail)
    try:
        os.close(os.open(job_dir / ENDED_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except OSError:
        # Another reader is recording it right now (or we may not write here): same verdict.
        return ended
    journal = JournalWriter(events_path(job_dir))
    if state == CRASHED:
        journal.emit(Error(message=f"job crashed: {reason}"))
    else:
        journal.emit(Log(message=f"job ended: {ended.detail}", level="warning"))
    journal.emit(Result(status=state))
    write_status(job_dir, ended)
    return ended


def _stderr_tail(job_dir: Path, max_chars: int = 500) -> str:
    try:
        with open(job_dir / STDERR_FILE, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_chars))
            return handle.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


# --- cancelling -----------------------------------------------------------------------------


DEFAULT_CANCEL_GRACE_S = 10.0


def cancel_job(job_dir: str | os.PathLike, grace_s: float | None = None, *, poll_s: float = 0.1) -> CancelOutcome:
    """SIGTERM the job's process group, wait for it to save and stop, then SIGKILL.

    The wait is grace_s when given; by default DEFAULT_CANCEL_GRACE_S, or longer when the job
    declared it needs longer to stop cleanly (a training step of a large model can take a minute,
    and killing it mid-step loses the checkpoint the SIGTERM was meant to save). Blocks for the
    whole wait (plus a moment): call it from a worker thread in the TUI.
    """
    job_dir = Path(job_dir)
    status = read_status(job_dir)
    if status.is_terminal:
        return CancelOutcome(status, f"job {status.job_id} already {status.state}; nothing to cancel",
                             signalled=False, killed=False)
    # The job checks this file when it starts, so a job cancelled while queued never runs.
    write_atomic(job_dir / CANCEL_FILE, json.dumps({"requested": time.time(), "by_pid": os.getpid()}) + "\n")
    began = time.monotonic()
    signalled = False
    while True:
        status = read_status(job_dir)
        if status.is_terminal:
            return CancelOutcome(status, f"job {status.job_id} {status.state}", signalled, killed=False)
        if status.state == RUNNING and not signalled:
            _signal_job(status, signal.SIGTERM)
            signalled = True
        wait = grace_s if grace_s is not None else max(DEFAULT_CANCEL_GRACE_S, status.stop_grace_s or 0.0)
        if time.monotonic() - began >= wait:
            grace_s = wait
            break
        time.sleep(poll_s)
    if status.state == QUEUED:
        return CancelOutcome(status, f"job {status.job_id} has not started yet; it will stop as soon as it does",
                             signalled, killed=False)
    _signal_job(status, signal.SIGKILL)
    gone_by = time.monotonic() + 10.0
    while _why_gone(status) is None and time.monotonic() < gone_by:
        time.sleep(0.05)
    final = _record_end_of_dead_job(
        job_dir, CANCELLED, "cancelled", exit_code=-signal.SIGKILL,
        detail=f"did not stop within {grace_s:g} s of SIGTERM; killed with SIGKILL (no checkpoint)")
    return CancelOutcome(final, f"job {status.job_id} did not stop within {grace_s:g} s; killed",
                         signalled, killed=True)


def _signal_job(status: JobStatus, signum: int) -> None:
    """Signal the job's process group, only if its pid still belongs to the job."""
    if status.pid is None or _why_gone(status) is not None:
        return
    try:
        # The job is a session leader, so its group id is its pid; the group includes any
        # workers it spawned (torchrun, dataloaders).
        if os.getpgid(status.pid) == status.pid:
            os.killpg(status.pid, signum)
        else:
            os.kill(status.pid, signum)
    except ProcessLookupError:
        pass
