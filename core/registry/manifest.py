"""manifest.toml of a shipped version: everything needed to reproduce it and to know what it is.

    schema = 1
    [release]      name, version, relation (adapter | merged | quantized | base), created,
                   content_digest, weightgate_version
    [base]         repo, kind, revision, commit, license, lock_digest, local_dir, [[base.files]]
    [[files]]      this version's files: path, size, sha256 (all but manifest, card, SHA256SUMS)
    [precision]    name, dtype, quantization (the bitsandbytes settings) or quantized = false
    [adapter]      present; digest of the adapter's files, its peft config (r, alpha, targets...)
    [merge]        decision (merged | separate | refused | none), reason, and the equality check
    [dataset]      digest, path, rows, counts (from .weightgate/data/<digest>/ when present)
    [[evals]]      per eval set: run id, identity digest, outputs digest, score, passed/cases,
                   and the hard and edge tags' scores
    [training]     the [training] table of weightgate.toml (hyperparameters, seed)
    [environment]  weightgate and package versions
    [code]         the workspace's git commit and dirty flag, when it is a git repository
    [serving]      context length and batch the requirements ask for
    [gates]        open (phases 1-5 passed at ship), held_by, and the override (reason, by, time)
                   when it shipped with closed gates
    [checklist]    the snapshot of every item of phases 1-6: status, detail, the evidence record's
                   digest and kind, the fingerprints it was decided on, attestation and waiver
                   notes; stage = "ship", re-taken at promotion (stage = "promote")
    [promotion]    when, by whom, from which version current moved (and the override, if any)

The content digest covers the version's files and this manifest minus the times (`created`),
the git dirty flag and the record of its checks ([gates], [checklist], [promotion]): shipping
identical content again is recognised and creates no version.
Torch-free.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import tomlkit

from weightgate.core.engine.digest import ABSENT, digest_value
from weightgate.core.engine.environment import versions
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import parse_config, setting_path
from weightgate.core.evaluation.plan import adapter_files_digest
from weightgate.core.registry.store import MANIFEST_FILE

SCHEMA = 1
PACKAGES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "huggingface_hub", "bitsandbytes",
            "accelerate")
# Keys that may differ between two ships of the same content.
VOLATILE = (("release", "created"), ("release", "content_digest"), ("release", "version"), ("code", "dirty"))
# What the version went through, not what it is: left out of the content digest.
RECORD_TABLES = ("gates", "checklist", "promotion")
# Every key a manifest must hold (tests and the ship.manifest check assert them).
REQUIRED = {
    "release": ("name", "version", "relation", "created", "content_digest", "weightgate_version"),
    "base": ("repo", "kind", "revision", "commit", "license", "lock_digest", "files"),
    "files": (),
    "precision": ("name", "dtype", "quantized"),
    "adapter": ("present",),
    "merge": ("decision", "reason"),
    "dataset": ("digest", "source"),
    "evals": (),
    "training": ("source",),
    "environment": ("weightgate", "python", "torch", "transformers", "peft", "safetensors", "huggingface_hub"),
    "code": ("git",),
    "serving": ("context_length", "batch_size"),
    "gates": ("open", "held_by"),
    "checklist": ("stage", "taken", "phases", "items"),
}
RELATIONS = ("adapter", "merged", "quantized", "base")


def clean(value):
    """Drop None (TOML has no null) and make every key a string."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value if v is not None]
    return value


def dumps(manifest: dict) -> str:
    doc = tomlkit.document()
    doc.add(tomlkit.comment("Written by weightgate release ship: what this version is and how it was made. Do not edit:"))
    doc.add(tomlkit.comment("SHA256SUMS covers this file."))
    for key, value in clean(manifest).items():
        doc.add(key, value)
    return tomlkit.dumps(doc)


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        raise InputError("no manifest.toml in this version", path=path, hint="ship the version again")
    return parse_config(path.read_text(encoding="utf-8"), path).unwrap()


def missing_keys(manifest: dict) -> list[str]:
    missing = []
    for table, keys in REQUIRED.items():
        if table not in manifest:
            missing.append(table)
            continue
        for key in keys:
            if not isinstance(manifest[table], dict) or key not in manifest[table]:
                missing.append(f"{table}.{key}")
    if manifest.get("release", {}).get("relation") not in RELATIONS:
        missing.append("release.relation (one of " + ", ".join(RELATIONS) + ")")
    return missing


def content_digest(manifest: dict, files: dict[str, str]) -> str:
    """The identity of a version's content: its files' hashes and the manifest minus times."""
    stable = json.loads(json.dumps(clean({k: v for k, v in manifest.items() if k not in RECORD_TABLES}),
                                   default=str))
    for table, key in VOLATILE:
        if isinstance(stable.get(table), dict):
            stable[table].pop(key, None)
    return digest_value({"files": sorted(files.items()), "manifest": stable})


# --- the parts ------------------------------------------------------------------------------


def environment() -> dict:
    return versions(PACKAGES)


def git_state(root: Path) -> dict:
    """The workspace's commit and whether its tracked files differ from it (the registry and
    .weightgate/ are weightgate's own output, not the code that made the version)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    inside = git("rev-parse", "--is-inside-work-tree")
    if not inside or inside.strip() != "true":
        return {"git": False}
    commit = (git("rev-parse", "HEAD") or "").strip()
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)registry",
                 ":(exclude).weightgate")
    return {"git": True, "commit": commit or "none (no commit yet)", "dirty": bool(status and status.strip())}


def dataset_block(ws, prints) -> dict:
    """The training data's digest and counts: from the data checks' directory
    (.weightgate/data/<digest>/) when it exists, else the `dataset` fingerprint and a line count."""

    digest = prints.get("dataset")
    path = setting_path(ws, plain(ws.config()), "train_data", "data/train.jsonl")
    block: dict = {"digest": digest, "source": "fingerprint"}
    if digest == ABSENT:
        block["note"] = "no training data: nothing was fine-tuned"
        return block
    try:
        block["path"] = str(path.relative_to(ws.root))
    except ValueError:
        block["path"] = str(path)
    with open(path, "rb") as handle:
        block["rows"] = sum(1 for line in handle if line.strip())
    # The data checks (core.training.data.prepare) write the prepared, split dataset under
    # .weightgate/data/<digest[:16]>/ and the latest report beside it.
    latest = ws.state_dir / "data" / "report.json"
    try:
        report = json.loads(latest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = None
    if isinstance(report, dict) and report.get("digest") and isinstance(report.get("counts"), dict):
        prepared = ws.state_dir / "data" / str(report["digest"])[:16]
        if prepared.is_dir():
            block.update(source="data-check", prepared_digest="sha256:" + str(report["digest"]),
                         data_dir=str(prepared.relative_to(ws.root)),
                         counts={k: v for k, v in report["counts"].items() if isinstance(v, int)})
    return block


def eval_block(run, set_name: str) -> dict:
    summary = run.summary
    by_tag = summary.get("by_tag") or {}
    tags = {tag: {k: by_tag[tag].get(k) for k in ("score", "passed", "cases")}
            for tag in ("hard", "edge", "canary") if tag in by_tag}
    return {"set": set_name, "run": run.id, "identity": run.digest, "outputs": run.identity.get("outputs", ""),
            "evalset": run.components.get("evalset", ""), "batch_size": run.components.get("batch_size"),
            "score": summary.get("score"), "passed": summary.get("passed"), "cases": summary.get("cases"),
            "baseline": run.baseline, "tags": tags, "results": f"eval/{set_name}"}


def training_run(adapter_dir: Path | None) -> dict | None:
    """run.json of the training run that produced the adapter (.weightgate/adapters/<run>/best)."""
    if adapter_dir is None:
        return None
    for directory in (adapter_dir, adapter_dir.parent):
        try:
            data = json.loads((directory / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            return data
    return None


def training_block(config: dict, adapter_dir: Path | None = None) -> dict:
    """The hyperparameters and seed: the training run's resolved config when the adapter came from
    `weightgate train start`, and the [training] table of weightgate.toml as written."""
    block: dict = {}
    training = config.get("training")
    if isinstance(training, dict) and training:
        block = {"source": "weightgate.toml [training]", **json.loads(json.dumps(training, default=str))}
    run = training_run(adapter_dir)
    if run is not None:
        block["source"] = f"training run {run.get('run_id')}"
        keep = ("run_id", "method", "precision", "targets", "dataset_digest", "train_examples", "total_steps",
                "warmup_steps", "max_seq", "nproc", "device", "precision_plan", "status", "outcome",
                "objective", "dpo")   # objective: sft or dpo; dpo: beta, loss, reference, TRL version
        block["run"] = json.loads(json.dumps({"config": run["config"], **{k: run[k] for k in keep if k in run}},
                                             default=str))
        block.setdefault("seed", run["config"].get("seed"))
    if not block:
        return {"source": "none", "note": "no [training] table in weightgate.toml and no training run"}
    return block


def adapter_block(adapter_dir: Path | None, decision) -> dict:
    if adapter_dir is None:
        return {"present": False}

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    keep = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias", "use_rslora", "use_dora",
            "modules_to_save", "task_type", "base_model_name_or_path", "peft_version")
    summary = {key: config[key] for key in keep if config.get(key) is not None}
    if isinstance(summary.get("target_modules"), (list, set)):
        summary["target_modules"] = sorted(summary["target_modules"])
    return {"present": True, "decision": str(decision.get("path") if isinstance(decision, dict) else decision),
            "digest": adapter_files_digest(adapter_dir), "config": summary}
