"""Job events and their journal: one JSON object a line in `events.jsonl`.

A job appends events; any number of readers tail the file by byte offset. Nothing flows
through a pipe, so a reader that joins late (or re-attaches after an SSH drop) replays the
whole history from the file.

Line format: {"seq": 1, "time": 1763776500.25, "kind": "progress", "payload": {...}}
`seq` starts at 1 and grows by one per event for the life of the journal. Events with
`seq == 0` never come from the file: they are notes a reader makes about a damaged line.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from weightgate.core.engine.atomic import append_line
from weightgate.core.engine.errors import InputError

PROGRESS = "progress"
METRIC = "metric"
LOG = "log"
ARTIFACT = "artifact"
RESULT = "result"
ERROR = "error"
EVENT_KINDS = (PROGRESS, METRIC, LOG, ARTIFACT, RESULT, ERROR)


# --- typed payloads -------------------------------------------------------------------------
# Each knows its kind; `to_payload()` drops None values so the journal stays small.
# Parsing ignores unknown keys, so a newer job's journal still reads in an older reader.


@dataclass
class Progress:
    KIND: ClassVar[str] = PROGRESS
    done: float
    total: float | None = None
    unit: str = "step"
    message: str = ""
    eta_s: float | None = None


@dataclass
class Metric:
    KIND: ClassVar[str] = METRIC
    values: dict[str, float]
    step: int | None = None


@dataclass
class Log:
    KIND: ClassVar[str] = LOG
    message: str
    level: str = "info"  # debug | info | warning | error


@dataclass
class Artifact:
    KIND: ClassVar[str] = ARTIFACT
    path: str
    label: str = ""  # what it is: "checkpoint", "adapter", "report", ...


@dataclass
class Result:
    KIND: ClassVar[str] = RESULT
    status: str  # succeeded | failed | cancelled | crashed
    data: dict = field(default_factory=dict)


@dataclass
class Error:
    KIND: ClassVar[str] = ERROR
    message: str
    traceback: str | None = None


Payload = Progress | Metric | Log | Artifact | Result | Error
PAYLOAD_TYPES: dict[str, type] = {t.KIND: t for t in (Progress, Metric, Log, Artifact, Result, Error)}
# Fields a payload must carry for its kind; everything else is optional.
_REQUIRED: dict[str, tuple[str, ...]] = {
    PROGRESS: ("done",),
    METRIC: ("values",),
    LOG: ("message",),
    ARTIFACT: ("path",),
    RESULT: ("status",),
    ERROR: ("message",),
}


def to_payload(item: Payload) -> dict:
    return {key: value for key, value in asdict(item).items() if value is not None}


def parse_payload(kind: str, payload: dict) -> Payload:
    """The typed payload of an event (unknown keys ignored)."""
    cls = PAYLOAD_TYPES[kind]
    known = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in payload.items() if key in known})


# --- the event ------------------------------------------------------------------------------


@dataclass
class Event:
    seq: int
    time: float
    kind: str
    payload: dict

    @property
    def is_note(self) -> bool:
        """True for a reader's note about a damaged journal line (not in the file)."""
        return self.seq == 0

    def typed(self) -> Payload:
        return parse_payload(self.kind, self.payload)

    def to_dict(self) -> dict:
        return {"seq": self.seq, "time": self.time, "kind": self.kind, "payload": self.payload}

    def to_json(self) -> str:
        # NaN stays NaN (Python's json reads it back): a diverging loss must be recorded as is.
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> "Event":
        """Validate and build; InputError says what is wrong (the caller adds path and line)."""
        if not isinstance(data, dict):
            raise InputError(f"an event must be a JSON object, not {type(data).__name__}")
        missing = [key for key in ("seq", "time", "kind", "payload") if key not in data]
        if missing:
            raise InputError(f"event is missing {', '.join(missing)}")
        seq, when, kind, payload = data["seq"], data["time"], data["kind"], data["payload"]
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise InputError(f"event seq must be an integer >= 1, got {seq!r}")
        if isinstance(when, bool) or not isinstance(when, (int, float)):
            raise InputError(f"event time must be a number, got {when!r}")
        if kind not in EVENT_KINDS:
            raise InputError(f"unknown event kind {kind!r}", hint=f"kinds: {', '.join(EVENT_KINDS)}")
        check_payload(kind, payload)
        return cls(seq=seq, time=float(when), kind=kind, payload=payload)


def check_payload(kind: str, payload: Any) -> None:
    if kind not in EVENT_KINDS:
        raise InputError(f"unknown event kind {kind!r}", hint=f"kinds: {', '.join(EVENT_KINDS)}")
    if not isinstance(payload, dict):
        raise InputError(f"{kind} payload must be a JSON object, not {type(payload).__name__}")
    missing = [key for key in _REQUIRED[kind] if key not in payload]
    if missing:
        raise InputError(f"{kind} payload is missing {', '.join(missing)}")
    if kind == METRIC and not isinstance(payload["values"], dict):
        raise InputError("metric values must be an object of name -> number")


# --- writing --------------------------------------------------------------------------------


class JournalWriter:
    """Appends events to one journal file; `seq` continues from what the file already holds.

    One writer process per journal (the job, or after the job's death whoever records its end).
    A lock keeps seq and line order together when several threads of that process emit.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seq = _last_seq_after_repair(self.path)

    @property
    def last_seq(self) -> int:
        return self._seq

    def resync(self) -> None:
        """Continue after events another process appended meanwhile (e.g. a torchrun worker that
        wrote the journal while this process waited for it)."""
        with self._lock:
            self._seq = max(self._seq, _last_seq_after_repair(self.path))

    def emit(self, kind_or_payload: str | Payload, payload: dict | None = None, **fields_: Any) -> Event:
        """emit(Progress(done=3, total=10)) or emit("log", message="hi") or emit("log", {...})."""
        if isinstance(kind_or_payload, str):
            kind = kind_or_payload
            body = dict(payload or {})
            body.update(fields_)
        else:
            kind = kind_or_payload.KIND
            body = to_payload(kind_or_payload)
        check_payload(kind, body)
        with self._lock:
            event = Event(seq=self._seq + 1, time=time.time(), kind=kind, payload=body)
            append_line(self.path, event.to_json())
            self._seq = event.seq
        return event


def _last_seq_after_repair(path: Path) -> int:
    """Cut a half-written last line, then return the highest seq among the complete lines.

    Why truncate rather than add a newline: the half line is an append whose fsync never
    returned, so no one was ever told it was written. Terminating it would turn it into a
    complete-but-malformed line that every reader reports forever; cutting it restores the file
    to the last state the writer acknowledged. Readers never consume a line without its newline,
    so no reader's offset points past the cut.
    """
    try:
        handle = open(path, "r+b")
    except FileNotFoundError:
        return 0
    with handle:
        # Same lock as core.engine.atomic.append_line, so we never cut a line another appender is writing.
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            handle.truncate(end)
            os.fsync(handle.fileno())
            data = data[:end]
    last = 0
    for raw in data.split(b"\n"):
        try:
            seq = json.loads(raw)["seq"]
        except (ValueError, TypeError, KeyError):
            continue  # damaged or blank lines carry no seq; readers report them
        if isinstance(seq, int) and not isinstance(seq, bool):
            last = max(last, seq)
    return last


# --- reading --------------------------------------------------------------------------------


def read_events(path: str | os.PathLike, offset: int = 0) -> tuple[list[Event], int]:
    """Events on the complete lines from byte `offset`, and the offset to resume from.

    A last line without its newline is a write in progress: it is left for the next call.
    A complete line that is not a valid event is not dropped and does not stop the reader
    (that would freeze a live view on one bad line): it comes back as a note, an `error`
    event with seq 0 whose payload holds the path, the line number, the reason and the raw
    text, so nothing in the file is lost and the damage is visible where events are shown.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events: list[Event] = []
    position = 0
    while position < end:
        newline = data.index(b"\n", position)
        raw = data[position:newline]
        if raw.strip():
            events.append(_parse_line(path, raw, offset + position))
        position = newline + 1
    return events, offset + end


def _parse_line(path: Path, raw: bytes, line_start: int) -> Event:
    try:
        return Event.from_dict(json.loads(raw.decode("utf-8")))
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 at byte {exc.start + 1}"
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON: {exc.msg} (column {exc.colno})"
    except InputError as exc:
        reason = exc.message
    return damaged_line_note(path, raw, line_start, reason)


def damaged_line_note(path: Path, raw: bytes, line_start: int, reason: str) -> Event:
    line = _line_number(path, line_start)
    message = f"{path}:{line}: journal line skipped: {reason}"
    payload = {
        "message": message,
        "path": str(path),
        "line": line,
        "reason": reason,
        "raw": raw.decode("utf-8", errors="replace"),
    }
    return Event(seq=0, time=time.time(), kind=ERROR, payload=payload)


def _line_number(path: Path, byte_offset: int) -> int:
    # Only computed for a damaged line (rare), so rereading the head of the file is fine.
    with open(path, "rb") as handle:
        return handle.read(byte_offset).count(b"\n") + 1


def follow(
    path: str | os.PathLike,
    *,
    poll_s: float = 0.1,
    stop: Callable[[], bool],
    offset: int = 0,
) -> Iterator[Event]:
    """Replay from `offset` (default: the start), then tail.

    Ends once `stop()` is true and a read made after that still finds nothing new, so events
    written just before the writer finished are never missed.
    """
    while True:
        events, offset = read_events(path, offset)
        if events:
            yield from events
            continue
        if stop():
            events, offset = read_events(path, offset)
            if not events:
                return
            yield from events
            continue
        time.sleep(poll_s)
