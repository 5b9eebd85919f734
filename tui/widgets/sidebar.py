"""The phase sidebar: Overview, the six phases with their gate state, and Jobs.

Each phase shows icon + word (passed / open / stale / locked / not needed) and how many of its
items are done, so it reads the same with and without colour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from weightgate.core.engine.checklist import PHASES
from weightgate.tui.widgets.status import phase_look

if TYPE_CHECKING:
    from weightgate.core.engine.status import PhaseStatus, Report
    from weightgate.core.engine.views import JobRow

OVERVIEW, JOBS = "overview", "jobs"
DONE_STATUSES = ("pass", "waived", "not-needed")


def phase_target(number: int) -> str:
    """The screen name of a phase ("phase-1" … "phase-6"), used by the sidebar and the App."""
    return f"phase-{number}"


def phase_prompt(number: int, title: str, status: PhaseStatus | None) -> Content:
    heading = Content.assemble((f"{number} ", "$text-muted"), (title, "bold"))
    if status is None:
        return Content("\n").join([heading, Content.styled("   …", "$text-muted")])
    look = phase_look(status.state)
    done = sum(1 for item in status.items if item.status in DONE_STATUSES)
    line = Content.assemble("  ", look.content(), (f"  {done}/{len(status.items)}", "$text-muted"))
    return Content("\n").join([heading, line])


def jobs_prompt(rows: list[JobRow] | None) -> Content:
    rows = rows or []
    running = sum(1 for row in rows if row.status.state in ("running", "queued"))
    heading = Content.styled("Jobs", "bold")
    if running:
        detail = Content.styled(f"  ▶ {running} running", "$primary")
    else:
        detail = Content.styled(f"  {len(rows)} total", "$text-muted")
    return Content("\n").join([heading, detail])


class PhaseSidebar(OptionList):
    """Navigation: enter or click goes to the screen; the current screen is highlighted."""

    DEFAULT_CSS = """
    PhaseSidebar { width: 26; height: 1fr; border: none; border-right: vkey $panel; padding: 0; }
    PhaseSidebar > .option-list--option { padding: 0 1; }
    """

    class Navigate(Message):
        def __init__(self, target: str) -> None:
            super().__init__()
            self.target = target

    def __init__(self, current: str, **kwargs) -> None:
        options: list[Option | None] = [Option(Content.styled("Overview", "bold"), id=OVERVIEW), None]
        for phase in PHASES:
            options.append(Option(phase_prompt(phase.number, phase.title, None), id=phase_target(phase.number)))
        options += [None, Option(jobs_prompt(None), id=JOBS)]
        super().__init__(*options, **kwargs)
        self.current = current

    def on_mount(self) -> None:
        self._highlight_current()
        self.watch(self.app, "report", self._show_report)
        self.watch(self.app, "job_rows", self._show_jobs)

    def _highlight_current(self) -> None:
        try:
            self.highlighted = self.get_option_index(self.current)
        except Exception:  # noqa: BLE001 - an unknown target simply highlights nothing
            self.highlighted = None

    def _set_prompt(self, option_id: str, prompt: Content) -> None:
        if self.get_option(option_id).prompt != prompt:
            self.replace_option_prompt(option_id, prompt)

    def _show_report(self, report: Report | None) -> None:
        for phase in PHASES:
            status = report.phase(phase.number) if report is not None else None
            self._set_prompt(phase_target(phase.number), phase_prompt(phase.number, phase.title, status))

    def _show_jobs(self, rows: list[JobRow] | None) -> None:
        self._set_prompt(JOBS, jobs_prompt(rows))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.Navigate(event.option.id))

    def on_blur(self) -> None:
        # Leaving the sidebar without choosing: point back at where we are.
        self._highlight_current()

    def text(self) -> str:
        """Plain text of every entry (for tests and screen readers)."""
        lines = []
        for option in self.options:
            prompt = option.prompt
            lines.append(prompt.plain if isinstance(prompt, Content) else str(prompt))
        return "\n".join(lines)
