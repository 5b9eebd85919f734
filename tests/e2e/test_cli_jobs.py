"""Jobs outside the TUI, in human units: `attach` (durations, bytes, rates, readable results;
--json keeps the raw values), the `jobs` table's progress / ETA / rate columns, and
`jobs --watch`, which redraws until idle (or Ctrl-C) and rings the bell when a job ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from weightgate.core.engine.events import JournalWriter, Metric, Progress, Result
from weightgate.core.engine.jobs import SUCCEEDED, JobSpec, JobStatus, events_path, write_status
from weightgate.core.engine.workspace import init_workspace


def wg(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "weightgate", *map(str, args)], env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


def recorded_training_job(ws, job_id="j1"):
    """A finished job directory with a training journal as the train job writes it."""
    job_dir = ws.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    (job_dir / "spec.json").write_text(JobSpec(job_id, "train", {}, 1000.0).to_json())
    write_status(job_dir, JobStatus(job_id, "train", SUCCEEDED, 1000.0, 2740.0, started=1001.0, ended=2740.0,
                                    exit_code=0))
    journal = JournalWriter(events_path(job_dir))
    journal.emit(Progress(done=20, total=168, unit="step", eta_s=1800.0, message="loss 1.2000"))
    journal.emit(Progress(done=40, total=168, unit="step", eta_s=1739.0, message="loss 1.1000"))
    journal.emit(Metric(values={"step": 40, "loss": 1.1, "tokens_per_s": 812.3, "memory_bytes": 1651122176,
                                "eta_s": 1739.0}, step=40))
    journal.emit(Result(status="succeeded", data={"run": "r1", "best_val_loss": 0.9876, "elapsed_s": 1740.0,
                                                  "peak_memory_bytes": 1651122176}))
    return job_dir


def test_attach_prints_human_units_and_json_keeps_the_raw_values(tmp_path):
    ws = init_workspace(tmp_path / "w")
    recorded_training_job(ws)
    out = wg("-w", ws.root, "attach", "j1", "--no-follow")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "40/168 step (24%)  14 s/step  eta 28 m 59 s  loss 1.1000" in text and "1739s" not in text
    assert "memory 1.5 GiB" in text and "1651122176" not in text
    assert "812 tok/s" in text
    result = next(line for line in text.splitlines() if " result " in line)
    assert "succeeded: run r1  best_val_loss 0.9876  elapsed 29 m 00 s  peak_memory 1.5 GiB" in result
    assert "{" not in result
    raw = [json.loads(line) for line in wg("-w", ws.root, "attach", "j1", "--no-follow", "--json").stdout.splitlines()]
    assert raw[2]["payload"]["values"]["memory_bytes"] == 1651122176 and raw[1]["payload"]["eta_s"] == 1739.0


def test_jobs_lists_progress_eta_and_rate_of_a_live_job(tmp_path):
    ws = init_workspace(tmp_path / "w")
    job = json.loads(wg("-w", ws.root, "jobs", "selftest", "--seconds", "6", "--interval", "0.2", "--json").stdout)
    assert job["job"] == "j1"
    deadline = time.monotonic() + 30
    while True:
        out = wg("-w", ws.root, "jobs")
        header, *rows = out.stdout.splitlines()
        if "running" in rows[0] and "/30 step" in rows[0]:
            break
        assert time.monotonic() < deadline, out.stdout
        time.sleep(0.3)
    assert header.split() == ["ID", "KIND", "STATE", "PROGRESS", "ETA", "RATE", "STARTED", "NOTE"]
    cells = rows[0].split()
    assert cells[:3] == ["j1", "selftest", "running"]
    assert cells[3].endswith("/30") and cells[5].endswith("%") and cells[7] == "s" and cells[9] == "step/s"
    wg("-w", ws.root, "cancel", "j1", "--grace", "10")


def test_jobs_watch_redraws_until_idle_and_rings_the_bell_when_a_job_ends(tmp_path):
    ws = init_workspace(tmp_path / "w")
    assert wg("-w", ws.root, "jobs", "selftest", "--seconds", "5", "--interval", "0.1").returncode == 0
    out = wg("-w", ws.root, "jobs", "--watch", "--until-idle", "--interval", "0.2", timeout=40)
    assert out.returncode == 0, out.stderr
    frames = out.stdout.split("ID  KIND")
    assert len(frames) >= 3 and any("running" in frame for frame in frames)
    assert "job j1 (selftest) succeeded" in out.stdout and out.stdout.count("\a") == 1
    assert out.stdout.rstrip("\a\n").endswith("job j1 (selftest) succeeded")
    assert "\a" not in wg("-w", ws.root, "jobs", "--watch", "--until-idle", "--no-bell").stdout


def test_jobs_watch_stops_on_ctrl_c_and_the_job_goes_on(tmp_path):
    ws = init_workspace(tmp_path / "w")
    wg("-w", ws.root, "jobs", "selftest", "--seconds", "30")
    watcher = subprocess.Popen([sys.executable, "-m", "weightgate", "-w", str(ws.root), "jobs", "--watch",
                                "--interval", "0.2"], stdout=subprocess.PIPE, text=True)
    assert "j1" in watcher.stdout.readline() + watcher.stdout.readline() + watcher.stdout.readline()
    watcher.send_signal(signal.SIGINT)
    assert watcher.wait(timeout=10) == 0
    assert json.loads(wg("-w", ws.root, "jobs", "--json").stdout)[0]["state"] == "running"
    wg("-w", ws.root, "cancel", "j1", "--grace", "10")
