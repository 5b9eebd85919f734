"""Mirroring to MLflow and TensorBoard through the real code paths: a training job on the tiny
model read back with MLflow's own client and TensorBoard's event reader (same steps and losses
as the journal), a tracker that is down (the job still succeeds, a warning in its journal, and
`weightgate track sync` fills it later, once), an eval job's scores by tag, a ship job and a
promotion (registered model version, aliases following the registry)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import tiny_workspace, wait_terminal
from training_helpers import make_workspace, params_for

from weightgate.core.engine.events import read_events
from weightgate.core.engine.jobs import events_path, start_job
from weightgate.core.tracking.sync import JOB_STATE, sync_workspace

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

STEPS = 6
OVERRIDE = "tests: tracking of a release on a workspace that walks phase 1 only"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow database for the module (creating one takes seconds); each workspace gets its
    own experiment (named after its directory)."""
    return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "mlflow.db")


@pytest.fixture(autouse=True)
def _fail_fast(monkeypatch):
    # A dead tracker must cost seconds, not MLflow's default minutes of retries (jobs inherit it).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")


def set_tracking(ws, **values):
    def change(doc):
        doc["tracking"] = values
    ws.update_config(change)


def client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def runs_with(uri, ws, key: str):
    mlflow = client(uri)
    experiment = mlflow.get_experiment_by_name(f"weightgate-{ws.root.name}")
    return mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`weightgate.key` = '{key}'")


def journal_series(job_dir, name: str) -> list[tuple[int, float]]:
    events, _ = read_events(events_path(job_dir))
    return [(e.payload["step"], e.payload["values"][name]) for e in events
            if e.kind == "metric" and name in e.payload["values"]]


def mlflow_series(uri, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client(uri).get_metric_history(run_id, name))


def board_series(directory, name: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return [(s.step, s.value) for s in accumulator.Scalars(name)]


def assert_same(board: list, journal: list) -> None:
    """The same steps, and values equal to float32 precision (what TensorBoard stores)."""
    assert [step for step, _ in board] == [step for step, _ in journal]
    assert [value for _, value in board] == pytest.approx([value for _, value in journal], rel=1e-6)


def train(ws, split, steps: int = STEPS):
    handle = start_job(ws.jobs_dir, "train", params_for(split, steps), workspace=ws.root)
    status = wait_terminal(handle.job_dir, timeout=240)
    assert status.state == "succeeded", status
    return handle.job_dir


def logs(job_dir) -> list[dict]:
    events, _ = read_events(events_path(job_dir))
    return [e.payload for e in events if e.kind == "log"]


def cli(ws, *args):
    return subprocess.run([sys.executable, "-m", "weightgate", "-w", str(ws.root), *args], capture_output=True,
                          text=True, timeout=180)


@pytest.mark.slow   # a training job process, about 40 s on two shared cores
def test_a_training_job_is_mirrored_to_mlflow_and_tensorboard_and_a_replay_adds_nothing(tmp_path, tiny_model_dir,
                                                                                         store):
    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    set_tracking(ws, mlflow=store, tensorboard="board")
    job_dir = train(ws, split)
    losses, val = journal_series(job_dir, "loss"), journal_series(job_dir, "val_loss")
    assert [step for step, _ in losses] == list(range(1, STEPS + 1)) and val

    (run,) = runs_with(store, ws, f"job:{job_dir.name}")
    assert mlflow_series(store, run.info.run_id, "loss") == losses
    assert mlflow_series(store, run.info.run_id, "val_loss") == val
    for name in ("lr", "grad_norm", "tokens_per_s"):
        assert len(mlflow_series(store, run.info.run_id, name)) == STEPS, name
    assert run.info.status == "FINISHED" and run.data.params["config.lr"] == "0.001"
    assert run.data.tags["weightgate.training_run"] == run.data.params["run_id"]
    board = ws.root / "board" / "train" / job_dir.name
    assert_same(board_series(board, "loss"), losses)
    assert_same(board_series(board, "val_loss"), val)
    assert any("tracking:" in entry["message"] and "mirrored" in entry["message"] for entry in logs(job_dir))

    # Replays: nothing new, nothing doubled, even when the state file is gone (the tracker's own
    # tags say what it holds; TensorBoard's run is rewritten whole).
    for _ in range(2):
        report = sync_workspace(ws)
        assert report.ok and all(f"job:{job_dir.name}" not in d.mirrored for d in report.destinations)
    (job_dir / JOB_STATE).unlink()
    assert sync_workspace(ws).ok
    (again,) = runs_with(store, ws, f"job:{job_dir.name}")
    assert again.info.run_id == run.info.run_id
    assert mlflow_series(store, run.info.run_id, "loss") == losses
    assert_same(board_series(board, "loss"), losses)
    assert len(list(board.glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow   # a training job process and three CLI processes
def test_a_tracker_that_is_down_never_fails_the_job_and_sync_fills_it_later(tmp_path, tiny_model_dir, store):
    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    set_tracking(ws, mlflow="http://user:s3cret@127.0.0.1:9")   # nothing listens on the discard port
    job_dir = train(ws, split, steps=4)
    warnings = [entry["message"] for entry in logs(job_dir) if entry.get("level") == "warning"]
    assert any("track sync" in message and "127.0.0.1:9" in message for message in warnings), warnings
    assert not any("s3cret" in line for line in events_path(job_dir).read_text().splitlines())

    status = cli(ws, "track", "status", "--json")
    assert status.returncode == 0 and f"job:{job_dir.name}" in json.loads(status.stdout)["destinations"][0]["pending"]
    down = cli(ws, "track", "sync", "--json")
    assert down.returncode == 1 and not json.loads(down.stdout)["ok"] and "s3cret" not in down.stdout + down.stderr

    set_tracking(ws, mlflow=store)
    out = cli(ws, "track", "sync", "--json")
    assert out.returncode == 0, out.stderr
    assert f"job:{job_dir.name}" in json.loads(out.stdout)["destinations"][0]["mirrored"]
    (run,) = runs_with(store, ws, f"job:{job_dir.name}")
    assert mlflow_series(store, run.info.run_id, "loss") == journal_series(job_dir, "loss")
    again = cli(ws, "track", "sync", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["destinations"][0]["mirrored"] == []
    assert len(client(store).get_metric_history(run.info.run_id, "loss")) == 4


@pytest.mark.slow   # an eval job and a ship job
def test_eval_scores_by_tag_and_a_release_with_its_aliases(tmp_path, tiny_model_dir, store):
    from weightgate.core.evaluation.runs import list_runs
    from weightgate.core.registry import store as registry
    from weightgate.core.release.promote import promote

    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    set_tracking(ws, mlflow=store, tensorboard="board")
    handle = start_job(ws.jobs_dir, "eval", {"set": "task"}, workspace=ws.root)
    assert wait_terminal(handle.job_dir, timeout=180).state == "succeeded"
    (run,) = list_runs(ws)
    (mirrored,) = runs_with(store, ws, f"eval:{run.id}")
    metrics = mirrored.data.metrics
    assert metrics["score"] == run.summary["score"] and metrics["cases"] == 24
    for tag in ("hard", "edge"):
        assert metrics[f"score/{tag}"] == run.summary["by_tag"][tag]["score"]
        assert metrics[f"cases/{tag}"] == 12
    assert mirrored.data.params["identity"] == run.digest
    assert board_series(ws.root / "board" / "eval" / run.id, "score/hard") == [(0, pytest.approx(
        run.summary["by_tag"]["hard"]["score"]))]

    handle = start_job(ws.jobs_dir, "ship", {"override": OVERRIDE}, workspace=ws.root)
    assert wait_terminal(handle.job_dir, timeout=240).state == "succeeded"
    (name,) = registry.list_names(ws)
    (shipped,) = runs_with(store, ws, f"release:{name}@v1")
    assert shipped.data.tags["weightgate.aliases"] == "candidate"
    digest = registry.resolve(ws, "v1", name).path / "manifest.toml"
    assert shipped.data.params["content_digest"].startswith("sha256:")
    model_versions = client(store).search_model_versions(f"name='{name}'")
    assert [mv.tags["weightgate.version"] for mv in model_versions] == ["v1"]
    assert client(store).get_model_version_by_alias(name, "candidate").version == model_versions[0].version
    artifacts = [a.path for a in client(store).list_artifacts(shipped.info.run_id)]
    assert "manifest.toml" in artifacts

    promote(ws, override=OVERRIDE)
    (promoted,) = runs_with(store, ws, f"release:{name}@v1")
    import hashlib

    assert promoted.info.run_id == shipped.info.run_id and promoted.data.tags["weightgate.aliases"] == "current"
    assert promoted.data.tags["weightgate.manifest_sha256"] == hashlib.sha256(digest.read_bytes()).hexdigest()
    assert client(store).get_model_version_by_alias(name, "current").version == model_versions[0].version
    assert "candidate" not in client(store).get_registered_model(name).aliases
    assert (ws.root / "board" / "release" / name / "v1").is_dir()
