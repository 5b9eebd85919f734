"""Send a tracker what it has not had yet: at the end of every job (the job's own journal, and
any eval run or registry version not mirrored) and from `weightgate track sync` (every finished
training job, eval run and version). One code path, so a replay sends exactly what the live
mirror would have.

What each destination holds is remembered per record: in the job's directory
(`.weightgate/jobs/<id>/tracking.json`) for a training job, in `.weightgate/tracking/state.json`
for eval runs and versions (not in the run or version directory: a shipped version's files are
checksummed and a run's are copied into versions). A destination that fails is reported and
left for the next sync; the others go on. Nothing here ever raises into a job.
"""

from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import WeightgateError
from weightgate.core.engine.events import Event, read_events
from weightgate.core.engine.jobs import read_spec, read_status
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.runs import COMPLETE, FAILED, list_runs
from weightgate.core.tracking.config import TrackingConfig, redact, tracking_config
from weightgate.core.tracking.mirror import Record, eval_record, release_records, train_record
from weightgate.core.tracking.mlflow_backend import MlflowTarget
from weightgate.core.tracking.tensorboard_backend import TensorboardTarget, holds

JOB_STATE = "tracking.json"
EXTRAS = {"mlflow": "mlflow", "tensorboard": "tensorboard"}


@dataclass
class DestinationReport:
    destination: str            # redacted: never a password or token
    mirrored: list[str] = field(default_factory=list)
    skipped: int = 0
    pending: int = 0            # not sent because the destination failed
    error: str | None = None

    def to_dict(self) -> dict:
        return {"destination": self.destination, "mirrored": self.mirrored, "skipped": self.skipped,
                "pending": self.pending, "error": self.error}


@dataclass
class SyncReport:
    destinations: list[DestinationReport] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.error is None for d in self.destinations)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "destinations": [d.to_dict() for d in self.destinations],
                "unreadable": self.unreadable}


def state_dir(ws: Workspace) -> Path:
    return ws.state_dir / "tracking"


@contextmanager
def _sync_lock(ws: Workspace) -> Iterator[None]:
    # Two jobs ending together would both find the same eval run unmirrored and send it twice.
    directory = state_dir(ws)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_state(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}   # a lost or damaged state file only costs a re-send, which replaces, never duplicates
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, state: dict) -> None:
    write_atomic(path, json.dumps(state, indent=1, sort_keys=True) + "\n")


ALL_KINDS = ("train", "eval", "release")
Live = tuple[Path, list[Event], str]


def collect(ws: Workspace, live: Live | None = None,
            kinds: tuple[str, ...] = ALL_KINDS) -> tuple[list[tuple[Record, Path]], list[str]]:
    """Every record of `kinds` with the state file that remembers it; and what could not be read.

    live: (job dir, its events so far, its end state) of the job now ending: only that job's
    journal is read (the other jobs mirrored themselves, or wait for `track sync`)."""

    records: list[tuple[Record, Path]] = []
    unreadable: list[str] = []
    if "train" in kinds and live is not None:
        job_dir, events, state = live
        records.append((train_record(job_dir, events, state), Path(job_dir) / JOB_STATE))
    elif "train" in kinds and ws.jobs_dir.is_dir():
        for job_dir in sorted(ws.jobs_dir.iterdir()):
            try:
                if read_spec(job_dir).kind != "train" or not read_status(job_dir).is_terminal:
                    continue   # a running job mirrors itself when it ends
                records.append((train_record(job_dir), job_dir / JOB_STATE))
            except (WeightgateError, OSError) as exc:
                unreadable.append(f"{job_dir.name}: {exc}")
    shared = state_dir(ws) / "state.json"
    for run in list_runs(ws) if "eval" in kinds else []:
        if run.status in (COMPLETE, FAILED):   # a partial run may still be filling up
            records.append((eval_record(run), shared))
    try:
        if "release" in kinds:
            records.extend((record, shared) for record in release_records(ws))
    except (WeightgateError, OSError) as exc:
        unreadable.append(f"registry: {exc}")
    return records, unreadable


def _open(kind: str, config: TrackingConfig):
    try:
        if kind == "mlflow":
            return MlflowTarget(config.mlflow, config.experiment)
        return TensorboardTarget(config.tensorboard)
    except ImportError as exc:
        raise RuntimeError(f"{kind} is not installed ({exc.name}): pip install 'weightgate[{EXTRAS[kind]}]'") from None


def sync_workspace(ws: Workspace, *, live: Live | None = None, kinds: tuple[str, ...] = ALL_KINDS,
                   config: TrackingConfig | None = None, log: Callable[[str], None] | None = None) -> SyncReport:
    """Mirror every record each configured destination does not hold yet (see the module doc)."""
    config = config or tracking_config(ws)
    report = SyncReport()
    if not config.enabled:
        return report
    with _sync_lock(ws):
        records, report.unreadable = collect(ws, live, kinds)
        states: dict[Path, dict] = {}
        for destination in config.destinations():
            kind = destination.split(":", 1)[0]
            result = DestinationReport(redact(destination))
            report.destinations.append(result)
            waiting = _waiting(destination, records, states, config)
            result.skipped = len(records) - len(waiting)
            if waiting:
                _send(destination, kind, waiting, states, config, result)
            if log:
                log(describe(result))
    return report


def _waiting(destination: str, records: list[tuple[Record, Path]], states: dict[Path, dict],
             config: TrackingConfig) -> list[tuple[Record, Path]]:
    """The records this destination does not hold: never sent, sent with another fingerprint, or
    (TensorBoard) whose run directory is gone. Decided from the state files alone, so a job whose
    records are all there never imports mlflow nor waits for a server."""
    waiting = []
    for record, state_path in records:
        state = states.setdefault(state_path, _read_state(state_path))
        held = state.get(destination, {}).get(record.key, {})
        there = held.get("fingerprint") == record.fingerprint
        if there and destination.startswith("tensorboard:"):
            there = holds(config.tensorboard, record)
        if not there:
            waiting.append((record, state_path))
    return waiting


def _send(destination: str, kind: str, waiting: list[tuple[Record, Path]], states: dict[Path, dict],
          config: TrackingConfig, result: DestinationReport) -> None:
    try:
        target = _open(kind, config)
    except Exception as exc:  # noqa: BLE001 - any failure of a tracker is reported, never raised
        result.error, result.pending = _reason(exc), len(waiting)
        return
    for index, (record, state_path) in enumerate(waiting):
        try:
            entry = target.mirror(record)
        except Exception as exc:  # noqa: BLE001 - see above; the rest waits for the next sync
            result.error, result.pending = f"{record.key}: {_reason(exc)}", len(waiting) - index
            return
        # Saved after each record: a sync cut short keeps what it did.
        state = states[state_path]
        state.setdefault(destination, {})[record.key] = {"fingerprint": record.fingerprint,
                                                         "time": round(time.time(), 3), **entry}
        _write_state(state_path, state)
        result.mirrored.append(record.key)


def tracking_status(ws: Workspace) -> dict:
    """Where runs go and how many records each destination has not had yet, from the state files
    alone (no tracker is contacted, so this answers at once even when one is down)."""
    config = tracking_config(ws)
    records, unreadable = collect(ws)
    states: dict[Path, dict] = {}
    out = []
    for destination in config.destinations():
        waiting = [record.key for record, _ in _waiting(destination, records, states, config)]
        out.append({"destination": redact(destination), "records": len(records), "pending": waiting})
    return {"enabled": config.enabled, "experiment": config.experiment if config.mlflow else None,
            "destinations": out, "unreadable": unreadable}


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return redact(text[:300]) or type(exc).__name__


def describe(result: DestinationReport) -> str:
    if result.error:
        return (f"{result.destination}: not reachable or refused ({result.error}); {result.pending} record(s) wait "
                f"for `weightgate track sync`")
    return f"{result.destination}: {len(result.mirrored)} mirrored, {result.skipped} already there"


def mirror_finished_job(ctx, kind: str, state: str) -> None:
    """The job process's hook (engine/job_process.py names it): at the end of any job of a
    workspace with [tracking], mirror this job's journal (a training job) and whatever eval run or
    version is new; a tracker that fails becomes a warning in the journal, never the job's failure."""

    ws = ctx.open_workspace()
    live = None
    if kind == "train":
        events, _ = read_events(ctx.journal.path)
        live = (ctx.job_dir, events, state)
    report = sync_workspace(ws, live=live)
    for result in report.destinations:
        if result.error:
            ctx.log(f"tracking: {describe(result)}; the journal keeps everything", level="warning")
        elif result.mirrored:
            ctx.log(f"tracking: {describe(result)}")


def mirror_releases(ws: Workspace, log: Callable[[str], None]) -> None:
    """After aliases moved outside a job (promote, rollback, alias): the registry's versions to
    the trackers, if any is configured; a failure is said through `log`, never raised."""
    try:
        config = tracking_config(ws)
        if not config.enabled:
            return
        report = sync_workspace(ws, kinds=("release",), config=config)
    except Exception as exc:  # noqa: BLE001 - a tracker never fails a release action
        log(f"warning: tracking: not mirrored ({_reason(exc)}); run `weightgate track sync` later")
        return
    for result in report.destinations:
        if result.error:
            log(f"warning: tracking: {describe(result)}")
