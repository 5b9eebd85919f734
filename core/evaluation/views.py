"""What the Evaluation screen shows of the runs: one row per run, newest first, and whether it
was taken on today's model, precision, adapter and eval set.
"""

from __future__ import annotations

from dataclasses import dataclass

from weightgate.core.engine.fingerprints import Fingerprints
from weightgate.core.evaluation.runner import current_mismatch
from weightgate.core.evaluation.runs import list_runs


@dataclass(frozen=True)
class RunRow:
    id: str
    name: str
    set: str
    kind: str
    status: str
    score: float | None
    passed: int | None
    cases: int | None
    baseline: bool
    fresh: bool | None = None         # matches today's model, precision, adapter and eval set
    progress: str = ""                # a running job: "12/30 · ETA 40s"


def run_rows(ws) -> list[RunRow]:
    """Every run of the workspace, newest first (thread worker: reads files)."""

    prints = Fingerprints(ws)
    rows = []
    for run in list_runs(ws):
        summary = run.summary or {}
        try:
            fresh = not current_mismatch(ws, run, prints)
        except Exception:  # noqa: BLE001 - an unreadable input: unknown, not a crash
            fresh = None
        rows.append(RunRow(run.id, run.name, run.set, str(run.config.get("kind", "eval")), run.status,
                           summary.get("score"), summary.get("passed"), summary.get("cases"), run.baseline, fresh))
    return rows
