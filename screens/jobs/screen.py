"""Jobs: every job of the workspace, and a live view of the selected one.

Jobs are separate processes that write to files; this screen only reads. A job started from
the CLI shows up within a second or two; selecting a job replays its journal from the start
and then follows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import DataTable, Static

from weightgate.screens.jobs.jobs_panel import JobMonitor, JobTable
from weightgate.tui.widgets.base_screen import WorkspaceScreen
from weightgate.tui.widgets.modals import ConfirmModal

if TYPE_CHECKING:
    from weightgate.core.engine.views import JobRow


class JobsScreen(WorkspaceScreen):
    TARGET = "jobs"
    HELP = ("Jobs run in their own processes and outlive the TUI and the SSH session. Selecting a job replays "
            "its whole history, then follows it live.")

    BINDINGS = [
        Binding("s", "start_selftest", "Start selftest", tooltip="Start a short fake training job"),
        Binding("c", "cancel_job", "Cancel job", tooltip="SIGTERM the selected job (it saves a checkpoint)"),
    ]

    DEFAULT_CSS = """
    JobsScreen #jobs-heading { height: auto; padding: 0 1 1 1; }
    """

    AUTO_FOCUS = "JobTable"
    STATEFUL_ACTIONS = (*WorkspaceScreen.STATEFUL_ACTIONS, "cancel_job")

    def compose_main(self) -> ComposeResult:
        yield Static(self._heading(None), id="jobs-heading")
        yield JobTable()
        yield JobMonitor()

    @property
    def table(self) -> JobTable:
        return self.query_one(JobTable)

    @property
    def monitor(self) -> JobMonitor:
        return self.query_one(JobMonitor)

    def on_mount(self) -> None:
        super().on_mount()
        self.watch(self.app, "job_rows", self._show_rows)

    def _heading(self, rows: list[JobRow] | None) -> Content:
        rows = rows or []
        running = sum(1 for row in rows if row.status.state in ("running", "queued"))
        return Content.assemble(
            ("Jobs", "bold"), (f"   {len(rows)} total, {running} running", "$text-muted"),
            ("   s start a selftest · c cancel the selected job · ↑↓ pick a job to follow", "$text-muted"))

    def _show_rows(self, rows: list[JobRow] | None) -> None:
        rows = rows or []
        self.query_one("#jobs-heading", Static).update(self._heading(rows))
        self.table.show(rows)
        wanted = getattr(self.app, "follow_job_id", None)
        if wanted and wanted in self.table.rows_by_id:
            self.app.follow_job_id = None
            self.follow(wanted)
        elif self.monitor.job_id is None and rows:
            running = self.newest_running()
            self.follow(running or self.table.selected_id or rows[0].job_id)
        self.update_bindings()

    def newest_running(self) -> str | None:
        """The newest job still queued or running (the rows are newest first), if any."""
        for row in getattr(self.app, "job_rows", None) or []:
            if not row.status.is_terminal:
                return row.job_id
        return None

    def follow(self, job_id: str) -> None:
        self.table.select_job(job_id)
        self._follow_row(job_id)

    def _follow_row(self, job_id: str | None) -> None:
        row = self.table.rows_by_id.get(job_id) if job_id else None
        if row is None:
            return
        jobs_dir = self.app.jobs_dir
        job_dir = row.status.job_dir or (jobs_dir / row.job_id if jobs_dir else None)
        if job_dir is not None:
            self.monitor.attach(row.job_id, job_dir)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self.table and event.row_key is not None:
            self._follow_row(event.row_key.value)
            self.update_bindings()

    def reopened(self) -> None:
        """Called by App.goto: re-opening the panel replays the followed job from its journal,
        unless that job has ended and another one runs now: then the running one is shown."""
        job_id = self.monitor.job_id
        followed = self.table.rows_by_id.get(job_id) if job_id else None
        running = self.newest_running()
        if running is not None and running != job_id and (followed is None or followed.status.is_terminal):
            self.monitor.job_id = None
            self.follow(running)
            return
        if job_id is not None:
            self.monitor.job_id = None
            self._follow_row(job_id)

    # --- actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_job":
            row = self.table.rows_by_id.get(self.table.selected_id or "")
            return True if row is not None and not row.status.is_terminal else None
        return super().check_action(action, parameters)

    def action_start_selftest(self) -> None:
        self.app.start_selftest()

    def action_cancel_job(self) -> None:
        row = self.table.rows_by_id.get(self.table.selected_id or "")
        if row is None:
            return
        if row.status.is_terminal:
            self.notify(f"{row.job_id} already {row.status.state}; nothing to cancel.")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.app.cancel_job(row.job_id)

        self.app.push_screen(ConfirmModal(Content.assemble(
            "Cancel ", (row.job_id, "bold"), f" ({row.status.kind})?\n",
            ("It gets SIGTERM, saves a checkpoint and stops; if it has not stopped after 10 s it is killed.",
             "$text-muted")), yes="Cancel job", no="Keep running"), done)
