"""Follow one job's journal from any widget, and fold byte-progress events into one transfer.

JournalTail is an invisible widget: mount it inside a panel, call `follow(job_id, job_dir)`,
and handle `JournalTail.Read` (it bubbles) to get the job's events. As in the Jobs screen's
monitor, the first read starts at byte 0 of events.jsonl, so it replays the whole history;
then a timer reads whatever was appended, in a thread worker (core.engine.events.read_events leaves a
half-written last line for the next read). Reading stops once the job's `result` event has
been seen.

Transfer folds the `progress` events of jobs that move bytes (`unit: "B"`): the `verify` job
(done / total / eta_s) and the `download` job (also `scope` "file" | "total", `file`,
`rate_bps`). Where a job gives no rate, it is computed from the events' own times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.message import Message
from textual.widget import Widget

from weightgate.core.engine.events import read_events
from weightgate.tui.messages import JobEvents

if TYPE_CHECKING:
    from weightgate.core.engine.events import Event

TAIL_INTERVAL_S = 0.25


class JournalTail(Widget):
    """Reads one job's events.jsonl: the whole history first, then what gets appended."""

    DEFAULT_CSS = """
    JournalTail { display: none; }
    """

    class Read(Message):
        """Events read from the followed job's journal; `replay` for the first batch."""

        def __init__(self, tail: JournalTail, job_id: str, events: list[Event], *, replay: bool) -> None:
            super().__init__()
            self.tail = tail
            self.job_id = job_id
            self.events = events
            self.replay = replay

        @property
        def control(self) -> JournalTail:
            return self.tail

    def __init__(self, interval: float = TAIL_INTERVAL_S, **kwargs) -> None:
        super().__init__(**kwargs)
        self.interval = interval
        self.job_id: str | None = None
        self.job_dir: Path | None = None
        self.ended: str | None = None  # the result status, once seen
        self._offset = 0
        self._busy = False
        self._replayed = False

    def on_mount(self) -> None:
        self._timer = self.set_interval(self.interval, self._tick, pause=True)

    def follow(self, job_id: str, job_dir: Path) -> None:
        """Start following `job_id` (a no-op if it is already the one followed)."""
        if job_id == self.job_id:
            return
        self.job_id, self.job_dir = job_id, Path(job_dir)
        self._offset, self._replayed, self.ended = 0, False, None
        self._timer.resume()
        self._tick()

    def stop(self) -> None:
        self.job_id = self.job_dir = None
        self._timer.pause()

    @property
    def following(self) -> bool:
        return self.job_id is not None and self.ended is None

    def _tick(self) -> None:
        if self._busy or self.job_dir is None or self.job_id is None:
            return
        if self.ended is not None and self._replayed:
            self._timer.pause()
            return
        self._busy = True
        self._read(self.job_id, self.job_dir / "events.jsonl", self._offset, not self._replayed)

    @work(thread=True, group="journal-tail", exit_on_error=False)
    def _read(self, job_id: str, path: Path, offset: int, replay: bool) -> None:

        try:
            events, new_offset = read_events(path, offset)
        except OSError:
            events, new_offset = [], offset
        self.post_message(JobEvents(job_id, events, new_offset, replay=replay))

    def on_job_events(self, message: JobEvents) -> None:
        message.stop()
        self._busy = False
        if message.job_id != self.job_id:
            return  # a read for a job we have since left
        self._offset = message.offset
        self._replayed = True
        for event in message.events:
            if event.kind == "result":
                self.ended = str(event.payload.get("status", "?"))
        if message.events or message.replay:
            self.post_message(self.Read(self, message.job_id, message.events, replay=message.replay))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class Transfer:
    """Where a byte-moving job is: the total, the file being moved (download), rate and ETA."""

    done: float = 0.0
    total: float | None = None
    rate: float | None = None      # bytes per second
    eta_s: float | None = None
    message: str = ""
    file: str | None = None        # download: the file of the last per-file event
    file_done: float = 0.0
    file_total: float | None = None
    seen: bool = False             # any progress event at all
    _first: tuple[float, float] | None = None  # (time, done) the rate counts from

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def apply(self, event: Event) -> bool:
        """Fold one event in; True if it was a progress event."""
        if self._first is None and event.seq:
            # The rate counts from the job's first event (it starts with nothing moved).
            self._first = (event.time, 0.0)
        if event.kind != "progress":
            return False
        payload = event.payload
        done = _number(payload.get("done")) or 0.0
        total = _number(payload.get("total"))
        self.seen = True
        if payload.get("scope") == "file":
            self.file = str(payload.get("file") or payload.get("message") or "")
            self.file_done, self.file_total = done, total
            return True
        self.done, self.total = done, total
        self.eta_s = _number(payload.get("eta_s"))
        self.message = str(payload.get("message") or "")
        rate = _number(payload.get("rate_bps"))
        if rate is None and self._first is not None:
            elapsed = event.time - self._first[0]
            if elapsed > 0:
                rate = (done - self._first[1]) / elapsed
            elif self.rate is not None:
                rate = self.rate
        self.rate = rate
        return True
