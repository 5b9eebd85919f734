"""What the Fine-tuning screen shows besides the live journal: the journals of a resumed run's
earlier jobs, the keep-or-reject gate's newest verdict and its comparisons, and the data
check's full report.
"""

from __future__ import annotations

import json
from pathlib import Path

from weightgate.core.engine.events import read_events
from weightgate.core.evaluation.reports import latest_report
from weightgate.core.training.keep_or_reject import SETS as GATE_SETS


def earlier_journals(job_dir: Path, job_id: str) -> list[Path]:
    """The journals of the jobs that ran the same training run before this one (a resume)."""

    try:
        events, _ = read_events(job_dir / "events.jsonl")
    except OSError:
        return []
    for event in events:
        payload = event.payload or {}
        if event.kind == "artifact" and payload.get("label") == "run":
            try:
                spec = json.loads((Path(payload["path"]) / "run.json").read_text(encoding="utf-8"))
            except (OSError, ValueError, KeyError):
                return []
            ids = [str(i) for i in spec.get("job_ids") or []]
            before = ids[:ids.index(job_id)] if job_id in ids else []
            return [job_dir.parent / i / "events.jsonl" for i in before]
    return []


def gate_result(ws, report) -> dict | None:
    """The newest gate verdict: the newest `gate` report (.weightgate/reports/gate-*.json, every
    verdict, a rejected challenger's too), else tune.gate's evidence values."""

    data = latest_report(ws, "gate") if ws is not None else None
    if data is None and report is not None:
        try:
            status = report.item("tune.gate")
        except KeyError:
            status = None
        data = dict(status.values) if status is not None and status.values else None
    return data


def gate_pairs(result: dict | None) -> dict[str, tuple[str, str]]:
    """set name -> (base run, adapter run) of the gate's comparisons (run A, run B in Compare)."""
    pairs = {}
    for set_name in GATE_SETS:
        row = (result or {}).get(set_name)
        if isinstance(row, dict) and row.get("base_run") and row.get("adapter_run"):
            pairs[set_name] = (str(row["base_run"]), str(row["adapter_run"]))
    return pairs


def read_data_report(ws) -> tuple[dict | None, Path | None, str | None]:
    """(report.json's data, its path, why it cannot be shown)."""
    if ws is None:
        return None, None, "no workspace"
    path = ws.state_dir / "data" / "report.json"   # core.training.data.prepare.save_latest_report
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, path, "No data check yet: d checks the training data (weightgate data check)."
    except (OSError, ValueError) as exc:
        return None, path, f"{path} cannot be read: {exc}. Run the data check again (d)."
    if not isinstance(data, dict):
        return None, path, f"{path} is not a data-check report. Run the data check again (d)."
    return data, path, None
