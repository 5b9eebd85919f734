"""The weightgate workbench: a Textual App over the headless engine in `core/`.

Start-up stays instant: this module imports Textual, the small checklist module and the
widgets; the engine's heavier parts (gates, evidence, jobs, devices) are imported inside
thread workers on first use. All file and device I/O happens in those workers, which post
Messages (tui.messages); the handlers store the results in reactive attributes that the
widgets watch:

    report           core.engine.status.Report (from core.gates.compute_report), recomputed every 2 s and after every action
    workspace_error  core.engine.errors.InputError while the workspace cannot be read, else None
    devices          core.memory.devices.DeviceSnapshot, polled at most twice a second
    job_rows         the workspace's jobs with their last progress, every second

Run it: `python -m weightgate.tui.app -w DIR` (tests), or `weightgate` (the console script in tui.cli).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen

from weightgate.screens import SCREENS
from weightgate.themes import DEFAULT_THEME, STYLESHEET, THEMES, THEMES_BY_NAME, other_theme
from weightgate.tui.messages import DevicesPolled, JobsListed, JobStarted, ReportReady, WorkspaceProblem
from weightgate.tui.widgets.base_screen import PhaseScreen, WorkspaceScreen
from weightgate.tui.widgets.sidebar import OVERVIEW

if TYPE_CHECKING:
    from weightgate.core.engine.errors import InputError
    from weightgate.core.engine.status import Report
    from weightgate.core.engine.views import JobRow, JobRowReader
    from weightgate.core.engine.workspace import Workspace
    from weightgate.core.memory.devices import DevicePoller, DeviceSnapshot
    from weightgate.tui.widgets.help import HelpSection

REPORT_INTERVAL_S = 2.0
DEVICE_INTERVAL_S = 0.5  # core.memory.devices clamps anything faster to 0.5 s as well
JOBS_INTERVAL_S = 1.0
SELFTEST_PARAMS = {"seconds": 8, "interval": 0.2}


def weightgate_commands() -> type:
    """The command-palette provider, imported when the palette first opens (textual.command is
    heavy enough to matter at start-up)."""
    from weightgate.tui.widgets.commands import (
        WeightgateCommands,  # lazy: loads when first used, not for the first frame
    )

    return WeightgateCommands


def _short_path(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if home != "/" and text.startswith(home + os.sep) else text


class WeightgateApp(App[int]):
    TITLE = "weightgate"
    CSS_PATH = str(STYLESHEET)
    SCREENS = SCREENS
    COMMANDS = App.COMMANDS | {weightgate_commands}
    COMMAND_PALETTE_BINDING = "ctrl+p"
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("C", "show_screen('compare')", "Compare runs", show=False),
        Binding("R", "show_screen('review')", "Blind A/B review", show=False),
        Binding("t", "toggle_theme", "Theme"),
        Binding("q", "quit", "Quit"),
    ]

    report: reactive[Report | None] = reactive(None, init=False)
    workspace_error: reactive[InputError | None] = reactive(None, init=False)
    devices: reactive[DeviceSnapshot | None] = reactive(None, init=False)
    job_rows: reactive[list[JobRow] | None] = reactive(None, init=False)
    sidebar_shown: reactive[bool | None] = reactive(None, init=False)  # None: shown when the terminal is wide

    def __init__(self, workspace_path: Path | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = DEFAULT_THEME
        # Only our two themes are offered (palette "Theme", `t`): their status colours are checked
        # for contrast (tests/tui/test_contrast.py); Textual's built-in ones were not.
        for name in [name for name in self.available_themes if name not in THEMES_BY_NAME]:
            self.unregister_theme(name)
        root = workspace_path or os.environ.get("WEIGHTGATE_WORKSPACE") or Path.cwd()
        self.workspace_root = Path(root).expanduser().resolve()
        self.workspace_label = _short_path(self.workspace_root)
        self.workspace: Workspace | None = None
        self.follow_job_id: str | None = None  # the jobs screen selects it when it appears
        self.compare_request: tuple[str, str] | None = None  # the Compare screen opens this pair next
        self.previous_target = OVERVIEW         # where Esc goes back to from Compare or Review
        self.exit_note = ""                     # printed after the TUI exits (jobs left running)
        self._stay_on_screen = 0                # started jobs whose screen shows them itself
        self._started_kinds: dict[str, str] = {}   # job id -> kind, until its start is announced
        self._busy: set[str] = set()            # which periodic reads are in flight
        self._again: set[str] = set()           # asked for again while in flight
        self._device_poller: DevicePoller | None = None
        self._job_reader: JobRowReader | None = None
        self._job_states: dict[str, str] = {}

    @property
    def jobs_dir(self) -> Path | None:
        return self.workspace.jobs_dir if self.workspace is not None else None

    # --- life cycle ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(OVERVIEW)
        # Paint the frame first; the engine's imports and the first report come right after.
        self.call_after_refresh(self._start_reading)

    def _start_reading(self) -> None:
        self.refresh_report()
        self.poll_devices()
        self.set_interval(REPORT_INTERVAL_S, self.refresh_report)
        self.set_interval(DEVICE_INTERVAL_S, self.poll_devices)
        self.set_interval(JOBS_INTERVAL_S, self.poll_jobs)

    # --- navigation ---------------------------------------------------------------------------

    def goto(self, target: str) -> None:
        """Show a screen by name: overview, phase-1 … phase-6, jobs."""
        if target not in self.SCREENS or isinstance(self.screen, ModalScreen):
            return
        if self.is_screen_installed(target) and self.get_screen(target) is self.screen:
            return
        self.previous_target = getattr(self.screen, "TARGET", "") or self.previous_target
        self.switch_screen(target)
        reopened = getattr(self.get_screen(target), "reopened", None)
        if reopened is not None:
            self.call_after_refresh(reopened)

    def action_show_screen(self, target: str) -> None:
        self.goto(target)

    def go_back(self) -> None:
        """Back to the screen shown before this one (Esc on Compare and Review)."""
        self.goto(self.previous_target if self.previous_target in self.SCREENS else OVERVIEW)

    def action_help(self) -> None:
        self.show_help()

    def show_help(self) -> None:
        from weightgate.tui.widgets.help import HelpScreen  # lazy: loads when first used, not for the first frame

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_sections()))

    def help_sections(self) -> list[HelpSection]:
        from weightgate.screens.jobs.screen import JobsScreen  # lazy: a screen's module loads when it is first shown
        from weightgate.tui.widgets.help import HelpSection  # lazy: loads when first used, not for the first frame
        from weightgate.tui.widgets.modals import NoteModal  # lazy: loads when first used, not for the first frame

        here = getattr(self.screen, "HELP", "")
        return [
            HelpSection("Everywhere", "", (*WorkspaceScreen.BINDINGS, *self.BINDINGS), (
                ("ctrl+p", "Command palette: phases, every screen's keys, items, runs and jobs by name"),
                ("tab, shift+tab", "Focus the sidebar / the table"),
                ("enter (sidebar)", "Go to the highlighted screen"),
                ("ctrl+q", "Quit"),
            )),
            *([HelpSection("This screen", here, self._screen_bindings())] if here else []),
            HelpSection("Overview and phase screens (1-6)",
                        "↑ ↓ select an item; the pane below says why it matters, what was measured and what "
                        "it needs.", tuple(PhaseScreen.BINDINGS)),
            HelpSection("Jobs (j)", "↑ ↓ pick a job: its history replays, then it is followed live.",
                        tuple(JobsScreen.BINDINGS)),
            HelpSection("Dialogs", "", tuple(NoteModal.BINDINGS), (("enter", "Submit"),)),
        ]

    def screen_keys(self) -> list[tuple[str, str, object]]:
        """(target, title, binding) for the shown keys each screen adds, for the command palette
        (the app, not the palette widget, knows the screens: it imports their modules here, when the
        palette is first opened, long after the first frame)."""
        import importlib  # lazy: only the palette needs it, after the first frame

        from weightgate.screens import PHASE_MODULES  # lazy: the palette loads after the first frame
        from weightgate.screens.compare import CompareScreen  # lazy: as above
        from weightgate.screens.jobs.screen import JobsScreen  # lazy: as above

        classes = [(target, getattr(importlib.import_module(module), name)) for target, (module, name)
                   in PHASE_MODULES.items()] + [("jobs", JobsScreen), ("compare", CompareScreen)]
        keys = []
        for target, screen_class in classes:
            # "Phase 5 · Fine-tuning: the data checks, …" -> "Phase 5 · Fine-tuning"
            doc = importlib.import_module(screen_class.__module__).__doc__ or target
            title = doc.splitlines()[0].split(":")[0]
            for binding in screen_class.__dict__.get("BINDINGS", ()):
                if getattr(binding, "show", False) and binding.description:
                    keys.append((target, title, binding))
        return keys

    def _screen_bindings(self) -> tuple:
        """The keys a phase screen adds to the shared phase keys (its own BINDINGS)."""
        screen = self.screen
        return tuple(type(screen).__dict__.get("BINDINGS", ())) if isinstance(screen, PhaseScreen) else ()

    # --- editing files in $EDITOR -------------------------------------------------------------

    def edit_file(self, target: Path) -> None:
        """Suspend the TUI, edit a draft of `target` in $EDITOR, then save it if it reads cleanly
        (and re-check the workspace) or keep it and say file:line what is wrong (tui.widgets.edit_file)."""
        from textual.app import SuspendNotSupported  # lazy: loads when first used, not for the first frame

        from weightgate.core.engine.workspace import Workspace  # lazy: core loads after the first frame
        from weightgate.tui.widgets.edit_file import finish_edit, open_draft, run_editor  # lazy: as above

        if not target.is_file():
            self.notify(f"{target} does not exist yet.", title="Edit", severity="warning")
            return
        shown_as = os.path.relpath(target, self.workspace_root)
        draft = open_draft(Workspace(self.workspace_root).state_dir, target)
        try:
            if self.is_headless:       # tests: the "editor" is a script, there is no terminal to hand over
                code = run_editor(draft)
            else:
                with self.suspend():
                    code = run_editor(draft)
        except SuspendNotSupported:
            self.notify("This terminal (a browser?) cannot hand the screen to an editor; edit "
                        f"{shown_as} by hand, the checklist re-reads it within 2 s.", title="Edit", severity="warning")
            return
        if code == 127:
            self.notify(f"No editor found: set $EDITOR (e.g. export EDITOR=nano). Your draft: {draft}",
                        title="Edit", severity="error", timeout=10)
            return
        outcome = finish_edit(draft, target, shown_as)
        if outcome.problem:
            self.notify(f"{outcome.problem}\n{shown_as} is unchanged; your edit is kept: E opens it again.",
                        title="Not saved", severity="error", timeout=15, markup=False)
        elif outcome.changed:
            self.notify(f"{shown_as} saved; re-checking the checklist.", title="Edit")
            self.refresh_report()
        else:
            self.notify(f"{shown_as} unchanged.", title="Edit")

    async def action_quit(self) -> None:
        """Quit; with jobs running, first say they keep running detached and how to re-attach."""
        from weightgate.tui.widgets.quit_note import (  # lazy: loads when first used, not for the first frame
            QuitWithJobsModal,
            running_jobs_note,
        )

        note = running_jobs_note(self.job_rows)
        if note and self.workspace is not None:
            # The polled list can be a second old: a job that just ended must not hold the quit up.
            from weightgate.core.engine.views import JobRowReader  # lazy: core loads after the first frame

            try:
                note = running_jobs_note(JobRowReader().read(self.workspace.jobs_dir))
            except Exception:  # noqa: BLE001 - unreadable now: keep the polled note
                pass
        if not note:
            self.exit()
            return
        if isinstance(self.screen, QuitWithJobsModal):
            return

        def answered(quit_now: bool | None) -> None:
            if quit_now:
                self.exit_note = note
                self.exit()
        self.push_screen(QuitWithJobsModal(note), answered)

    def action_toggle_theme(self) -> None:
        self.toggle_theme()

    def toggle_theme(self) -> None:
        self.theme = other_theme(self.theme)

    # --- the report ---------------------------------------------------------------------------

    def _start(self, name: str) -> bool:
        """True if the periodic read `name` may start now (else it runs again when done)."""
        if name in self._busy:
            self._again.add(name)
            return False
        self._busy.add(name)
        return True

    def _finish(self, name: str) -> bool:
        """Mark `name` done; True if someone asked for it again meanwhile."""
        self._busy.discard(name)
        if name in self._again:
            self._again.discard(name)
            return True
        return False

    def refresh_report(self) -> None:
        """Recompute every status and gate in a thread worker (now, or right after the current one)."""
        if self._start("report"):
            self._read_report()

    @work(thread=True, group="report", exit_on_error=False)
    def _read_report(self) -> None:
        from weightgate.core.engine.errors import InputError  # lazy: core loads in a worker, after the first frame
        from weightgate.core.engine.workspace import (
            open_workspace,  # lazy: core loads in a worker, after the first frame
        )
        from weightgate.core.gates import compute_report  # lazy: core loads in a worker, after the first frame

        try:
            if self.workspace is None:
                self.workspace = open_workspace(self.workspace_root)
            report = compute_report(self.workspace)
        except InputError as exc:
            self.post_message(WorkspaceProblem(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must show up, not take the UI down
            self.post_message(WorkspaceProblem(InputError(
                f"could not compute the checklist: {type(exc).__name__}: {exc}",
                hint="this is a bug in weightgate; `weightgate status` shows the same state with a traceback")))
        else:
            self.post_message(ReportReady(report))

    def on_report_ready(self, message: ReportReady) -> None:
        self.workspace_error = None
        self.report = message.report
        if self._finish("report"):
            self.refresh_report()

    def on_workspace_problem(self, message: WorkspaceProblem) -> None:
        error = message.error
        if self.workspace_error is None or str(self.workspace_error) != str(error):
            self.notify(str(error), title="Cannot read the workspace", severity="error", timeout=8)
        self.workspace_error = error
        if self._finish("report"):
            self.refresh_report()

    # --- devices ------------------------------------------------------------------------------

    def poll_devices(self) -> None:
        if self._start("devices"):
            self._poll_devices()

    @work(thread=True, group="devices", exit_on_error=False)
    def _poll_devices(self) -> None:
        from weightgate.core.memory.devices import DevicePoller  # lazy: core loads in a worker, after the first frame

        if self._device_poller is None:
            self._device_poller = DevicePoller(DEVICE_INTERVAL_S)
        try:
            snapshot = self._device_poller.poll()
        except Exception:  # noqa: BLE001 - poll() never raises; be safe anyway
            snapshot = None
        self.post_message(DevicesPolled(snapshot))

    def on_devices_polled(self, message: DevicesPolled) -> None:
        if message.snapshot is not None:
            self.devices = message.snapshot
        self._finish("devices")

    # --- jobs ---------------------------------------------------------------------------------

    def poll_jobs(self) -> None:
        if self.workspace is not None and self._start("jobs"):
            self._list_jobs(self.workspace.jobs_dir)

    @work(thread=True, group="jobs", exit_on_error=False)
    def _list_jobs(self, jobs_dir: Path) -> None:
        from weightgate.core.engine.views import JobRowReader  # lazy: core loads in a worker, after the first frame

        if self._job_reader is None:
            self._job_reader = JobRowReader()
        try:
            rows = self._job_reader.read(jobs_dir)
        except Exception:  # noqa: BLE001 - an unreadable jobs dir shows as no jobs, next poll retries
            rows = []
        self.post_message(JobsListed(rows))

    def on_jobs_listed(self, message: JobsListed) -> None:
        finished = []
        for row in message.rows:
            before = self._job_states.get(row.job_id)
            if before is not None and before != row.status.state and row.status.is_terminal:
                finished.append(row)
            self._job_states[row.job_id] = row.status.state
        self.job_rows = message.rows
        for row in finished:
            severity = "information" if row.status.state == "succeeded" else "warning"
            self.notify(f"{row.job_id} {row.status.state}", title=f"Job {row.status.kind}", severity=severity)
        if finished:
            self.refresh_report()  # jobs record evidence
        if self._finish("jobs"):
            self.poll_jobs()

    def start_selftest(self) -> None:
        if self.workspace is None:
            self.notify("No workspace is open, so there is nowhere to keep the job.", severity="error")
            return
        self._start_job("selftest", dict(SELFTEST_PARAMS))

    def start_job(self, kind: str, params: dict, *, show_jobs: bool = True) -> bool:
        """Start a detached job of `kind` (a thread worker); the Jobs screen follows it unless
        show_jobs is False (the calling screen shows its progress itself)."""
        if self.workspace is None:
            self.notify("No workspace is open, so there is nowhere to keep the job.", severity="error")
            return False
        if not show_jobs:
            self._stay_on_screen += 1
        self._start_job(kind, dict(params))
        return True

    def _locked_note(self, job_id: str) -> str:
        """'phase 4 is locked by …: this eval job is recorded, the gate stays closed' (from the
        report the app already has; ship decides its own gate)."""
        from weightgate.core.engine.job_kinds import (
            PHASE_OF_KIND,  # lazy: core loads in a worker, after the first frame
        )
        from weightgate.core.engine.status import locked_line  # lazy: core loads in a worker, after the first frame

        kind = self._started_kinds.pop(job_id, "")
        phase = PHASE_OF_KIND.get(kind)
        if self.report is None or phase is None or kind == "ship":
            return ""
        return locked_line(self.report, phase, f"this {kind.replace('_', ' ')} job")

    @work(thread=True, group="job-control", exit_on_error=False)
    def _start_job(self, kind: str, params: dict) -> None:
        from weightgate.core.engine.errors import InputError  # lazy: core loads in a worker, after the first frame
        from weightgate.core.engine.jobs import start_job  # lazy: core loads in a worker, after the first frame

        workspace = self.workspace
        try:
            handle = start_job(workspace.jobs_dir, kind, params, workspace=workspace.root)
        except (InputError, OSError) as exc:
            self.call_from_thread(self.notify, str(exc), title=f"Could not start {kind}", severity="error")
            return
        self._started_kinds[handle.job_id] = kind
        self.post_message(JobStarted(handle.job_id))

    def on_job_started(self, message: JobStarted) -> None:
        self.notify(message.job_id, title="Job started")
        note = self._locked_note(message.job_id)
        if note:
            self.notify(note, title="Locked phase", severity="warning", timeout=8)
        self.follow_job_id = message.job_id
        if self._stay_on_screen:
            self._stay_on_screen -= 1
        else:
            self.goto("jobs")
        self.poll_jobs()

    def cancel_job(self, job_id: str) -> None:
        if self.workspace is not None:
            self.notify(f"Cancelling {job_id}…", title="Cancel")
            self._cancel_job(self.workspace.jobs_dir / job_id)

    @work(thread=True, group="job-control", exit_on_error=False)
    def _cancel_job(self, job_dir: Path) -> None:
        from weightgate.core.engine.errors import InputError  # lazy: core loads in a worker, after the first frame
        from weightgate.core.engine.jobs import cancel_job  # lazy: core loads in a worker, after the first frame

        try:
            outcome = cancel_job(job_dir)
        except (InputError, OSError) as exc:
            self.call_from_thread(self.notify, str(exc), title="Could not cancel", severity="error")
            return
        self.call_from_thread(self.notify, outcome.message, title="Cancel",
                              severity="warning" if outcome.killed else "information")
        self.call_from_thread(self.poll_jobs)

    # --- evidence -----------------------------------------------------------------------------

    def apply_evidence(self, kind: str, item_id: str, text: str) -> None:
        """Attest, waive or revoke `item_id` through core.engine.evidence, then refresh the report."""
        self._apply_evidence(kind, item_id, text)

    @work(thread=True, group="evidence", exit_on_error=False)
    def _apply_evidence(self, kind: str, item_id: str, text: str) -> None:
        from weightgate.core.engine import evidence  # lazy: core loads in a worker, after the first frame
        from weightgate.core.engine.errors import InputError  # lazy: core loads in a worker, after the first frame

        actions = {"attest": evidence.attest, "waive": evidence.waive, "revoke": evidence.revoke}
        titles = {"attest": "Cannot attest", "waive": "Cannot waive", "revoke": "Cannot revoke"}
        try:
            if self.workspace is None:
                raise InputError("no workspace is open", path=self.workspace_root,
                                 hint="fix or create weightgate.toml first")
            actions[kind](self.workspace, item_id, text)
        except InputError as exc:
            message = exc.message + (f"\nhint: {exc.hint}" if exc.hint else "")
            self.call_from_thread(self.notify, message, title=titles[kind], severity="error", timeout=8)
            return
        done = {"attest": "attested", "waive": "waived", "revoke": "revoked"}[kind]
        self.call_from_thread(self.notify, f"{item_id} {done}", title="Evidence recorded")
        self.call_from_thread(self.refresh_report)


def run_tui(workspace_path: Path | None = None) -> int:
    """Run the workbench on `workspace_path` (default: $WEIGHTGATE_WORKSPACE or the cwd)."""
    app = WeightgateApp(workspace_path)
    result = app.run()
    if app.exit_note:
        print(app.exit_note)
    return int(result or app.return_code or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weightgate.tui.app", description="weightgate's terminal workbench")
    parser.add_argument("-w", "--workspace", type=Path, default=None,
                        help="workspace directory (default: $WEIGHTGATE_WORKSPACE or the current directory)")
    args = parser.parse_args(argv)
    return run_tui(args.workspace)


if __name__ == "__main__":
    sys.exit(main())
