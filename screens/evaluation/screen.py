"""Phase 4 · Evaluation: the eval sets, the runs, the baseline, freshness, determinism, latency.

Above the items: the eval sets as they are on disk today, and the runs (newest first; B marks a
baseline; a run whose model, precision, adapter or eval set changed since is marked stale; a
running eval job shows its cases done and ETA live). Keys: e runs the task set, g the general
set (detached jobs: they go on after you quit); b marks the selected run as the baseline; space
picks runs A and B, c opens them side by side in Compare.
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message

from weightgate.core.evaluation.runner import mark_baseline
from weightgate.core.evaluation.views import RunRow, run_rows
from weightgate.screens.evaluation.runs_table import RunsTable
from weightgate.tui.widgets.base_screen import PhaseScreen
from weightgate.tui.widgets.facts import FactsPanel
from weightgate.tui.widgets.units import human_eta
from weightgate.tui.widgets.weights_actions import error_text

EVAL_SETS = [
    ("task set", "eval.size"),
    ("hard / edge", "eval.hard_edge"),
    ("general set", "eval.general_set"),
]
RUNS_INTERVAL_S = 3.0


def first_batch_text(status) -> str:
    """What a running eval job without progress yet is doing: cases are counted a batch at a
    time, so before the first batch the row says so, with the time it has taken so far."""
    if status.state == "queued":
        return "queued"
    started = status.started or status.created
    elapsed = f" · {human_eta(time.time() - started)}" if started else ""
    return f"loading, first batch{elapsed}"


class RunsRead(Message):
    def __init__(self, rows: list, error: str | None = None) -> None:
        super().__init__()
        self.rows, self.error = rows, error


class EvaluationScreen(PhaseScreen):
    TARGET = "phase-4"
    PHASE = 4
    HELP = ("Evaluation: the eval set's size and hard/edge cases, the runs and their baseline, freshness after every "
            "change, determinism, latency. e runs the task set, g the general set, b marks a baseline, space picks "
            "two runs and c compares them.")

    BINDINGS = [
        Binding("e", "eval('task')", "Eval task", tooltip="Run the task set on the workspace's model (a job)"),
        Binding("g", "eval('general')", "Eval general", tooltip="Run the general set (a job)"),
        Binding("b", "baseline", "Baseline", tooltip="Mark the selected run as the baseline"),
        Binding("space", "mark", "Pick A/B", tooltip="Pick the selected run as A, then B, for Compare"),
        Binding("c", "compare", "Compare", tooltip="Open the picked runs side by side"),
    ]
    STATEFUL_ACTIONS = (*PhaseScreen.STATEFUL_ACTIONS, "eval", "baseline", "mark", "compare")

    def compose_panels(self) -> ComposeResult:
        yield FactsPanel("Eval sets", EVAL_SETS, source="evals/task.jsonl · evals/general.jsonl", id="eval-sets")
        yield RunsTable(id="runs")

    @property
    def runs(self):
        return self.query_one("#runs")

    def on_mount(self) -> None:
        super().on_mount()
        self._reading = False
        self._rows: list = []
        self.watch(self.app, "job_rows", lambda _: self._show_rows())
        self.watch(self.app, "report", lambda _: self.reload())
        self.set_interval(RUNS_INTERVAL_S, self.reload)

    def on_screen_resume(self) -> None:
        self.reload()

    def reload(self) -> None:
        workspace = getattr(self.app, "workspace", None)
        if workspace is None or self._reading or not self.is_current:
            return
        self._reading = True
        self.run_worker(lambda: self._read(workspace), thread=True, group="eval-runs", exit_on_error=False)

    def _read(self, workspace) -> None:
        try:
            self.post_message(RunsRead(run_rows(workspace)))
        except Exception as exc:  # noqa: BLE001 - shown as a notification
            self.post_message(RunsRead([], f"{type(exc).__name__}: {exc}"))

    def on_runs_read(self, message: RunsRead) -> None:
        self._reading = False
        if message.error:
            self.notify(message.error, title="Cannot read the runs", severity="error")
        self._rows = message.rows
        self._show_rows()

    def _show_rows(self) -> None:
        """The runs, with a live row for each eval job still running."""

        live = []
        for job in getattr(self.app, "job_rows", None) or []:
            if job.status.kind == "eval" and job.status.state in ("queued", "running"):
                progress = job.progress
                eta_s = getattr(progress, "eta_s", None)
                eta = f" · ETA {human_eta(eta_s)}" if eta_s else ""
                done = progress.label() if progress else first_batch_text(job.status)
                live.append((f"job:{job.job_id}", RunRow(job.job_id, job.job_id, "", "eval job", "running",
                                                         None, None, None, False, None, f"{done}{eta}")))
        by_id = {row.id: row for row in self._rows}
        try:
            table = self.runs
        except NoMatches:
            return
        table.marked = [key for key in table.marked if key in by_id]
        table.show(live + [(row.id, row) for row in self._rows])
        self.update_bindings()

    # --- keys -----------------------------------------------------------------------------------

    def edit_target(self):
        """E opens the task eval set this screen is about (settings.eval_set)."""
        from weightgate.core.engine.workspace import Workspace, setting_path  # lazy: only when E is pressed

        workspace = getattr(self.app, "workspace", None) or Workspace(self.app.workspace_root)
        try:
            config = workspace.config()
        except Exception:  # noqa: BLE001 - a broken weightgate.toml: the default set
            config = {}
        return setting_path(workspace, config, "eval_set", "evals/task.jsonl")

    def _selected_run(self):
        try:
            key = self.runs.selected_key
        except NoMatches:
            return None
        return None if key is None or key.startswith("job:") else key

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("baseline", "mark"):
            return True if self._selected_run() is not None else None
        if action == "compare":
            try:
                return True if len(self.runs.marked) == 2 or len(self._rows) >= 2 else None
            except NoMatches:
                return None
        return super().check_action(action, parameters)

    def action_eval(self, set_name: str) -> None:
        self.app.start_job("eval", {"set": set_name, "reuse": True}, show_jobs=False)

    def action_baseline(self) -> None:
        run_id = self._selected_run()
        workspace = self.app.workspace
        if run_id is None or workspace is None:
            return

        def mark() -> None:
            try:
                outcome = mark_baseline(workspace, run_id)
            except Exception as exc:  # noqa: BLE001 - notified
                self.app.call_from_thread(self.notify, error_text(exc), title="Could not mark the baseline",
                                          severity="error")
                return
            needed = outcome.get("finetuning_needed")
            extra = "" if needed is None else f"; fine-tuning {'needed' if needed else 'not needed'}"
            self.app.call_from_thread(self.notify, f"{run_id} is the baseline{extra}", title="Baseline")
            self.app.call_from_thread(self.app.refresh_report)
        self.run_worker(mark, thread=True, group="eval-baseline", exit_on_error=False)

    def action_mark(self) -> None:
        self.runs.toggle_mark()
        self.update_bindings()

    def action_compare(self) -> None:
        marked = list(self.runs.marked)
        if len(marked) == 2:
            self.app.compare_request = (marked[0], marked[1])
        self.app.goto("compare")

