"""Detached jobs with real processes: follow, survive the starter, crash, cancel, fail, list."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.jobs import (
                                         CANCELLED,
                                         CRASHED,
                                         FAILED,
                                         QUEUED,
                                         RUNNING,
                                         SUCCEEDED,
                                         UNKNOWN,
                                         JobHandle,
                                         JobSpec,
                                         JobStatus,
                                         cancel_job,
                                         events_path,
                                         find_job,
                                         follow_job,
                                         jobs_dir_for,
                                         list_jobs,
                                         read_status,
                                         start_job,
)
from weightgate.core.engine.selftest import CHECKPOINT_FILE

TIMEOUT_S = 20.0


def wait_for(predicate, what: str, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def wait_terminal(job_dir: Path) -> JobStatus:
    return wait_for(lambda: (s := read_status(job_dir)).is_terminal and s, f"{job_dir.name} to end")


def journal(job_dir: Path):
    return read_events(events_path(job_dir))[0]


def wait_progress(job_dir: Path, count: int = 1) -> None:
    wait_for(lambda: sum(e.kind == "progress" for e in journal(job_dir)) >= count, f"{count} progress events")


def assert_gap_free(events) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


@pytest.fixture
def jobs_dir(tmp_path):
    return jobs_dir_for(tmp_path / "ws")


@pytest.fixture
def start(jobs_dir):
    """start_job that kills and reaps whatever a test leaves running."""
    handles: list[JobHandle] = []

    def _start(params: dict, kind: str = "selftest") -> JobHandle:
        handle = start_job(jobs_dir, kind, params, workspace=jobs_dir.parent.parent)
        handles.append(handle)
        return handle

    yield _start
    for handle in handles:
        if handle.process.poll() is None:
            try:
                os.killpg(handle.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        handle.process.wait(timeout=TIMEOUT_S)


def test_follow_replays_every_event_in_order_for_early_and_late_readers(start):
    handle = start({"seconds": 1.5, "interval": 0.1})
    early: list = []
    reader = threading.Thread(target=lambda: early.extend(follow_job(handle.job_dir, poll_s=0.02)))
    reader.start()
    wait_progress(handle.job_dir, 3)
    joined_midway = list(follow_job(handle.job_dir, poll_s=0.02))
    reader.join(TIMEOUT_S)
    after_the_end = list(follow_job(handle.job_dir))

    assert_gap_free(early)
    assert early[-1].kind == "result"
    assert early[-1].payload["status"] == SUCCEEDED
    assert early[-1].payload["data"]["steps"] == 15
    assert sum(e.kind == "progress" for e in early) == 15
    assert sum(e.kind == "metric" for e in early) == 15
    as_dicts = [e.to_dict() for e in early]
    assert [e.to_dict() for e in joined_midway] == as_dicts
    assert [e.to_dict() for e in after_the_end] == as_dicts

    status = read_status(handle.job_dir)
    assert status.state == SUCCEEDED and status.exit_code == 0
    assert status.pid == handle.pid and status.pid_create_time is not None
    assert status.started <= status.ended
    assert handle.process.wait(TIMEOUT_S) == 0
    spec = json.loads((handle.job_dir / "spec.json").read_text())
    assert spec["kind"] == "selftest" and spec["params"] == {"seconds": 1.5, "interval": 0.1}
    assert spec["workspace"] == str(handle.job_dir.parents[2])
    for name in ("status.json", "events.jsonl", "stdout.log", "stderr.log"):
        assert (handle.job_dir / name).exists()


def test_job_survives_its_starter_being_killed(jobs_dir, tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from weightgate.core.engine.jobs import start_job
        handle = start_job({str(jobs_dir)!r}, "selftest", {{"seconds": 2, "interval": 0.1}})
        print(handle.job_dir, flush=True)
        time.sleep(60)
    """)
    env = dict(os.environ)
    starter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               cwd=tmp_path, env=env, start_new_session=True)
    try:
        job_dir = Path(starter.stdout.readline().strip())
        # Kill the starter and its whole process group, as a dying terminal or SSH session would.
        os.killpg(starter.pid, signal.SIGKILL)
        assert starter.wait(TIMEOUT_S) == -signal.SIGKILL
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
    assert not read_status(job_dir).is_terminal  # it was still going when the starter died
    status = wait_terminal(job_dir)
    assert status.state == SUCCEEDED, status
    events = journal(job_dir)
    assert_gap_free(events)
    assert sum(e.kind == "progress" for e in events) == 20
    assert events[-1].kind == "result" and events[-1].payload["status"] == SUCCEEDED


def test_killed_job_process_is_reported_crashed(start):
    handle = start({"seconds": 20, "interval": 0.1})
    wait_progress(handle.job_dir)
    pid = read_status(handle.job_dir).pid
    os.kill(pid, signal.SIGKILL)
    # Not reaped yet: the dead job is a zombie child of this test process.
    status = wait_for(lambda: (s := read_status(handle.job_dir)).state == CRASHED and s, "crashed")
    assert str(pid) in status.error
    on_disk = json.loads((handle.job_dir / "status.json").read_text())
    assert on_disk["state"] == CRASHED  # recorded, so every later reader agrees
    events = journal(handle.job_dir)
    assert_gap_free(events)
    assert events[-2].kind == "error" and "crashed" in events[-2].payload["message"]
    assert events[-1].kind == "result" and events[-1].payload["status"] == CRASHED
    handle.process.wait(TIMEOUT_S)
    assert read_status(handle.job_dir).state == CRASHED
    assert list(follow_job(handle.job_dir))[-1].payload["status"] == CRASHED
    assert len(journal(handle.job_dir)) == len(events)  # recorded once, not per reader


def _handmade_job(jobs_dir: Path, job_id: str, **status_fields) -> Path:
    job_dir = jobs_dir / job_id
    created = status_fields.pop("created", time.time())
    spec = JobSpec(job_id=job_id, kind="selftest", params={}, created=created)
    write_atomic(job_dir / "spec.json", spec.to_json())
    status = JobStatus(job_id=job_id, kind="selftest", created=created, updated=created, **status_fields)
    write_atomic(job_dir / "status.json", status.to_json())
    return job_dir


def test_liveness_checks_pid_reuse_and_stale_queue(jobs_dir):
    me = psutil.Process()
    alive = _handmade_job(jobs_dir, "a-alive", state=RUNNING, pid=me.pid, pid_create_time=me.create_time())
    assert read_status(alive).state == RUNNING
    reused = _handmade_job(jobs_dir, "b-reused", state=RUNNING, pid=me.pid,
                           pid_create_time=me.create_time() - 1000)
    status = read_status(reused)
    assert status.state == CRASHED and "another process" in status.error
    fresh = _handmade_job(jobs_dir, "c-fresh", state=QUEUED)
    assert read_status(fresh).state == QUEUED
    stale = _handmade_job(jobs_dir, "d-stale", state=QUEUED, created=time.time() - 120)
    status = read_status(stale)
    assert status.state == CRASHED and "never started" in status.error


def test_cancel_saves_a_checkpoint_then_stops(start):
    handle = start({"seconds": 20, "interval": 0.1})
    wait_progress(handle.job_dir, 2)
    began = time.monotonic()
    outcome = cancel_job(handle.job_dir, grace_s=15)
    assert time.monotonic() - began < 10
    assert outcome.signalled and not outcome.killed
    assert outcome.status.state == CANCELLED and outcome.status.exit_code == 143
    assert handle.process.wait(TIMEOUT_S) == 143

    checkpoint = handle.job_dir / CHECKPOINT_FILE
    saved = json.loads(checkpoint.read_text())
    assert saved["step"] >= 2
    events = journal(handle.job_dir)
    assert_gap_free(events)
    kinds = [e.kind for e in events]
    assert kinds[-3:] == ["log", "artifact", "result"]
    assert "checkpoint saved" in events[-3].payload["message"]
    assert events[-2].payload == {"path": str(checkpoint), "label": "checkpoint"}
    assert events[-1].payload["status"] == CANCELLED


@pytest.mark.slow
def test_cancel_waits_as_long_as_the_job_says_a_clean_stop_takes(start):
    """A training step of a big model outlasts the default 10 s: the job declares its stop grace,
    and cancel (without an explicit grace) waits for the checkpoint instead of killing it."""
    handle = start({"seconds": 60, "interval": 0.1, "stop_grace": 30, "stop_delay": 11})
    wait_progress(handle.job_dir, 2)
    assert read_status(handle.job_dir).stop_grace_s == 30
    began = time.monotonic()
    outcome = cancel_job(handle.job_dir)
    assert time.monotonic() - began >= 11
    assert outcome.signalled and not outcome.killed and outcome.status.state == CANCELLED
    assert json.loads((handle.job_dir / CHECKPOINT_FILE).read_text())["step"] >= 2
    assert handle.process.wait(TIMEOUT_S) == 143


def test_cancel_kills_a_job_that_ignores_sigterm(start):
    handle = start({"seconds": 30, "interval": 0.1, "ignore_sigterm": True})
    wait_progress(handle.job_dir)
    began = time.monotonic()
    outcome = cancel_job(handle.job_dir, grace_s=0.5)
    assert time.monotonic() - began < 12
    assert outcome.signalled and outcome.killed and "killed" in outcome.message
    assert outcome.status.state == CANCELLED
    assert outcome.status.exit_code == -signal.SIGKILL
    assert "SIGKILL" in outcome.status.detail
    assert handle.process.wait(TIMEOUT_S) == -signal.SIGKILL
    assert read_status(handle.job_dir).state == CANCELLED
    assert not (handle.job_dir / CHECKPOINT_FILE).exists()
    events = journal(handle.job_dir)
    assert_gap_free(events)
    assert events[-1].kind == "result" and events[-1].payload["status"] == CANCELLED


def test_cancelling_a_finished_job_is_a_no_op(start):
    handle = start({"seconds": 0.2, "interval": 0.1})
    assert wait_terminal(handle.job_dir).state == SUCCEEDED
    before = (handle.job_dir / "status.json").read_text()
    outcome = cancel_job(handle.job_dir)
    assert not outcome.signalled and not outcome.killed
    assert "already succeeded" in outcome.message
    assert outcome.status.state == SUCCEEDED
    assert (handle.job_dir / "status.json").read_text() == before
    assert not (handle.job_dir / "cancel.json").exists()


def test_job_cancelled_before_it_started_never_runs(jobs_dir, tmp_path):
    job_dir = _handmade_job(jobs_dir, "20260101-000000-selftest-0000", state=QUEUED)
    write_atomic(job_dir / "cancel.json", "{}")
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-m", "weightgate.core.engine.job_process", "run", str(job_dir)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 143, done.stderr
    assert read_status(job_dir).state == CANCELLED
    events = journal(job_dir)
    assert [e.kind for e in events] == ["result"]  # the kind function never ran


def test_failure_is_recorded_with_the_message(start):
    handle = start({"seconds": 2, "interval": 0.05, "fail_at": 3})
    status = wait_terminal(handle.job_dir)
    assert status.state == FAILED and status.exit_code == 1
    assert "selftest failure injected at step 3" in status.error
    assert handle.process.wait(TIMEOUT_S) == 1
    events = journal(handle.job_dir)
    assert_gap_free(events)
    error, result = events[-2], events[-1]
    assert error.kind == "error" and "step 3" in error.payload["message"]
    assert "RuntimeError" in error.payload["traceback"]
    assert result.kind == "result" and result.payload["status"] == FAILED
    assert sum(e.kind == "progress" for e in events) == 2
    assert "RuntimeError" in (handle.job_dir / "stderr.log").read_text()


def test_list_and_find_jobs(start, jobs_dir):
    assert list_jobs(jobs_dir) == []
    first = start({"seconds": 0.1, "interval": 0.1})
    second = start({"seconds": 0.1, "interval": 0.1})
    wait_terminal(first.job_dir)
    wait_terminal(second.job_dir)
    broken = jobs_dir / "00000000-000000-broken-0000"
    write_atomic(broken / "spec.json", "{}")
    write_atomic(broken / "status.json", "{not json")
    (jobs_dir / "not-a-job").mkdir()

    listed = list_jobs(jobs_dir)
    assert len(listed) == 3
    readable = [s for s in listed if s.state != UNKNOWN]
    assert [s.job_id for s in readable] == [second.job_id, first.job_id]  # newest first
    assert [s.state for s in readable] == [SUCCEEDED, SUCCEEDED]
    (unreadable,) = [s for s in listed if s.state == UNKNOWN]
    assert unreadable.job_id == broken.name and "invalid JSON" in unreadable.error

    assert find_job(jobs_dir, first.job_id) == first.job_dir
    ids = [first.job_id, second.job_id]
    for job_id, handle in zip(ids, (first, second)):
        prefix = next(job_id[:n] for n in range(1, len(job_id) + 1)
                      if sum(other.startswith(job_id[:n]) for other in ids) == 1)
        assert find_job(jobs_dir, prefix) == handle.job_dir
    common = os.path.commonprefix(ids)
    with pytest.raises(InputError, match="matches 2 jobs") as ambiguous:
        find_job(jobs_dir, common)
    assert "more characters" in ambiguous.value.hint
    with pytest.raises(InputError, match="no job matches"):
        find_job(jobs_dir, "zzz")
    with pytest.raises(InputError):
        find_job(jobs_dir, "")


def test_start_job_rejects_bad_input(jobs_dir):
    with pytest.raises(InputError, match="unknown job kind") as unknown:
        start_job(jobs_dir, "no-such-kind", {})
    assert "selftest" in unknown.value.hint
    with pytest.raises(InputError, match="plain JSON"):
        start_job(jobs_dir, "selftest", {"path": Path("/x")})
    assert not jobs_dir.exists() or not any(jobs_dir.iterdir())


def test_job_ids_are_short_counters_usable_whole_and_old_long_ids_still_resolve(start, jobs_dir):
    old = _handmade_job(jobs_dir, "20260101-000000-selftest-0a1b", state=SUCCEEDED, created=1.0)
    handles = [start({"seconds": 0.1, "interval": 0.1}) for _ in range(2)]
    assert [h.job_id for h in handles] == ["j1", "j2"]
    for handle in handles:
        wait_terminal(handle.job_dir)
        assert find_job(jobs_dir, handle.job_id) == handle.job_dir
    assert find_job(jobs_dir, "20260101") == old   # a unique prefix of an old timestamped id
    # A deleted job's number is not handed out again (its id may be named in evidence).
    import shutil

    shutil.rmtree(handles[1].job_dir)
    third = start({"seconds": 0.1, "interval": 0.1})
    assert third.job_id == "j3"
    wait_terminal(third.job_dir)
    # j1 exactly beats the prefix j1 of j10..j12; j1 gone, the prefix is ambiguous and says which.
    for number in (10, 11, 12):
        _handmade_job(jobs_dir, f"j{number}", state=SUCCEEDED)
    assert find_job(jobs_dir, "j1") == handles[0].job_dir
    shutil.rmtree(handles[0].job_dir)
    with pytest.raises(InputError, match=r"'j1' matches 3 jobs: j10, j11, j12"):
        find_job(jobs_dir, "j1")
    assert start({"seconds": 0.1, "interval": 0.1}).job_id == "j13"
