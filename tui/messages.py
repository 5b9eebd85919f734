"""Textual Messages made from what the engine reports.

Thread workers call core (gates, devices, jobs, events), wrap the result in one of these and
post it; handlers run on the UI thread. Core types are only referenced for annotations, so
importing this module imports no engine code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from weightgate.core.engine.errors import InputError
    from weightgate.core.engine.events import Event
    from weightgate.core.engine.status import Report
    from weightgate.core.engine.views import JobRow
    from weightgate.core.memory.devices import DeviceSnapshot


class ReportReady(Message):
    """compute_report() finished: every item's status and every gate, as of now."""

    def __init__(self, report: Report) -> None:
        super().__init__()
        self.report = report


class WorkspaceProblem(Message):
    """The workspace could not be read (bad weightgate.toml, no workspace, bad evidence line)."""

    def __init__(self, error: InputError) -> None:
        super().__init__()
        self.error = error


class DevicesPolled(Message):
    """A fresh device snapshot for the header meter."""

    def __init__(self, snapshot: DeviceSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class JobsListed(Message):
    """list_jobs() of the workspace, newest first, with each job's last progress."""

    def __init__(self, rows: list[JobRow]) -> None:
        super().__init__()
        self.rows = rows


class JobEvents(Message):
    """Events read from a job's journal (events.jsonl) starting at a byte offset.

    `replay` is true for the first batch after attaching: the job's history up to now.
    """

    def __init__(self, job_id: str, events: list[Event], offset: int, *, replay: bool) -> None:
        super().__init__()
        self.job_id = job_id
        self.events = events
        self.offset = offset
        self.replay = replay


class JobStarted(Message):
    """start_job() returned: the new job's id (the jobs list will show it next poll)."""

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
