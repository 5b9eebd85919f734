"""The headless demo's timing table: each phase's wall time and the share of it spent generating,
training, hashing and loading, measured, not guessed: every job started during the phase reports
its own totals in its result (`timing`, core.engine.job_process), and the steps the walkthrough
runs in its own process are timed by the same timers (core.engine.timers)."""

from __future__ import annotations

from pathlib import Path

from weightgate.core.engine import timers
from weightgate.core.engine.jobs import events_path
from weightgate.core.engine.jsonl import iter_jsonl
from weightgate.core.engine.workspace import Workspace


def job_ids(ws: Workspace) -> set[str]:
    return {p.name for p in ws.jobs_dir.iterdir() if p.is_dir()} if ws.jobs_dir.is_dir() else set()


def job_timing(job_dir: Path) -> dict:
    """The `timing` a job's result carries (empty when it has none: still running, crashed)."""
    path = events_path(job_dir)
    if not path.exists():
        return {}
    for line in iter_jsonl(path, allow_partial_tail=True):
        event = line.value if isinstance(line.value, dict) else {}
        if event.get("kind") == "result":
            data = (event.get("payload") or {}).get("data") or {}
            return data.get("timing") or {}
    return {}


def phase_timing(ws: Workspace, jobs_before: set[str], in_process: dict, wall_s: float) -> dict:
    """Seconds per category over the jobs started since `jobs_before` plus `in_process` (from
    timers.since), with each category's share of the phase's wall time."""
    seconds = {category: float(in_process.get(category, 0.0)) for category in timers.CATEGORIES}
    jobs = sorted(job_ids(ws) - jobs_before)
    for job_id in jobs:
        timing = job_timing(ws.jobs_dir / job_id)
        for category in timers.CATEGORIES:
            seconds[category] += float(timing.get(f"{category}_s") or 0.0)
    return {"wall_s": round(wall_s, 1), "jobs": len(jobs),
            **{f"{category}_s": round(value, 6) for category, value in seconds.items()},
            **{f"{category}_pct": round(100 * value / wall_s, 1) if wall_s > 0 else 0.0
               for category, value in seconds.items()}}


def timing_table(rows: list[tuple[int, str, dict]]) -> str:
    """One line per phase: wall time, then each category's seconds and share of it."""
    header = f"{'phase':<22} {'wall':>8}" + "".join(f" {category:>16}" for category in timers.CATEGORIES)
    lines = [header, "-" * len(header)]
    for number, title, timing in rows:
        cells = "".join(f" {timing.get(f'{c}_s', 0):>7.1f} s {timing.get(f'{c}_pct', 0):>4.0f} %"
                        for c in timers.CATEGORIES)
        lines.append(f"{f'{number} {title}':<22} {timing.get('wall_s', 0):>6.1f} s{cells}")
    return "\n".join(lines)

