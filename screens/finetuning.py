"""Phase 5 · Fine-tuning: the data checks, the run, its loss, its checkpoints and the gate.

Above the items: the training panel follows the newest `train` job through its journal (a file,
never a pipe: the run goes on when the TUI or the SSH connection goes away). The first read
replays the whole history, including the jobs of the same run before a resume, so a TUI
restarted mid-run shows every step; then it follows live: the loss chart (train as a braille
line, validation as diamonds, the best one green; m toggles smoothing), step / epoch / lr /
grad norm / tokens/s / memory / ETA, the checkpoints with the best marked, and the last log
lines. Below it: the data checks and the keep-or-reject gate as the checklist has them.
Keys: d checks the training data and writes the cleaned split (a job), f runs the few-shot variant
(prompting first), s checks and splits the data and starts a run, x stops the run (SIGTERM: a
checkpoint is saved; resume later), u resumes the newest stopped run, g runs the keep-or-reject
gate on the newest adapter, m toggles smoothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual.widgets import Static

from tui.widgets.base_screen import PhaseScreen
from tui.widgets.facts import FactsPanel
from tui.widgets.journal_tail import JournalTail
from tui.widgets.units import human_bytes

DATA_FACTS = [
    ("format", "tune.format"),
    ("duplicates", "tune.dedup"),
    ("eval leakage", "tune.leakage"),
    ("token lengths", "tune.token_lengths"),
    ("PII", "tune.pii"),
    ("balance", "tune.balance"),
    ("split", "tune.split"),
    ("gate", "tune.gate"),
]
ACTIVE_STATES = ("queued", "running")


def _duration(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def stats_text(history, state: str, job_id: str | None) -> Content:
    latest = history.latest
    if not latest and not history.total:
        return Content.assemble(("No training run yet. ", "bold"),
                                ("Run the data checks (weightgate data check), then weightgate train; "
                                 "the run appears here live.", "$text-muted"))
    total = history.total or "?"
    parts = [(f"{state} ", "bold"), (f"job {job_id}  " if job_id else "", "$text-muted"),
             f"step {latest.get('step', history.done)}/{total}"]
    if latest.get("epoch") is not None:
        parts.append(f"  epoch {latest['epoch']:.2f}")
    if latest.get("loss") is not None:
        parts.append(f"  loss {latest['loss']:.4f}")
    if history.val:
        last = max(history.val)
        parts.append(f"  val {history.val[last]:.4f}")
    if latest.get("lr") is not None:
        parts.append(f"  lr {latest['lr']:.2e}")
    if latest.get("grad_norm") is not None:
        parts.append(f"  grad {latest['grad_norm']:.3g}")
    if latest.get("tokens_per_s"):
        parts.append(f"  {latest['tokens_per_s']:,.0f} tok/s")
    if latest.get("memory_bytes"):
        parts.append(f"  mem {human_bytes(latest['memory_bytes'])}")
    if state in ACTIVE_STATES and (latest.get("eta_s") is not None or history.eta_s is not None):
        parts.append(f"  ETA {_duration(latest.get('eta_s', history.eta_s))}")
    lines = [Content.assemble(*parts)]
    if history.result:
        message = history.result.get("message") or history.result.get("status") or ""
        lines.append(Content.assemble(("result: ", "bold"), str(message)))
    if history.error:
        lines.append(Content.assemble(("error: ", "bold #e15759"), history.error))
    return Content("\n").join(lines)


def checkpoints_text(history) -> Content:
    rows = history.checkpoint_rows()
    if not rows:
        return Content.assemble(("Checkpoints\n", "bold"), ("none yet", "$text-muted"))
    lines = [Content.assemble(("Checkpoints", "bold"))]
    for step, val, best in rows[:8]:
        val_text = f"val {val:.4f}" if isinstance(val, (int, float)) else ""
        lines.append(Content.assemble(("★ " if best else "  ", "bold #59a14f"), f"step {step:>5}  {val_text}",
                                      (" best" if best else "", "#59a14f")))
    return Content("\n").join(lines)


def logs_text(history, count: int = 6) -> Content:
    lines = [Content.assemble(("Log", "bold"))]
    for level, message in history.logs[-count:]:
        style = "#e15759" if level == "error" else ("#edc948" if level == "warning" else "")
        lines.append(Content.assemble((message[:160], style)))
    return Content("\n").join(lines)


def earlier_journals(job_dir: Path, job_id: str) -> list[Path]:
    """The journals of the jobs that ran the same training run before this one (a resume)."""
    from core.events import read_events  # noqa: PLC0415

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


class TrainingPanel(Vertical):
    DEFAULT_CSS = """
    TrainingPanel { height: auto; border: round $panel; border-title-color: $text-muted; padding: 0 1; }
    TrainingPanel #train-chart { height: auto; margin: 1 0; }
    TrainingPanel #train-bottom { height: auto; }
    TrainingPanel #train-ckpts { width: 34; height: auto; }
    TrainingPanel #train-logs { width: 1fr; height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        from tui.widgets.loss_chart import TrainingHistory  # noqa: PLC0415

        super().__init__(**kwargs)
        self.history = TrainingHistory()
        self._events: list = []            # the followed job's events so far
        self.job_id: str | None = None
        self.state = "none"
        self.smooth = False
        self.border_title = "Training run"

    def compose(self) -> ComposeResult:
        yield Static("", id="train-stats")
        yield Static("", id="train-chart")
        with Horizontal(id="train-bottom"):
            yield Static("", id="train-ckpts")
            yield Static("", id="train-logs")
        yield JournalTail(id="train-tail")

    def on_mount(self) -> None:
        self.redraw()

    @property
    def tail(self) -> JournalTail:
        return self.query_one("#train-tail", JournalTail)

    def follow(self, job_id: str, job_dir: Path, state: str) -> None:
        from tui.widgets.loss_chart import TrainingHistory  # noqa: PLC0415

        self.state = state
        if job_id != self.job_id:
            self.job_id = job_id
            self.history = TrainingHistory()
            self._events = []
            self.border_subtitle = f"job {job_id}"
            self.tail.follow(job_id, job_dir)
        self.redraw()

    def on_journal_tail_read(self, message: JournalTail.Read) -> None:
        message.stop()
        if message.job_id != self.job_id:
            return
        self._events.extend(message.events)
        names_run = any(e.kind == "artifact" and (e.payload or {}).get("label") == "run" for e in message.events)
        if names_run and self.tail.job_dir is not None:
            # The job names its training run: replay the run's earlier jobs (before a resume)
            # first, then this job's events, so re-run steps keep their newest values.
            from core.events import read_events  # noqa: PLC0415
            from tui.widgets.loss_chart import TrainingHistory  # noqa: PLC0415

            self.history = TrainingHistory()
            for path in earlier_journals(self.tail.job_dir, message.job_id):
                try:
                    self.history.add(read_events(path)[0])
                except OSError:
                    continue
            self.history.add(self._events)
        else:
            self.history.add(message.events)
        self.redraw()

    def toggle_smoothing(self) -> None:
        self.smooth = not self.smooth
        self.redraw()

    def redraw(self) -> None:
        from tui.widgets.loss_chart import render_loss_chart  # noqa: PLC0415

        try:
            width = self.content_size.width or 80
            self.query_one("#train-stats", Static).update(stats_text(self.history, self.state, self.job_id))
            self.query_one("#train-chart", Static).update(
                render_loss_chart(self.history, max(30, width), 8, smooth=self.smooth))
            self.query_one("#train-ckpts", Static).update(checkpoints_text(self.history))
            self.query_one("#train-logs", Static).update(logs_text(self.history))
        except NoMatches:
            pass

    def on_resize(self) -> None:
        self.redraw()


class FinetuningScreen(PhaseScreen):
    TARGET = "phase-5"
    PHASE = 5
    HELP = ("Fine-tuning (only if the baseline misses the threshold): data checks, the LoRA/QLoRA run with its "
            "live loss and checkpoints, and the keep-or-reject gate. The run is a detached job: quit, reconnect, "
            "come back, and the whole history replays. x stops it with a checkpoint, u resumes, m smooths the loss.")

    BINDINGS = [
        Binding("d", "data_check", "Data check", tooltip="Check the training data and write the cleaned split"),
        Binding("f", "fewshot", "Few-shot", tooltip="Prompting first: the task set with few-shot examples (a job)"),
        Binding("s", "start_run", "Train", tooltip="Check and split the training data, then start a LoRA/QLoRA run"),
        Binding("g", "gate", "Gate", tooltip="Keep or reject the newest adapter: task and general sets (a job)"),
        Binding("m", "smooth", "Smooth loss", tooltip="Toggle the exponential moving average of the train loss"),
        Binding("x", "stop_run", "Stop run", tooltip="SIGTERM: the run saves a checkpoint and stops (resume with u)"),
        Binding("u", "resume_run", "Resume", tooltip="Continue the newest stopped run from its last checkpoint"),
    ]
    STATEFUL_ACTIONS = (*PhaseScreen.STATEFUL_ACTIONS, "data_check", "start_run", "stop_run", "resume_run", "gate")

    def compose_panels(self) -> ComposeResult:
        yield TrainingPanel(id="training")
        yield FactsPanel("Data checks and the gate", DATA_FACTS, source="weightgate data check · weightgate tune gate",
                         id="tune-facts")

    @property
    def panel(self) -> TrainingPanel:
        return self.query_one("#training", TrainingPanel)

    def on_mount(self) -> None:
        super().on_mount()
        self._preparing = False
        self.watch(self.app, "job_rows", self._jobs_changed)

    def newest_train_row(self):
        for row in getattr(self.app, "job_rows", None) or []:   # newest first
            if row.status.kind == "train":
                return row
        return None

    def _jobs_changed(self, rows) -> None:
        row = self.newest_train_row()
        jobs_dir = getattr(self.app, "jobs_dir", None)
        if row is None:
            return
        job_dir = row.status.job_dir or (jobs_dir / row.job_id if jobs_dir else None)
        if job_dir is None:
            return
        try:
            self.panel.follow(row.job_id, job_dir, row.status.state)
        except NoMatches:
            return
        self.update_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        row = self.newest_train_row() if action in ("start_run", "stop_run", "resume_run", "gate") else None
        if action == "gate":
            return True if row is not None and row.status.state == "succeeded" else None
        if action == "start_run":
            return True if (row is None or row.status.is_terminal) and not getattr(self, "_preparing", False) else None
        if action == "stop_run":
            return True if row is not None and row.status.state in ACTIVE_STATES else None
        if action == "resume_run":
            return True if row is not None and row.status.state in ("cancelled", "failed", "crashed") else None
        return super().check_action(action, parameters)

    def action_start_run(self) -> None:
        workspace = self.app.workspace
        if workspace is None:
            return
        self._preparing = True
        self.update_bindings()
        self.notify("Checking and splitting the training data…", title="Train")

        def prepare() -> None:
            from tui.cli_train import _new_run_params  # noqa: PLC0415
            from tui.widgets.weights_actions import error_text  # noqa: PLC0415

            try:
                params = _new_run_params(workspace, 1, None)
            except Exception as exc:  # noqa: BLE001 - notified with its hint
                self.app.call_from_thread(self._prepared, None, error_text(exc))
                return
            self.app.call_from_thread(self._prepared, params, None)
        self.run_worker(prepare, thread=True, group="train-prepare", exit_on_error=False)

    def _prepared(self, params: dict | None, error: str | None) -> None:
        self._preparing = False
        if error is not None:
            self.notify(error, title="Cannot start training", severity="error", timeout=12)
        elif self.app.start_job("train", params, show_jobs=False):
            self.notify("The run goes on after you quit; x stops it with a checkpoint.", title="Training started")
        self.update_bindings()

    def action_data_check(self) -> None:
        # A job: the tokenizer is loaded in the job's process, not the TUI's.
        self.app.start_job("data_check", {"fix": True})

    def action_fewshot(self) -> None:
        self.app.start_job("fewshot", {"shots": 3})

    def action_gate(self) -> None:
        self.app.start_job("tune_gate", {})

    def action_smooth(self) -> None:
        self.panel.toggle_smoothing()

    def action_stop_run(self) -> None:
        row = self.newest_train_row()
        if row is not None:
            self.app.cancel_job(row.job_id)

    def action_resume_run(self) -> None:
        if self.app.start_job("train", {"resume": "last"}, show_jobs=False):
            self.notify("Resuming the newest stopped run from its last checkpoint.", title="Resume")
