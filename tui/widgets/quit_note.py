"""Quitting while jobs run: they are detached processes and keep running; say so, and how to
come back to them, before the TUI goes (a dialog) and after it has gone (printed)."""

from __future__ import annotations

from textual.binding import Binding
from textual.content import Content

from weightgate.tui.widgets.modals import ConfirmModal


def running_jobs_note(rows) -> str:
    """'2 jobs keep running detached: train 2026…-ab12 (41%), eval …\\nRe-attach: …', or '' when none run."""
    running = [row for row in rows or [] if not row.status.is_terminal]
    if not running:
        return ""
    listed = ", ".join(f"{row.status.kind} {row.job_id}"
                       + (f" ({row.progress.label()})" if row.progress is not None else "") for row in running[:4])
    more = f" and {len(running) - 4} more" if len(running) > 4 else ""
    first = running[0].job_id
    count = f"{len(running)} job{'s' if len(running) > 1 else ''} keep{'' if len(running) > 1 else 's'}"
    return (f"{count} running detached: {listed}{more}.\n"
            f"Re-attach: `weightgate` (then j for Jobs), or `weightgate attach {first}`; "
            "`weightgate jobs` lists them.")


class QuitWithJobsModal(ConfirmModal):
    """Quit anyway (q, y, enter) or stay (n, escape), with the running jobs named."""

    BINDINGS = [*ConfirmModal.BINDINGS, Binding("q", "answer(True)", "Quit")]

    def __init__(self, note: str) -> None:
        super().__init__(Content.assemble(("Quit? The jobs go on without the TUI.\n\n", "bold"), note),
                         yes="Quit, leave them running", no="Stay")
