"""Training runs on disk: .weightgate/adapters/<run_id>/run.json (+ checkpoints/, best/).

run.json holds everything a resume or a torchrun worker needs (the resolved config, the model
directory, precision, data files and digest, batch plan, step counts, the fingerprints at the
start) and, once known, the outcome. Written atomically; torch-free.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.jobs import events_path, read_status

RUN_FILE = "run.json"
# restore_failed and diverged runs are not resumed: their checkpoints are not to be trusted further.
RESUMABLE = ("running", "stopped", "failed")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def run_dir(ws, run_id: str) -> Path:
    return ws.adapters_dir / run_id


def read_run(directory: Path) -> dict:
    path = Path(directory) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("not a training run (no run.json)", path=path.parent,
                         hint="`weightgate train runs` lists the runs") from None
    except ValueError as exc:
        raise InputError(f"run.json is not valid JSON: {exc}", path=path) from None


def write_run(directory: Path, data: dict) -> None:
    data = {**data, "updated": time.time()}
    write_atomic(Path(directory) / RUN_FILE, json.dumps(data, indent=2, default=str) + "\n")


def update_run(directory: Path, **changes) -> dict:
    data = read_run(directory)
    data.update(changes)
    write_run(directory, data)
    return data


def list_runs(ws) -> list[dict]:
    """Every training run, newest first, with its live state (a run whose job died says so)."""

    runs = []
    if not ws.adapters_dir.is_dir():
        return runs
    for directory in ws.adapters_dir.iterdir():
        if not (directory / RUN_FILE).is_file():
            continue
        try:
            data = read_run(directory)
        except InputError as exc:
            runs.append({"run_id": directory.name, "status": "unreadable", "error": str(exc), "created": 0})
            continue
        status = data.get("status", "?")
        job_id = (data.get("job_ids") or [None])[-1]
        if status == "running" and job_id:
            try:
                job = read_status(ws.jobs_dir / job_id)
                if job.is_terminal:
                    status = "interrupted"   # the job is gone: resumable from the last checkpoint
            except InputError:
                status = "interrupted"
        outcome = data.get("outcome") or {}
        if status == "running" or not outcome:
            # run.json gets its outcome only at the end (a resume may leave the last stop's):
            # while the run lives, how far it got and its best checkpoint are in its journals.
            outcome = {**outcome, **journal_outcome(ws.jobs_dir, data.get("job_ids") or [])}
        runs.append({"run_id": data.get("run_id", directory.name), "status": status, "created": data.get("created", 0),
                     "job": job_id, "method": data.get("method"), "precision": data.get("precision"),
                     "objective": data.get("objective") or "sft",
                     "device": data.get("device"),
                     "steps": outcome.get("step"), "total_steps": data.get("total_steps"),
                     "best_step": outcome.get("best_step"), "best_val_loss": outcome.get("best_val_loss"),
                     "best": str(directory / "best") if (directory / "best").is_dir() else None,
                     "nproc": data.get("nproc", 1), "message": outcome.get("message", "")})
    runs.sort(key=lambda r: (r.get("created") or 0, r["run_id"]), reverse=True)
    return runs


def journal_outcome(jobs_dir: Path, job_ids: list[str]) -> dict:
    """The step reached and the best checkpoint so far, read from the journals of the jobs that
    ran this run (in order: a resume continues the step count and the best of the run before)."""
    found: dict = {}
    for job_id in job_ids:
        try:
            events, _ = read_events(events_path(Path(jobs_dir) / job_id))
        except (OSError, InputError):
            continue
        for event in events:
            payload = event.payload
            step = None
            if event.kind == "progress" and payload.get("unit", "step") == "step":
                step = payload.get("done")
            elif event.kind == "metric":
                step = (payload.get("values") or {}).get("step", payload.get("step"))
            elif (event.kind == "artifact" and payload.get("label") == "checkpoint"
                    and payload.get("is_best") and payload.get("val_loss") is not None):
                found["best_step"], found["best_val_loss"] = payload.get("step"), payload["val_loss"]
            if isinstance(step, (int, float)) and not isinstance(step, bool):
                found["step"] = max(int(step), found.get("step") or 0)
    return found


def resolve_resume(ws, wanted: str | None) -> Path:
    """The run to resume: `wanted` (an id or unique prefix) or the newest resumable one."""
    runs = list_runs(ws)
    if wanted and wanted != "last":
        matches = [r for r in runs if r["run_id"] == wanted] or [r for r in runs if r["run_id"].startswith(wanted)]
        if len(matches) != 1:
            raise InputError(f"{'no run' if not matches else str(len(matches)) + ' runs'} match {wanted!r}",
                             path=ws.adapters_dir, hint="`weightgate train runs` lists the runs")
        return run_dir(ws, matches[0]["run_id"])
    for run in runs:
        if run["status"] in RESUMABLE + ("interrupted",):
            return run_dir(ws, run["run_id"])
    raise InputError("no run to resume", path=ws.adapters_dir,
                     hint="start one with `weightgate train start`; finished runs are not resumed")
