"""Jobs: the list of a workspace's jobs and a monitor that follows one job's journal live.

Everything here reads files (status.json, events.jsonl) from thread workers; nothing holds a
pipe to a job, so a job started by the CLI or before an SSH drop looks exactly the same, and
attaching replays the job's whole history before following it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import DataTable, ProgressBar, RichLog, Sparkline, Static

from weightgate.core.engine.events import read_events
from weightgate.core.engine.views import JobProgress, JobRow
from weightgate.tui.messages import JobEvents
from weightgate.tui.widgets.status import job_look, on_theme_change, rich_style

if TYPE_CHECKING:
    from weightgate.core.engine.events import Event
    from weightgate.core.engine.jobs import JobStatus

TAIL_INTERVAL_S = 0.25
LOG_LINES = 2000
CURVE_POINTS = 2000
TERMINAL = ("succeeded", "failed", "cancelled", "crashed")

# --- reading (thread workers) -----------------------------------------------------------------


# --- the list ---------------------------------------------------------------------------------


def _when(epoch: float | None) -> str:
    if not epoch:
        return "—"
    if time.time() - epoch < 86400:
        return time.strftime("%H:%M:%S", time.localtime(epoch))
    return time.strftime("%m-%d %H:%M", time.localtime(epoch))


def duration(status: JobStatus) -> str:
    seconds = status.duration_s
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} m {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} m"


JOB_COLUMNS = (("id", "Job", 30), ("kind", "Kind", 10), ("state", "State", 12), ("progress", "Progress", 12),
               ("started", "Started", 9), ("duration", "Took", 8))
NARROW_DROPS = ("started", "duration", "kind")   # dropped in this order before the id gets narrower than ID_MIN
ID_MIN = 14


def job_columns(width: int) -> tuple[tuple[str, str, int], ...]:
    """The columns shown at `width` cells: id, state and progress always; on a narrow terminal the
    start time, the duration and the kind go first (today's ids name their kind), then the id is
    shortened (with an ellipsis)."""
    columns = list(JOB_COLUMNS)
    while True:
        others = sum(w for key, _, w in columns if key != "id") + 2 * len(columns) + 1
        room = width - others
        if room >= ID_MIN or not any(key in NARROW_DROPS for key, _, _ in columns):
            break
        drop = next(name for name in NARROW_DROPS if any(key == name for key, _, _ in columns))
        columns = [c for c in columns if c[0] != drop]
    return tuple((key, label, max(ID_MIN, min(w, room)) if key == "id" else w) for key, label, w in columns)


class JobTable(DataTable):
    """One row per job, newest first; the row key is the job id."""

    DEFAULT_CSS = """
    JobTable { height: auto; max-height: 40%; min-height: 4; overflow-x: hidden; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._cells: dict[str, tuple] = {}
        self.rows_by_id: dict[str, JobRow] = {}

    def on_mount(self) -> None:
        self._columns: tuple[tuple[str, str, int], ...] = ()
        self._relayout()
        on_theme_change(self, self._repaint)

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        columns = job_columns(self.size.width or self.app.size.width)
        if columns == self._columns:
            return
        keep = self.selected_id
        self._columns = columns
        self.clear(columns=True)
        for key, label, width in columns:
            self.add_column(label, key=key, width=width)
        self._cells = {}
        self.show(list(self.rows_by_id.values()))
        if keep is not None:
            self.select_job(keep)

    @property
    def shown_columns(self) -> list[str]:
        return [key for key, _, _ in self._columns]

    def _repaint(self) -> None:
        self._cells = {}  # forces a rebuild with the new theme's colours
        self.show(list(self.rows_by_id.values()))

    @property
    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001
            return None

    def select_job(self, job_id: str) -> bool:
        try:
            self.move_cursor(row=self.get_row_index(job_id))
        except Exception:  # noqa: BLE001
            return False
        return True

    def _row(self, row: JobRow) -> tuple:
        variables = self.app.theme_variables
        status = row.status
        progress = row.progress
        if progress is not None and progress.fraction is not None:
            cells = 6
            filled = round(progress.fraction * cells)
            bar = Text.assemble(("━" * filled, rich_style("primary", variables)),
                                ("━" * (cells - filled), rich_style("muted", variables)),
                                f" {progress.fraction:4.0%}", no_wrap=True)
        elif progress is not None:
            bar = Text(progress.label(), no_wrap=True)
        else:
            bar = Text("—", style=rich_style("muted", variables))
        cells = {
            "id": Text(status.job_id, no_wrap=True, overflow="ellipsis"),
            "kind": Text(status.kind, no_wrap=True, overflow="ellipsis"),
            "state": job_look(status.state).text(variables),
            "progress": bar,
            "started": Text(_when(status.started or status.created)),
            "duration": Text(duration(status)),
        }
        return tuple(cells[key] for key in self.shown_columns)

    def show(self, rows: list[JobRow]) -> None:
        keep = self.selected_id
        self.rows_by_id = {row.job_id: row for row in rows}
        ids = [row.job_id for row in rows]
        if ids == list(self._cells):
            columns = self.shown_columns
            for row in rows:
                cells = self._row(row)
                old = self._cells[row.job_id]
                for index, (column, value) in enumerate(zip(columns, cells)):
                    if old[index] != value:
                        self.update_cell(row.job_id, column, value)
                self._cells[row.job_id] = cells
            return
        self.clear()
        self._cells = {}
        for row in rows:
            cells = self._row(row)
            self._cells[row.job_id] = cells
            self.add_row(*cells, key=row.job_id)
        if keep in self._cells:
            self.select_job(keep)


# --- the monitor ------------------------------------------------------------------------------


def _event_time(event: Event) -> str:
    return time.strftime("%H:%M:%S", time.localtime(event.time))


def _format_values(values: dict) -> str:
    parts = []
    for key, value in values.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


class JobMonitor(Vertical):
    """Follows one job: title line, progress bar, latest metrics, and a log of its events.

    attach() starts from byte 0 of events.jsonl, so the first batch replays the whole history;
    then a timer reads whatever was appended every 0.25 s (read_events leaves a half-written
    last line for the next read). Reading stops once the job's `result` event has been seen.
    """

    DEFAULT_CSS = """
    JobMonitor { height: 1fr; border-top: hkey $panel; padding: 0 1; }
    JobMonitor #job-title { height: auto; }
    JobMonitor ProgressBar { height: 1; margin: 1 0 0 0; }
    JobMonitor ProgressBar Bar { width: 1fr; }
    JobMonitor #job-metrics { height: auto; }
    JobMonitor #job-curve { height: 3; margin-bottom: 1; display: none; }
    JobMonitor #job-curve.-visible { display: block; }
    JobMonitor #job-curve-label { width: 16; color: $text-muted; }
    JobMonitor Sparkline { width: 1fr; height: 3; }
    JobMonitor RichLog { height: 1fr; background: $surface; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.job_id: str | None = None
        self.job_dir: Path | None = None
        self._offset = 0
        self._busy = False
        self._replayed = False
        self.ended: str | None = None  # the result status, once seen
        self.metrics: dict[str, float] = {}
        self.metric_step: int | None = None
        self.progress: JobProgress | None = None
        self.event_count = 0
        self.log_lines: list[str] = []  # plain text of what the log shows (tests, copy)
        self.curve_key: str | None = None  # the metric drawn as a curve: loss if there is one
        self.curve: list[float] = []

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("No job selected. Press s to start a selftest job, or pick a job above.",
                                    "$text-muted"), id="job-title")
        progress = ProgressBar(total=None, show_eta=False, id="job-progress")
        progress.display = False  # shown once a job is attached: with none there is nothing to pulse for
        yield progress
        yield Static("", id="job-metrics")
        with Horizontal(id="job-curve"):
            yield Static("", id="job-curve-label")
            yield Sparkline([], id="job-sparkline")
        yield RichLog(max_lines=LOG_LINES, wrap=False, markup=False, highlight=False, id="job-log")

    def on_mount(self) -> None:
        self._timer = self.set_interval(TAIL_INTERVAL_S, self._tail, pause=True)
        self.watch(self.app, "job_rows", lambda _: self._show_title(), init=False)

    # --- attaching --------------------------------------------------------------------------

    def attach(self, job_id: str, job_dir: Path) -> None:
        if job_id == self.job_id:
            return
        self.job_id, self.job_dir = job_id, job_dir
        self._offset, self._replayed, self.ended = 0, False, None
        self.metrics, self.metric_step, self.progress, self.event_count = {}, None, None, 0
        self.log_lines = []
        self.curve_key, self.curve = None, []
        self.query_one("#job-curve").set_class(False, "-visible")
        self.query_one(RichLog).clear()
        self.query_one("#job-metrics", Static).update("")
        bar = self.query_one(ProgressBar)
        bar.update(total=None, progress=0)
        bar.display = True
        self._show_title()
        self._timer.resume()
        self._tail()

    def _tail(self) -> None:
        if self._busy or self.job_dir is None:
            return
        if self.ended is not None and self._replayed:
            self._timer.pause()
            return
        self._busy = True
        self._read(self.job_id, self.job_dir / "events.jsonl", self._offset, not self._replayed)

    @work(thread=True, group="job-tail", exit_on_error=False)
    def _read(self, job_id: str, path: Path, offset: int, replay: bool) -> None:
        try:
            events, new_offset = read_events(path, offset)
        except OSError:
            events, new_offset = [], offset
        self.post_message(JobEvents(job_id, events, new_offset, replay=replay))

    def on_job_events(self, message: JobEvents) -> None:
        message.stop()
        self._busy = False
        if message.job_id != self.job_id:
            return  # a read for a job we have since detached from
        self._offset = message.offset
        self._replayed = True
        if message.events:
            self.apply(message.events)

    # --- showing ------------------------------------------------------------------------------

    def apply(self, events: list[Event]) -> None:
        variables = self.app.theme_variables
        lines: list[Text] = []
        metrics_changed = False
        for event in events:
            self.event_count += 1
            kind, payload = event.kind, event.payload
            line: Text | None = None
            prefix = f"{_event_time(event)} #{event.seq:<4} " if event.seq else f"{_event_time(event)} !     "
            if kind == "progress":
                self.progress = JobProgress.from_payload({"done": 0, **payload})
                message = payload.get("message")
                if message:
                    line = Text(f"{prefix}progress {self.progress.label()}  {message}")
            elif kind == "metric":
                values = payload.get("values") or {}
                self.metrics.update({k: v for k, v in values.items()})
                self._extend_curve(values)
                self.metric_step = payload.get("step", self.metric_step)
                metrics_changed = True
                step = f"step {payload['step']} " if payload.get("step") is not None else ""
                line = Text(f"{prefix}metric   {step}{_format_values(values)}", style=rich_style("muted", variables))
            elif kind == "log":
                level = payload.get("level", "info")
                color = {"warning": "warning", "error": "error", "debug": "muted"}.get(level, "foreground")
                line = Text(f"{prefix}log      {payload.get('message', '')}", style=rich_style(color, variables))
            elif kind == "artifact":
                label = payload.get("label") or "artifact"
                line = Text(f"{prefix}artifact {label}: {payload.get('path', '')}", style=rich_style("accent", variables))
            elif kind == "error":
                line = Text(f"{prefix}error    {payload.get('message', '')}", style=rich_style("error", variables, bold=True))
            elif kind == "result":
                self.ended = str(payload.get("status", "?"))
                look = job_look(self.ended)
                data = payload.get("data") or {}
                tail = f"  {_format_values(data)}" if data else ""
                line = Text(f"{prefix}result   {look.label}{tail}", style=rich_style(look.color, variables, bold=True))
            if line is not None:
                lines.append(line)
        # A long replay keeps every number (above) but writes only the lines the log can hold.
        log = self.query_one(RichLog)
        for line in lines[-LOG_LINES:]:
            log.write(line)
        self.log_lines.extend(line.plain for line in lines[-LOG_LINES:])
        del self.log_lines[:-LOG_LINES]
        bar = self.query_one(ProgressBar)
        if self.progress is not None:
            bar.update(total=self.progress.total, progress=self.progress.done)
        if self.ended == "succeeded" and self.progress is not None and self.progress.total:
            bar.update(progress=self.progress.total)
        if metrics_changed:
            self.query_one("#job-metrics", Static).update(self.metrics_text())
            self._show_curve()
        self._show_title()

    def _extend_curve(self, values: dict) -> None:
        if self.curve_key is None:
            numeric = [key for key, value in values.items() if isinstance(value, (int, float))]
            self.curve_key = "loss" if "loss" in numeric else numeric[0] if numeric else None
        value = values.get(self.curve_key) if self.curve_key else None
        if isinstance(value, (int, float)) and value == value:  # NaN is logged, not drawn
            self.curve.append(float(value))
            del self.curve[:-CURVE_POINTS]

    def _show_curve(self) -> None:
        visible = len(self.curve) >= 2
        self.query_one("#job-curve").set_class(visible, "-visible")
        if visible:
            label = f"{self.curve_key}\n{max(self.curve):.4g} max\n{min(self.curve):.4g} min"
            self.query_one("#job-curve-label", Static).update(label)
            self.query_one(Sparkline).data = list(self.curve)

    def metrics_text(self) -> Content:
        if not self.metrics:
            return Content("")
        step = f"step {self.metric_step}  " if self.metric_step is not None else ""
        parts = [Content.assemble((f"{key} ", "$text-muted"), (f"{value:.4g}" if isinstance(value, float) else str(value), "bold"))
                 for key, value in self.metrics.items()]
        return Content.assemble(("latest ", "$text-muted"), step, Content("   ").join(parts))

    def _show_title(self) -> None:
        if self.job_id is None:
            return
        rows = {row.job_id: row for row in getattr(self.app, "job_rows", None) or []}
        row = rows.get(self.job_id)
        state = self.ended or (row.status.state if row else "…")
        look = job_look(state)
        kind = row.status.kind if row else ""
        progress = f" · {self.progress.label()}" if self.progress is not None else ""
        took = f" · {duration(row.status)}" if row else ""
        error = ""
        if row is not None and row.status.error and state in ("failed", "crashed"):
            error = f"\n{row.status.error}"
        self.title_text = Content.assemble(
            (self.job_id, "bold"), (f"  {kind}", "$text-muted"), "  ", look.content(bold=True),
            progress, took, (error, "$error"),
            (f"  · {self.event_count} events", "$text-muted"),
        )
        self.query_one("#job-title", Static).update(self.title_text)

    @property
    def state_text(self) -> str:
        content = getattr(self, "title_text", None)
        return content.plain if content is not None else ""
