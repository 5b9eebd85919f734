"""Jobs as a person reads them in a terminal: journal events and the jobs table in human units
(29 m 00 s, 1.5 GiB, 3.2 step/s), and `jobs --watch`, a table redrawn in place that rings the
bell when a job ends. `--json` never comes here: it keeps the journal's raw values."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from weightgate.core.engine.views import JobRow, JobRowReader
from weightgate.tui.widgets.units import human_bytes, human_eta

# --- values -----------------------------------------------------------------------------------


def human_value(key: str, value: Any) -> str:
    """One value of an event, in the unit its name says (memory_bytes, eta_s, tokens_per_s, p95_ms)."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float)):
        if key.endswith("_per_s"):
            unit = key[: -len("_per_s")].rpartition("_")[2] or "unit"
            if unit == "bytes":
                return f"{human_bytes(value)}/s"
            return f"{value:,.0f} {'tok' if unit == 'tokens' else unit}/s" if value >= 100 else \
                f"{value:.3g} {'tok' if unit == 'tokens' else unit}/s"
        if key.endswith("bytes"):
            return human_bytes(value)
        if key.endswith("_ms"):
            return f"{value:,.0f} ms"
        if key.endswith("_s") or key in ("seconds", "elapsed", "duration"):
            return human_eta(value)
        if isinstance(value, float):
            return f"{value:.4g}"
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, dict):   # a nested record: its first few fields, in parentheses
        return "(" + ", ".join(human_pair(str(k), v) for k, v in list(value.items())[:4]) + (
            ", ..." if len(value) > 4 else "") + ")"
    if isinstance(value, list):
        return f"{len(value)} items" if len(value) > 3 else ", ".join(human_value(key, v) for v in value)
    return str(value)


def human_pair(key: str, value: Any) -> str:
    """`memory 1.5 GiB`, `eta 29 m 00 s`, `1,100 tok/s`: the unit moves from the name to the value."""
    shown = human_value(key, value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"{key} {shown}"
    if key.endswith("_per_s"):
        return shown
    for suffix in ("_bytes", "_ms", "_s"):
        if key.endswith(suffix) and len(key) > len(suffix):
            return f"{key[: -len(suffix)]} {shown}"
    return f"{key} {shown}"


def key_values(values: dict, skip: tuple[str, ...] = ()) -> str:
    return "  ".join(human_pair(key, value) for key, value in values.items() if key not in skip and value is not None)


def rate_text(rate: float | None, unit: str) -> str:
    """3.2 step/s, or 45 s/step when a unit takes longer than a second."""
    if not rate:
        return "-"
    if rate >= 1:
        return f"{rate:,.1f} {unit}/s"
    return f"{human_eta(1 / rate)}/{unit}"


# --- attach -----------------------------------------------------------------------------------


class EventPrinter:
    """Journal events as lines; remembers the last progress to show the rate between two."""

    def __init__(self) -> None:
        self._last_progress: tuple[float, float] | None = None   # (time, done)

    def line(self, event: Any) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        return f"{stamp} #{event.seq:<5} {event.kind:<8} {self.text(event)}".rstrip()

    def text(self, event: Any) -> str:
        payload = event.payload
        if event.kind == "progress":
            return self._progress(event.time, payload)
        if event.kind == "metric":
            values = payload.get("values", payload)
            return key_values(values)
        if event.kind == "artifact":
            label = payload.get("label") or "artifact"
            extra = key_values(payload, skip=("label", "path"))
            return f"{label}: {payload.get('path', '')}" + (f"  ({extra})" if extra else "")
        if event.kind == "result":
            data = payload.get("data")
            summary = key_values(data) if isinstance(data, dict) else ("" if data is None else human_value("", data))
            return f"{payload.get('status', 'ended')}" + (f": {summary}" if summary else "")
        if payload.get("message"):
            return str(payload["message"])
        return key_values(payload) or json.dumps(payload, default=str)

    def _progress(self, at: float, payload: dict) -> str:
        done, total, unit = payload.get("done"), payload.get("total"), payload.get("unit") or ""
        text = f"{done:g}/{total:g} {unit}" if isinstance(total, (int, float)) and isinstance(done, (int, float)) \
            else f"{done} {unit}"
        if isinstance(total, (int, float)) and total and isinstance(done, (int, float)):
            text += f" ({100 * done / total:.0f}%)"
        if isinstance(done, (int, float)):
            eta = payload.get("eta_s")
            rate = None
            if isinstance(eta, (int, float)) and eta > 0 and isinstance(total, (int, float)) and total > done:
                rate = (total - done) / eta   # the job's own pace: agrees with the ETA beside it
            elif self._last_progress and at > self._last_progress[0] and done > self._last_progress[1]:
                rate = (done - self._last_progress[1]) / (at - self._last_progress[0])
            if rate:
                text += f"  {rate_text(rate, unit or 'unit')}"
            self._last_progress = (at, done)
        if payload.get("eta_s") is not None:
            text += f"  eta {human_eta(payload['eta_s'])}"
        if payload.get("message"):
            text += f"  {payload['message']}"
        return text.strip()


# --- the jobs table -------------------------------------------------------------------------

COLUMNS = ("ID", "KIND", "STATE", "PROGRESS", "ETA", "RATE", "STARTED", "NOTE")


def row_cells(row: JobRow, now: float) -> list[str]:
    status, progress = row.status, row.progress
    started = status.started or status.created
    when = time.strftime("%m-%d %H:%M:%S", time.localtime(started)) if started else "-"
    if progress is None:
        done = "-"
    elif progress.fraction is not None:
        done = f"{progress.label()} {100 * progress.fraction:.0f}%"
    else:
        done = progress.label()
    eta = row.eta_s(now)
    if status.is_terminal and status.duration_s is not None:
        eta_cell = f"took {human_eta(status.duration_s)}"
    else:
        eta_cell = human_eta(eta) if eta is not None else "-"
    rate = rate_text(row.rate_per_s(), progress.unit) if progress else "-"
    note = status.error or status.detail or ""
    return [status.job_id, status.kind, status.state, done, eta_cell, rate, when, note]


def jobs_table(rows: list[JobRow], now: float, width: int | None = None) -> list[str]:
    """The table's lines, each cut to `width` (the note last, so the columns stay aligned)."""
    cells = [list(COLUMNS)] + [row_cells(row, now) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    lines = []
    for line in cells:
        text = "  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1]
        text = text.rstrip()
        if width and len(text) > width:
            text = text[: max(1, width - 1)] + "…"
        lines.append(text)
    return lines


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


# --- jobs --watch ---------------------------------------------------------------------------

CLEAR = "\x1b[H\x1b[2J"
BELL = "\a"


def watch(jobs_dir: Path, *, interval_s: float = 1.0, until_idle: bool = False, bell: bool = True,
          out: TextIO | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Redraw the jobs table every interval until Ctrl-C (or, with until_idle, until no job is
    queued or running); ring the bell and say so when a job ends while watched."""
    out = out or sys.stdout
    reader = JobRowReader()
    live_before: set[str] | None = None
    redraw = out.isatty()
    try:
        while True:
            rows = reader.read(jobs_dir)
            now = time.time()
            ended = [row for row in rows if row.status.is_terminal and live_before is not None
                     and row.job_id in live_before]
            live_before = {row.job_id for row in rows if not row.status.is_terminal}
            frame = [time.strftime("%H:%M:%S", time.localtime(now))
                     + f"  {len(live_before)} live, {len(rows)} jobs  (Ctrl-C stops watching; jobs go on)"]
            frame += jobs_table(rows, now, terminal_width()) if rows else ["no jobs yet"]
            frame += [f"job {row.job_id} ({row.status.kind}) {row.status.state}" for row in ended]
            out.write((CLEAR if redraw else "") + "\n".join(frame) + "\n")
            if ended and bell:
                out.write(BELL)
            out.flush()
            if until_idle and not live_before:
                return 0
            sleep(interval_s)
    except KeyboardInterrupt:
        out.write("\n")
        return 0
