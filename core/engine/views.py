"""The jobs list as a reader shows it: every job's status and how far it got, read cheaply
enough to poll (a finished job's progress is read once; a running one's from the journal's tail).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from weightgate.core.engine.jobs import JobStatus, events_path, list_jobs


@dataclass(frozen=True)
class JobProgress:
    """The last progress event of a job, read from the tail of its journal."""

    done: float
    total: float | None
    unit: str = "step"
    eta_s: float | None = None
    time: float | None = None   # when the job reported it (the event's time)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    @classmethod
    def from_payload(cls, payload: dict, time: float | None = None) -> JobProgress:
        """From a `progress` event's payload (KeyError / ValueError / TypeError when it is not one)."""
        return cls(float(payload["done"]), _number(payload.get("total")), str(payload.get("unit", "step")),
                   _number(payload.get("eta_s")), _number(time))

    def label(self) -> str:
        if self.total:
            return f"{self.done:g}/{self.total:g} {self.unit}"
        return f"{self.done:g} {self.unit}"


@dataclass(frozen=True)
class JobRow:
    """One line of the jobs list: the job's status and how far it got."""

    status: JobStatus
    progress: JobProgress | None

    @property
    def job_id(self) -> str:
        return self.status.job_id

    def rate_per_s(self) -> float | None:
        """Units of work a second: from the job's own ETA when it gives one (its recent pace),
        else the mean since the job started. None before there is any progress to go on."""
        progress = self.progress
        if progress is None or progress.done <= 0:
            return None
        if progress.eta_s and progress.total and progress.total > progress.done:
            return (progress.total - progress.done) / progress.eta_s
        started, at = self.status.started, progress.time
        if started is None or at is None or at <= started:
            return None
        return progress.done / (at - started)

    def eta_s(self, now: float) -> float | None:
        """Seconds left for a live job: the job's own estimate, less the time since it gave it;
        else the remaining work at the mean rate. None for a finished job or without a total."""
        progress = self.progress
        if self.status.is_terminal or progress is None or not progress.total:
            return None
        if progress.eta_s is not None:
            return max(0.0, progress.eta_s - max(0.0, now - (progress.time or now)))
        rate = self.rate_per_s()
        return (progress.total - progress.done) / rate if rate else None


TAIL_BYTES = 16384   # the last progress event is always in the journal's last few lines


def last_progress(job_dir: Path) -> JobProgress | None:
    """The last `progress` event in the tail of a job's journal (cheap: reads at most 16 KiB)."""
    path = events_path(job_dir)
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read()
    except OSError:
        return None
    for raw in reversed(data.split(b"\n")):
        if b'"progress"' not in raw:
            continue
        try:
            event = json.loads(raw)
            payload = event["payload"]
            if event.get("kind") == "progress":
                return JobProgress.from_payload(payload, event.get("time"))
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class JobRowReader:
    """list_jobs() plus each job's last progress; finished jobs' progress is read only once."""

    def __init__(self) -> None:
        self._final: dict[str, JobProgress | None] = {}

    def read(self, jobs_dir: Path) -> list[JobRow]:
        rows = []
        for status in list_jobs(jobs_dir):
            job_dir = status.job_dir or jobs_dir / status.job_id
            if status.job_id in self._final:
                progress = self._final[status.job_id]
            else:
                progress = last_progress(job_dir)
                if status.is_terminal:
                    self._final[status.job_id] = progress
            rows.append(JobRow(status, progress))
        return rows
