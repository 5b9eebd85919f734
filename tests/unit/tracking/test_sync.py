"""Replaying a journal into MLflow and TensorBoard without a model: a training job's journal
written by hand, a sync cut short half-way through a run (the next one replaces it whole: one
run, no doubled points), and the tracking config's paths and redaction."""

from __future__ import annotations

import time

import pytest

from weightgate.core.engine.events import JournalWriter, Metric, Result
from weightgate.core.engine.jobs import SPEC_FILE, JobSpec, JobStatus, events_path, write_status
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.tracking.config import redact, tracking_config
from weightgate.core.tracking.sync import sync_workspace, tracking_status

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

LOSSES = [2.5, 2.1, 1.8, 1.7, 1.65]


def fake_train_job(ws, job_id: str = "20260101-000000-train-abcd"):
    """A finished training job's directory as the job process leaves it (journal, spec, status)."""
    job_dir = ws.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    (job_dir / SPEC_FILE).write_text(JobSpec(job_id=job_id, kind="train", params={}, created=time.time(),
                                             workspace=str(ws.root)).to_json())
    journal = JournalWriter(events_path(job_dir))
    for step, loss in enumerate(LOSSES, start=1):
        journal.emit(Metric(step=step, values={"step": step, "loss": loss, "lr": 1e-3 * step, "grad_norm": 0.5,
                                               "tokens_per_s": 100.0, "eta_s": 3.0}))
        if step == 1:   # the same step twice (a worker's repeat): one point, the last value
            journal.emit(Metric(step=step, values={"step": step, "loss": loss}))
    journal.emit(Metric(step=5, values={"step": 5, "val_loss": 1.9}))
    journal.emit(Result(status="succeeded"))
    now = time.time()
    write_status(job_dir, JobStatus(job_id=job_id, kind="train", state="succeeded", created=now, updated=now,
                                    ended=now, exit_code=0))
    return job_dir


def test_a_sync_cut_short_is_replaced_whole_never_doubled(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ws = init_workspace(tmp_path / "ws")
    ws.update_config(lambda doc: doc.update(tracking={"mlflow": "sqlite:///mlflow.db", "tensorboard": "board"}))
    job_dir = fake_train_job(ws)
    uri = tracking_config(ws).mlflow
    assert uri == "sqlite:///" + str(ws.root / "mlflow.db")   # relative to the workspace, not the cwd

    calls = {"n": 0}
    real = MlflowClient.set_terminated

    def dies_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("server went away")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_terminated", dies_once)
    first = sync_workspace(ws)
    (mlflow_report, board_report) = first.destinations
    assert "server went away" in mlflow_report.error and mlflow_report.pending == 1
    assert board_report.error is None and board_report.mirrored == [f"job:{job_dir.name}"]
    assert tracking_status(ws)["destinations"][0]["pending"] == [f"job:{job_dir.name}"]

    second = sync_workspace(ws)
    assert second.ok and second.destinations[0].mirrored == [f"job:{job_dir.name}"]
    assert second.destinations[1].mirrored == []
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(f"weightgate-{ws.root.name}")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1   # the half-written one was deleted, not left beside the whole one
    history = client.get_metric_history(runs[0].info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == list(enumerate(LOSSES, start=1))
    assert [m.value for m in client.get_metric_history(runs[0].info.run_id, "val_loss")] == [1.9]
    assert not {"eta_s", "step"} & set(runs[0].data.metrics)

    accumulator = EventAccumulator(str(ws.root / "board" / "train" / job_dir.name))
    accumulator.Reload()
    assert [(s.step, round(s.value, 5)) for s in accumulator.Scalars("loss")] == list(enumerate(LOSSES, start=1))
    assert sync_workspace(ws).destinations[0].mirrored == []


def test_config_paths_and_redaction(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    assert not tracking_config(ws).enabled
    ws.update_config(lambda doc: doc.update(tracking={"mlflow": True, "tensorboard": True}))
    config = tracking_config(ws)
    assert config.mlflow == "sqlite:///" + str(ws.root / ".weightgate" / "tracking" / "mlflow.db")
    assert config.tensorboard == ws.root / ".weightgate" / "tracking" / "tensorboard"
    assert redact("https://alice:tok3n@mlflow.example:5000/x") == "https://***@mlflow.example:5000/x"
    assert redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
