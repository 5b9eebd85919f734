"""The event journal: round trips, seq continuity, half-written and damaged lines, tailing."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import (
                                           ARTIFACT,
                                           ERROR,
                                           Artifact,
                                           Event,
                                           JournalWriter,
                                           Log,
                                           Metric,
                                           Progress,
                                           Result,
                                           follow,
                                           read_events,
)


def test_round_trip_every_kind(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = JournalWriter(path)
    written = [
        writer.emit(Progress(done=3, total=10, eta_s=1.5)),
        writer.emit(Metric(values={"loss": 0.5, "nan_loss": math.nan}, step=3)),
        writer.emit(Log(message="héllo \"quoted\"\nsecond line")),
        writer.emit(Artifact(path="/x/ckpt.json", label="checkpoint")),
        writer.emit("error", message="boom", traceback="tb"),
        writer.emit("result", {"status": "succeeded"}, data={"k": [1, 2]}),
    ]
    events, offset = read_events(path)
    assert offset == path.stat().st_size
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.kind for e in events] == ["progress", "metric", "log", "artifact", "error", "result"]
    assert events[0].typed() == Progress(done=3, total=10, eta_s=1.5)
    assert math.isnan(events[1].typed().values["nan_loss"])
    assert events[2].typed().message == "héllo \"quoted\"\nsecond line"
    assert events[5].typed() == Result(status="succeeded", data={"k": [1, 2]})
    assert [e.to_dict() for e in events[2:]] == [e.to_dict() for e in written[2:]]
    assert path.read_text(encoding="utf-8").count("\n") == 6


def test_from_dict_validates():
    good = {"seq": 1, "time": 1.0, "kind": "log", "payload": {"message": "m"}}
    assert Event.from_dict(good).payload == {"message": "m"}
    bad_cases = [
        ([], "JSON object"),
        ({**good, "seq": 0}, "seq"),
        ({**good, "seq": True}, "seq"),
        ({**good, "time": "noon"}, "time"),
        ({**good, "kind": "telemetry"}, "unknown event kind"),
        ({**good, "payload": []}, "payload must be"),
        ({**good, "payload": {}}, "missing message"),
        ({k: v for k, v in good.items() if k != "time"}, "missing time"),
    ]
    for data, words in bad_cases:
        with pytest.raises(InputError, match=words):
            Event.from_dict(data)


def test_emit_rejects_bad_payloads(tmp_path):
    writer = JournalWriter(tmp_path / "events.jsonl")
    with pytest.raises(InputError):
        writer.emit("metric", values=3)
    with pytest.raises(InputError):
        writer.emit("nope", message="x")
    assert not (tmp_path / "events.jsonl").exists()


def test_seq_continues_across_writer_reopen(tmp_path):
    path = tmp_path / "events.jsonl"
    first = JournalWriter(path)
    for i in range(3):
        first.emit(Log(message=f"run 1 #{i}"))
    second = JournalWriter(path)
    assert second.last_seq == 3
    second.emit(Log(message="run 2"))
    events, _ = read_events(path)
    assert [e.seq for e in events] == [1, 2, 3, 4]


def test_writer_cuts_a_half_written_last_line(tmp_path):
    path = tmp_path / "events.jsonl"
    JournalWriter(path).emit(Log(message="whole"))
    with open(path, "ab") as handle:
        handle.write(b'{"seq":2,"time":1.0,"kind":"log","payl')  # the crash hit mid-append
    writer = JournalWriter(path)
    assert writer.last_seq == 1
    writer.emit(Log(message="after restart"))
    events, _ = read_events(path)
    assert [(e.seq, e.payload["message"]) for e in events] == [(1, "whole"), (2, "after restart")]
    assert not any(e.is_note for e in events)


def test_reader_waits_for_a_half_written_line(tmp_path):
    path = tmp_path / "events.jsonl"
    JournalWriter(path).emit(Log(message="one"))
    line = Event(seq=2, time=2.0, kind="log", payload={"message": "two"}).to_json().encode()
    with open(path, "ab") as handle:
        handle.write(line[:10])
    events, offset = read_events(path)
    assert [e.seq for e in events] == [1]
    assert offset == path.stat().st_size - 10  # stays before the partial line
    again, same = read_events(path, offset)
    assert again == [] and same == offset
    with open(path, "ab") as handle:
        handle.write(line[10:] + b"\n")
    events2, offset2 = read_events(path, offset)
    assert [e.seq for e in events2] == [2]
    assert offset2 == path.stat().st_size
    all_events, _ = read_events(path)
    assert [e.seq for e in all_events] == [1, 2]  # exactly once


def test_damaged_complete_line_becomes_a_note_and_reading_goes_on(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = JournalWriter(path)
    writer.emit(Log(message="before"))
    with open(path, "ab") as handle:
        handle.write(b"{not json at all\n")
        handle.write(b'{"seq":3,"time":1.0,"kind":"weird","payload":{}}\n')
        handle.write(b"\xff\xfe\n")
    writer.emit(Log(message="after"))
    events, offset = read_events(path)
    assert offset == path.stat().st_size
    assert [e.seq for e in events] == [1, 0, 0, 0, 2]
    notes = [e for e in events if e.is_note]
    assert all(n.kind == ERROR for n in notes)
    assert [n.payload["line"] for n in notes] == [2, 3, 4]
    assert notes[0].payload["raw"] == "{not json at all"  # nothing lost
    assert "invalid JSON" in notes[0].payload["message"]
    assert "unknown event kind" in notes[1].payload["reason"]
    assert "UTF-8" in notes[2].payload["reason"]
    assert str(path) in notes[0].payload["message"]
    # Reading from the offset of the damaged line gives the same line number.
    start_of_line_3 = len(path.read_bytes().split(b"\n", 2)[0]) + 1 + len(b"{not json at all\n")
    later, _ = read_events(path, start_of_line_3)
    assert later[0].payload["line"] == 3


def test_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "events.jsonl"
    JournalWriter(path).emit(Log(message="a"))
    with open(path, "ab") as handle:
        handle.write(b"\n  \n")
    events, _ = read_events(path)
    assert [e.seq for e in events] == [1]


def test_missing_file_reads_as_empty(tmp_path):
    assert read_events(tmp_path / "nope.jsonl", 7) == ([], 7)


def test_offset_tailing(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = JournalWriter(path)
    offset = 0
    seen = []
    for batch in (1, 3, 0, 2):
        for _ in range(batch):
            writer.emit(Progress(done=len(seen), total=6))
        events, offset = read_events(path, offset)
        assert len(events) == batch
        seen += events
    assert [e.seq for e in seen] == [1, 2, 3, 4, 5, 6]


def test_follow_sees_everything_a_concurrent_writer_writes(tmp_path):
    path = tmp_path / "events.jsonl"
    finished = threading.Event()

    def write() -> None:
        writer = JournalWriter(path)
        for i in range(40):
            writer.emit(Metric(values={"loss": 1.0 / (i + 1)}, step=i))
            if i % 10 == 0:
                time.sleep(0.02)
        writer.emit(Artifact(path="x", label="last"))
        finished.set()

    thread = threading.Thread(target=write)
    thread.start()
    got = list(follow(path, poll_s=0.01, stop=finished.is_set))
    thread.join()
    assert [e.seq for e in got] == list(range(1, 42))
    assert got[-1].kind == ARTIFACT


def test_follow_replays_then_stops(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = JournalWriter(path)
    for i in range(5):
        writer.emit(Log(message=str(i)))
    assert [e.seq for e in follow(path, stop=lambda: True)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in follow(path, stop=lambda: True, offset=0)] == [1, 2, 3, 4, 5]
    assert list(follow(tmp_path / "missing.jsonl", stop=lambda: True)) == []


def test_journal_lines_are_plain_json(tmp_path):
    path = tmp_path / "events.jsonl"
    JournalWriter(path).emit(Progress(done=1, total=2))
    data = json.loads(path.read_text().splitlines()[0])
    assert set(data) == {"seq", "time", "kind", "payload"}
    assert "eta_s" not in data["payload"]  # None fields are left out
