"""`weightgate train runs` while a run is live: the steps done and the best checkpoint come from
the run's journal (run.json gets its outcome only at the end), as on the Fine-tuning screen."""

from __future__ import annotations

import json

import pytest
from training_helpers import checkpoint_at_least, make_workspace, params_for, wait_for
from typer.testing import CliRunner

from weightgate.core.engine.events import read_events
from weightgate.core.engine.jobs import cancel_job, events_path, start_job
from weightgate.tui.cli import build_app


def runs_cli(ws, *args):
    out = CliRunner().invoke(build_app(), ["-w", str(ws.root), "train", "runs", *args])
    assert out.exit_code == 0, out.output
    return out.output


@pytest.mark.timeout(150)
@pytest.mark.slow
def test_train_runs_shows_the_live_step_and_best_checkpoint_from_the_journal(tmp_path, tiny_model_dir):
    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    job = start_job(ws.jobs_dir, "train", params_for(split, 60, throttle_s=0.3), workspace=ws.root)
    try:
        wait_for(job.job_dir, checkpoint_at_least(3))   # eval_every = 3: one evaluated checkpoint
        listed = json.loads(runs_cli(ws, "--json"))
        text = runs_cli(ws)
        events, _ = read_events(events_path(job.job_dir))
    finally:
        cancel_job(job.job_dir, grace_s=30)
    [row] = listed
    assert row["status"] == "running" and row["total_steps"] > 3
    best = [e.payload for e in events if e.kind == "artifact" and e.payload.get("is_best")]
    steps = [e.payload["values"]["step"] for e in events if e.kind == "metric"]
    assert best and row["best_step"] == best[-1]["step"] and row["best_val_loss"] == best[-1]["val_loss"]
    assert best[-1]["step"] <= row["steps"] <= max(steps)   # read between the checkpoint and the test's read
    assert f"{row['steps']}/{row['total_steps']}" in text
    assert f"best {row['best_val_loss']:.4f} at step {row['best_step']}" in text
