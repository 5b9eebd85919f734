"""Phase 2 · Verification: exactly which bytes this workspace runs, and proof they are the
published ones.

Above the items: the Lock panel (tui.widgets.lock_panel): source, revision → commit, licence,
remote code, provenance; every locked file with its size, where its hash came from (published
by the hub / computed locally), when it last matched, and its state now (ok, changed on disk,
mismatch, missing), its progress while a job hashes or fetches it, and what a pickle would
import. Keys: v starts a `verify` job (re-hashes everything in parallel and records the
evidence) and the panel follows its progress live, per file; f fetches the chosen model (a
download job for a hub model, followed the same way; a local model is hashed and locked now);
c converts the selected pickle file (trusted at its sha256 in weightgate.toml) to its
safetensors twin in a `convert_pickle` job, which locks the twin: later phases load only
safetensors.

Looking and verifying work while the phase is locked: the gate is about the checklist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message

from weightgate.core.engine.jobs import start_job
from weightgate.core.engine.lock import has_lock
from weightgate.core.weights.convert import plan_conversion
from weightgate.core.weights.pickle_policy import check_pickle_allowed
from weightgate.core.weights.views import LockView, read_lock_view
from weightgate.screens.verification.lock_panel import LockPanel
from weightgate.tui.widgets.base_screen import PhaseScreen
from weightgate.tui.widgets.weights_actions import EngineDone, WeightsActions

if TYPE_CHECKING:
    from weightgate.core.engine.views import JobRow
    from weightgate.core.weights.views import LockView
    from weightgate.screens.verification.lock_panel import LockPanel

# The lock panel (tables, job tail) is imported when the screen is first shown, not at
# start-up: `import tui.app` imports every screen module.
FOLLOWED_KINDS = ("verify", "download", "convert_pickle")

LOCK_INTERVAL_S = 2.0
ACTIVE_STATES = ("queued", "running")


class LockViewRead(Message):
    """read_lock_view() finished (posted by a thread worker)."""

    def __init__(self, view: LockView) -> None:
        super().__init__()
        self.view = view


class VerificationScreen(WeightsActions, PhaseScreen):
    TARGET = "phase-2"
    PHASE = 2
    HELP = ("Verification: safetensors, checksums, headers, pickle policy, remote code, source revision, licence. "
            "The lock panel lists every locked file and its state; v re-hashes them all in a job, f fetches the "
            "chosen model, c converts a trusted pickle file to safetensors.")

    BINDINGS = [
        Binding("v", "verify", "Verify", tooltip="Re-hash every locked file against weightgate.lock (a job)"),
        Binding("f", "fetch", "Fetch", tooltip="Fetch and lock the chosen model"),
        Binding("c", "convert", "Convert pickle",
                tooltip="Convert the selected trusted pickle file to safetensors (a job; the twin is locked)"),
    ]
    STATEFUL_ACTIONS = (*PhaseScreen.STATEFUL_ACTIONS, "verify", "fetch", "convert")
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]

    DEFAULT_CSS = """
    VerificationScreen.-short LockFilesTable { max-height: 4; }
    """

    def compose_panels(self) -> ComposeResult:
        yield LockPanel(id="lock")

    def on_mount(self) -> None:
        super().on_mount()
        self._reading = False
        self._read_again = False
        self.watch(self.app, "report", lambda _: self.reload())
        self.watch(self.app, "job_rows", self._jobs_changed)
        self.set_interval(LOCK_INTERVAL_S, self.reload)

    @property
    def panel(self) -> LockPanel:
        return self.query_one("#lock")

    # --- reading ------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read weightgate.lock and stat the files (thread worker; no hashing)."""
        workspace = getattr(self.app, "workspace", None)
        if workspace is None or (not self.is_current and self.panel.view is not None):
            return
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        self.run_worker(lambda: self._read(workspace), thread=True, group="lock-view", exit_on_error=False)

    def _read(self, workspace) -> None:
        try:
            view = read_lock_view(workspace)
        except Exception as exc:  # noqa: BLE001 - shown in the panel, not a crash
            view = LockView(error=f"{type(exc).__name__}: {exc}")
        self.post_message(LockViewRead(view))

    def on_lock_view_read(self, message: LockViewRead) -> None:
        view = message.view
        self._reading = False
        self.panel.show(view, self.report)
        self.update_bindings()
        if self._read_again:
            self._read_again = False
            self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def _jobs_changed(self, rows: list[JobRow] | None) -> None:
        """Follow a verify / download job started elsewhere (CLI, phase 1) while it runs."""
        if self.panel.following:
            return
        jobs_dir = self.app.jobs_dir
        for row in rows or []:  # newest first
            if row.status.kind in FOLLOWED_KINDS and row.status.state in ACTIVE_STATES:
                job_dir = row.status.job_dir or (jobs_dir / row.job_id if jobs_dir else None)
                if job_dir is not None:
                    self.panel.follow(row.job_id, job_dir, row.status.kind)
                return

    def on_lock_panel_job_ended(self, message) -> None:
        job = message.job
        if job.kind == "convert_pickle" and job.state == "succeeded":
            locked = job.result.get("locked") or {}
            self.notify(f"{job.subject or job.result.get('source', '')} → {job.result.get('output', '?')}"
                        + (f"; {locked['twin']} is locked and is what later phases load." if locked.get("twin")
                           else "; not a file of the locked model, so weightgate.lock is unchanged."),
                        title="Converted to safetensors")
        if job.state != "succeeded":
            detail = job.error or job.state
            self.notify(f"{job.job_id}: {detail}", title=f"{job.kind.capitalize()} {job.state}", severity="error",
                        timeout=10)
        self.app.refresh_report()
        self.reload()

    # --- keys -----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        try:
            view = self.panel.view
        except NoMatches:  # asked before the panel is composed
            view = None
        if action == "verify":
            return True if self._has_lock(view) else None
        if action == "fetch":
            return True if view is not None and view.chosen else None
        if action == "convert":
            if view is None or not view.pickles:
                return False   # hidden: nothing in the lock is pickle
            chosen = self.panel.selected_pickle()
            return True if chosen is not None and chosen[1].twin is None and chosen[1].scan.safe else None
        return super().check_action(action, parameters)

    def on_data_table_row_highlighted(self, message) -> None:
        self.update_bindings()   # the convert key follows the highlighted file

    def _has_lock(self, view: LockView | None) -> bool:
        """A lock is shown, or written since the panel last read (a fetch just finished): v must
        not be dimmed in the second before the panel catches up."""
        if view is not None and view.lock is not None:
            return True
        workspace = getattr(self.app, "workspace", None)
        return workspace is not None and has_lock(workspace)

    def action_verify(self) -> None:
        if not self._has_lock(self.panel.view):
            self.notify("No weights locked yet: choose a model in phase 1 (c) and fetch it (f).",
                        title="Nothing to verify", severity="warning")
            return
        if self._job_running():
            return
        self.run_engine("verify", "", "Starting a verify job…", _start_verify)

    def _job_running(self) -> bool:
        """Whether the followed job still runs (then say so): one verify or conversion at a time."""
        job = self.panel.job
        if job is not None and job.state == "running":
            self.notify(f"{job.kind} job {job.job_id} is still running; its progress is shown above.",
                        title="Already running", severity="warning")
            return True
        return False

    def action_convert(self) -> None:
        chosen = self.panel.selected_pickle()
        if chosen is None:
            self.notify("Select a pickle file in the lock panel first (Tab to the files, then ↑/↓).",
                        title="Nothing to convert", severity="warning")
            return
        path, info = chosen
        if info.twin:
            self.notify(f"{path} is already converted: {info.twin} is locked and is what later phases load.",
                        title="Already converted")
            return
        if self._job_running():
            return
        self.run_engine("convert", path, f"Checking {path} (trusted at its sha256? scan clean?)…",
                        lambda ws: _start_convert(ws, info.full_path, path))

    def action_fetch(self) -> None:
        view = self.panel.view
        chosen = view.chosen if view is not None else None
        if not chosen:
            self.notify("No model is chosen yet: go to phase 1 (1), add candidates (+) and choose one (c).",
                        title="Nothing to fetch", severity="warning")
            return
        self.start_fetch(None, chosen)

    # --- outcomes -------------------------------------------------------------------------------

    def show_busy(self, text: str | None) -> None:
        self.panel.show_busy(text)

    def engine_done(self, message: EngineDone) -> None:
        result = message.result or {}
        if message.action == "convert":
            self.panel.follow(result["job"], result["job_dir"], "convert_pickle", subject=result["subject"])
            self.notify(f"{result['job']}: loading {result['subject']} with torch.load(weights_only=True) in a job "
                        f"and writing {result['output']}.", title="Conversion started")
            poll = getattr(self.app, "poll_jobs", None)
            if poll is not None:
                poll()
            self.reload()
            return
        if message.action == "verify" or (message.action == "fetch" and result.get("job")):
            kind = "verify" if message.action == "verify" else "download"
            self.panel.follow(result["job"], result["job_dir"], kind)
            if kind == "verify":
                self.notify(f"{result['job']}: re-hashing every locked file; progress is shown in the lock panel.",
                            title="Verify started")
            poll = getattr(self.app, "poll_jobs", None)
            if poll is not None:
                poll()
        self.reload()


def _start_verify(ws) -> dict:
    handle = start_job(ws.jobs_dir, "verify", {}, workspace=ws.root)
    return {"job": handle.job_id, "job_dir": str(handle.job_dir)}


def _start_convert(ws, full_path: str, subject: str) -> dict:
    """Refuse here (trust at these bytes, clean scan, free output name) before any job starts;
    the job checks all of it again in the process that loads."""

    plan = plan_conversion(ws, full_path)
    check_pickle_allowed(ws, plan.source)
    handle = start_job(ws.jobs_dir, "convert_pickle", {"path": str(plan.source)}, workspace=ws.root)
    return {"job": handle.job_id, "job_dir": str(handle.job_dir), "subject": subject, "output": plan.output.name}
