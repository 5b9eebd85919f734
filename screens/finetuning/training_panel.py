"""The Fine-tuning screen's training panel: the followed `train` job's stats, its loss chart
(smoothed by default, the raw loss faint behind it; another run may be overlaid), its
checkpoints with the best marked, and its last log lines.

It follows the job through its journal (JournalTail); the first read replays the whole history,
including the jobs of the same run before a resume.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual.widgets import Static

from weightgate.core.engine.events import read_events
from weightgate.core.training.views import earlier_journals
from weightgate.screens.finetuning.loss_chart import TrainingHistory, render_loss_chart
from weightgate.tui.widgets.journal_tail import JournalTail
from weightgate.tui.widgets.units import human_bytes

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
                                ("Run the data checks (weightgate data check), then weightgate train start; "
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
    if latest.get("rewards/margins") is not None:   # a DPO run: how far chosen leads rejected
        parts.append(f"  margin {latest['rewards/margins']:.4f}")
        if latest.get("rewards/accuracies") is not None:
            parts.append(f"  pref acc {latest['rewards/accuracies']:.0%}")
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
        lines.append(Content.assemble(("error: ", "bold $error"), history.error))
    return Content("\n").join(lines)


def checkpoints_text(history) -> Content:
    rows = history.checkpoint_rows()
    if not rows:
        return Content.assemble(("Checkpoints\n", "bold"), ("none yet", "$text-muted"))
    lines = [Content.assemble(("Checkpoints", "bold"))]
    for step, val, best in rows[:8]:
        val_text = f"val {val:.4f}" if isinstance(val, (int, float)) else ""
        lines.append(Content.assemble(("★ " if best else "  ", "bold $success"), f"step {step:>5}  {val_text}",
                                      (" best" if best else "", "$success")))
    return Content("\n").join(lines)


def logs_text(history, count: int = 6) -> Content:
    lines = [Content.assemble(("Log", "bold"))]
    for level, message in history.logs[-count:]:
        style = "$error" if level == "error" else ("$warning" if level == "warning" else "")
        lines.append(Content.assemble((message[:160], style)))
    return Content("\n").join(lines)


class TrainingPanel(Vertical):
    DEFAULT_CSS = """
    TrainingPanel { height: auto; border: round $panel; border-title-color: $text-muted; padding: 0 1; }
    TrainingPanel #train-chart { height: auto; margin: 1 0; }
    TrainingPanel #train-bottom { height: auto; }
    TrainingPanel #train-ckpts { width: 34; height: auto; }
    TrainingPanel #train-logs { width: 1fr; height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history = TrainingHistory()
        self._events: list = []            # the followed job's events so far
        self.job_id: str | None = None
        self.state = "none"
        self.smooth = True                 # the moving average, raw loss faint behind it
        self.overlay: TrainingHistory | None = None   # another run's loss on the same axes
        self.overlay_label = ""
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

    def show_overlay(self, history: TrainingHistory | None, label: str = "") -> None:
        self.overlay, self.overlay_label = history, label
        self.redraw()

    def redraw(self) -> None:
        try:
            width = self.content_size.width or 80
            self.query_one("#train-stats", Static).update(stats_text(self.history, self.state, self.job_id))
            self.query_one("#train-chart", Static).update(
                render_loss_chart(self.history, max(30, width), 8, smooth=self.smooth, overlay=self.overlay,
                                  overlay_label=self.overlay_label))
            self.query_one("#train-ckpts", Static).update(checkpoints_text(self.history))
            self.query_one("#train-logs", Static).update(logs_text(self.history))
        except NoMatches:
            pass

    def on_resize(self) -> None:
        self.redraw()
