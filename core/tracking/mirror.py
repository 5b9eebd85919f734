"""What a tracker gets, as backend-neutral records: a training job's journal, an eval run, a
registry version. Built from the files weightgate wrote (the journal is the source of truth), so
the live mirror at a job's end and `weightgate track sync` later send exactly the same thing.

Each record has a key (its identity in the tracker: one MLflow run, one TensorBoard run directory)
and a fingerprint (what was sent): a record whose fingerprint a destination already holds is not
sent again, one whose fingerprint changed (a release's aliases moved, a partial run completed) is
replaced, never appended to, so replaying never duplicates a metric.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import ARTIFACT, METRIC, RESULT, Event, read_events
from weightgate.core.engine.jobs import events_path, read_spec
from weightgate.core.evaluation.runs import Run
from weightgate.core.registry import store
from weightgate.core.registry.manifest import read_manifest

# The per-step values of a training journal a tracker gets (step, eta and flags stay in the journal).
TRAIN_METRICS = ("loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "epoch", "tokens", "memory_bytes",
                 "grad_scale")
# MLflow refuses longer parameter values on some stores; the journal keeps the whole value.
MAX_PARAM_CHARS = 500


@dataclass(frozen=True)
class Point:
    name: str
    value: float
    step: int
    time: float


@dataclass
class Record:
    key: str                      # "job:<id>", "eval:<run id>", "release:<name>@<version>"
    kind: str                     # train | eval | release
    name: str                     # the run's name in the tracker
    path: tuple[str, ...]         # where under the TensorBoard directory
    fingerprint: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[Point] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)
    status: str = "succeeded"     # succeeded | failed | cancelled | crashed
    text: str = ""                # a summary (TensorBoard's text tab)
    release: dict | None = None   # model, version, number, aliases: the registered model version


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _params(prefix: str, values: dict) -> dict[str, str]:
    """Flatten a dict to name -> short string (nested dicts as a.b, lists as JSON)."""
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_params(name + ".", value))
        elif value is not None:
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            out[clean_name(name)] = text[:MAX_PARAM_CHARS]
    return out


def clean_name(name: str) -> str:
    """A name every tracker accepts (MLflow allows letters, digits, _ - . space / :)."""
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "_", name)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- training jobs ---------------------------------------------------------------------------


def train_record(job_dir: Path, events: list[Event] | None = None, status: str | None = None) -> Record:
    """A training job's record from its journal: every step's values (the last value of a step
    wins, so a journal repeated by a resumed worker still gives one point a step), the run's
    identity as params, run.json as an artifact.

    events / status: the live hook passes what it has before the job's `result` is written;
    sync reads both from the journal."""

    job_dir = Path(job_dir)
    spec = read_spec(job_dir)
    if events is None:
        events, _ = read_events(events_path(job_dir))
    points: dict[tuple[str, int], Point] = {}
    run_path: Path | None = None
    for event in events:
        if event.is_note:
            continue
        if event.kind == METRIC:
            step = event.payload.get("step")
            values = event.payload.get("values")
            if isinstance(step, bool) or not isinstance(step, int) or not isinstance(values, dict):
                continue
            for name in TRAIN_METRICS:
                value = _number(values.get(name))
                if value is not None:
                    points[(name, step)] = Point(name, value, step, event.time)
        elif event.kind == ARTIFACT and event.payload.get("label") == "run":
            run_path = Path(event.payload["path"])
        elif event.kind == RESULT and status is None:
            status = event.payload.get("status")
    status = status or "crashed"
    identity: dict = {}
    artifacts = []
    if run_path is not None and (run_path / "run.json").is_file():
        try:
            identity = json.loads((run_path / "run.json").read_text(encoding="utf-8"))
            artifacts.append(run_path / "run.json")
        except ValueError:
            identity = {}
    run_id = str(identity.get("run_id") or (run_path.name if run_path else ""))
    params = _params("", {key: identity.get(key) for key in (
        "run_id", "method", "precision", "device", "nproc", "total_steps", "warmup_steps", "max_steps", "max_seq",
        "train_examples", "dataset_digest", "model_dir", "targets")})
    params.update(_params("config.", identity.get("config") or {}))
    params.update(_params("batch.", identity.get("batch") or {}))
    ordered = sorted(points.values(), key=lambda p: (p.step, p.name))
    losses = [p for p in ordered if p.name == "loss"]
    text = (f"training run {run_id}, job {spec.job_id}: {status}, {len(losses)} steps"
            + (f", last loss {losses[-1].value:.4g}" if losses else ""))
    return Record(key=f"job:{spec.job_id}", kind="train", name=f"train {run_id or spec.job_id}",
                  path=("train", spec.job_id), fingerprint=_digest([status, [(p.name, p.step, p.value) for p in ordered]]),
                  params=params, metrics=ordered, artifacts=artifacts, status=status, text=text,
                  tags={"weightgate.kind": "train", "weightgate.job": spec.job_id, "weightgate.training_run": run_id,
                        "weightgate.status": status})


# --- eval runs -------------------------------------------------------------------------------


def eval_record(run: Run) -> Record:
    """An eval run's scores, overall and by tag (score/hard, passed/hard, ...), with its identity's
    components as params; run.json as an artifact."""

    summary = run.summary or {}
    metrics: list[Point] = []

    def add(name: str, value) -> None:
        number = _number(value)
        if number is not None and math.isfinite(number):
            metrics.append(Point(clean_name(name), number, 0, run.created))

    for name in ("score", "passed", "cases", "tokens_per_s", "seconds"):
        add(name, summary.get(name))
    for tag, block in sorted((summary.get("by_tag") or {}).items()):
        if isinstance(block, dict):
            for name in ("score", "passed", "cases"):
                add(f"{name}/{tag}", block.get(name))
    components = dict(run.components)
    params = {"set": run.set, "identity": run.digest, **_params("", components)}
    score = summary.get("score")
    text = (f"eval run {run.id} ({run.set} set): {summary.get('passed')}/{summary.get('cases')}"
            + (f", score {score:.3f}" if isinstance(score, (int, float)) else "") + f", {run.status}")
    status = {"complete": "succeeded", "failed": "failed"}.get(run.status, "cancelled")
    artifacts = [run.path / "run.json"] if run.path is not None and (run.path / "run.json").is_file() else []
    return Record(key=f"eval:{run.id}", kind="eval", name=f"eval {run.set} {run.id}", path=("eval", run.id),
                  fingerprint=_digest([run.status, run.baseline, [(p.name, p.value) for p in metrics]]),
                  params=params, metrics=metrics, artifacts=artifacts, status=status, text=text,
                  tags={"weightgate.kind": "eval", "weightgate.eval_run": run.id, "weightgate.set": run.set,
                        "weightgate.baseline": str(run.baseline).lower(), "weightgate.status": run.status})


# --- registry versions -----------------------------------------------------------------------


def release_record(ws, ref: store.VersionRef, aliases: dict[str, str] | None = None) -> Record:
    """A shipped version: its version, aliases and manifest digest (the content digest, which
    promotion leaves alone, and the manifest file's own sha256, which it changes), the shipped
    scores, manifest.toml as an artifact; and the registered model version it becomes."""

    manifest_path = ref.path / store.MANIFEST_FILE
    if not manifest_path.is_file():
        raise InputError(f"{ref.label} has no manifest", path=ref.path)
    manifest = read_manifest(ref.path)
    manifest_sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    aliases = aliases if aliases is not None else store.read_aliases(ws, ref.name)
    mine = sorted(alias for alias, version in aliases.items() if version == ref.version)
    release = manifest.get("release") if isinstance(manifest.get("release"), dict) else {}
    params = {"version": ref.version, "content_digest": str(release.get("content_digest", "")),
              **_params("release.", {k: v for k, v in release.items() if k not in ("version", "content_digest")})}
    for table in ("base", "precision", "adapter", "merge", "dataset"):
        block = manifest.get(table)
        if isinstance(block, dict):
            params.update(_params(f"{table}.", {k: v for k, v in block.items() if not isinstance(v, (list, dict))}))
    metrics = []
    for block in manifest.get("evals") or []:
        if isinstance(block, dict) and _number(block.get("score")) is not None:
            metrics.append(Point(clean_name(f"score/{block.get('set', 'task')}"), float(block["score"]), ref.number,
                                 float(release.get("created") or 0.0) or manifest_path.stat().st_mtime))
    metrics.append(Point("version", float(ref.number), ref.number, manifest_path.stat().st_mtime))
    text = (f"{ref.label}: aliases {', '.join(mine) or 'none'}; content digest {params['content_digest']}; "
            f"manifest sha256 {manifest_sha}")
    return Record(key=f"release:{ref.label}", kind="release", name=f"release {ref.label}",
                  path=("release", ref.name, ref.version), fingerprint=_digest([manifest_sha, mine]),
                  params=params, metrics=metrics, artifacts=[manifest_path], text=text,
                  tags={"weightgate.kind": "release", "weightgate.release": ref.label,
                        "weightgate.aliases": ",".join(mine), "weightgate.manifest_sha256": manifest_sha},
                  release={"model": ref.name, "version": ref.version, "number": ref.number, "aliases": mine})


def release_records(ws) -> list[Record]:
    records = []
    for name in store.list_names(ws):
        aliases = store.read_aliases(ws, name)
        for ref in store.list_versions(ws, name):
            records.append(release_record(ws, ref, aliases))
    return records
