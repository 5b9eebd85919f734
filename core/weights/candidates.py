"""Candidates in weightgate.toml: shortlist (with cached metadata), choose, fetch."""

from __future__ import annotations

import tomlkit

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.jobs import start_job
from weightgate.core.engine.workspace import Workspace
from weightgate.core.weights.local_source import lock_local_source
from weightgate.core.weights.metadata import fetch_metadata
from weightgate.core.weights.metadata_cache import candidate_specs, load_metadata, save_metadata
from weightgate.core.weights.sources import parse_source

LARGE = 7_000_000_000   # a shortlist that starts here should have a reason


def metadata_summary(data: dict) -> dict:
    keys = ("parameter_count", "parameters", "size_class", "bf16_bytes", "weight_bytes", "license",
            "remote_code", "remote_code_reasons", "architecture", "context_length", "num_layers",
            "commit", "warnings")
    return {key: data.get(key) for key in keys}


def candidate_entry(config: dict, spec: str) -> dict:
    """The [[candidates]] table of `spec` ({} when it is not a candidate)."""
    for entry in config.get("candidates") or []:
        if isinstance(entry, dict) and entry.get("source") == spec:
            return entry
    return {}


def add_candidate(ws: Workspace, spec: str, note: str = "", *, sha256: str = "", origin: str = "") -> dict:
    """Read the metadata (no weights), cache it, append [[candidates]]. Returns the summary.
    sha256: the published hash of a single-file source (a GGUF); origin: the hub repo it derives from."""
    config = plain(ws.config())
    if spec in candidate_specs(config):
        raise InputError(f"{spec} is already a candidate", path=ws.config_path)
    summary = metadata_summary(fetch_metadata(spec).to_dict())
    save_metadata(ws, spec, summary)

    def change(doc):
        if "candidates" not in doc:
            doc.add(tomlkit.nl())
            doc["candidates"] = tomlkit.aot()
        table = tomlkit.table()
        table["source"] = spec
        if note:
            table["note"] = note
        if sha256:
            table["sha256"] = sha256
        if origin:
            table["origin"] = origin
        doc["candidates"].append(table)
    ws.update_config(change)
    warnings = list(summary.get("warnings") or [])
    sizes = [(load_metadata(ws, s) or {}).get("parameter_count") or 0 for s in candidate_specs(plain(ws.config()))]
    if summary["parameter_count"] >= LARGE and not any(0 < size < LARGE for size in sizes):
        warnings.append("a large model is shortlisted without a smaller one: start with the smallest "
                        "plausible model")
    if sizes != sorted(sizes):
        warnings.append("the shortlist is not smallest first; reorder [[candidates]] in weightgate.toml")
    summary["warnings"] = warnings
    return summary


def choose_model(ws: Workspace, spec: str, reason: str) -> None:
    if spec not in candidate_specs(plain(ws.config())):
        raise InputError(f"{spec} is not a shortlisted candidate", path=ws.config_path,
                         hint=f"add it first: weightgate weights add {spec}")
    if not reason.strip():
        raise InputError("a choice needs a reason", hint='--reason "clears every requirement at the lowest cost"')

    def change(doc):
        if "decisions" not in doc:
            doc["decisions"] = tomlkit.table()
        doc["decisions"]["model"] = spec
        doc["decisions"]["model_reason"] = reason.strip()
    ws.update_config(change)


def chosen_model(ws: Workspace) -> str:
    decisions = plain(ws.config()).get("decisions") or {}
    model = decisions.get("model") if isinstance(decisions, dict) else None
    if not model:
        raise InputError("no model chosen yet", path=ws.config_path,
                         hint="weightgate weights choose SOURCE --reason \"...\" (or pass SOURCE to fetch)")
    return str(model)


def start_fetch(ws: Workspace, spec: str) -> dict:
    """A hub source starts the download job (pinned to the commit seen at selection, when
    cached), a GGUF file the lock_gguf job (hashed against the candidate's published sha256,
    converted once to safetensors); a local directory is hashed and locked now."""
    source = parse_source(spec)
    if source.kind == "gguf":
        entry = candidate_entry(plain(ws.config()), spec)
        decisions = plain(ws.config()).get("decisions") or {}
        params = {"source": source.path, "published_sha256": str(entry.get("sha256") or ""),
                  "origin": str(entry.get("origin") or ""),
                  "provenance": str(decisions.get("model_provenance") or "") if isinstance(decisions, dict) else ""}
        handle = start_job(ws.jobs_dir, "lock_gguf", params, workspace=ws.root)
        return {"job": handle.job_id, "job_dir": str(handle.job_dir), "source": spec, "kind": "lock_gguf"}
    if source.kind == "hub":
        cached = load_metadata(ws, spec) or {}
        params = {"source": spec}
        if cached.get("commit"):
            params["commit"] = cached["commit"]
        handle = start_job(ws.jobs_dir, "download", params, workspace=ws.root)
        return {"job": handle.job_id, "job_dir": str(handle.job_dir), "source": spec}

    provenance = ""
    decisions = plain(ws.config()).get("decisions") or {}
    if isinstance(decisions, dict) and decisions.get("model_provenance"):
        provenance = str(decisions["model_provenance"])
    lock = lock_local_source(ws, source, provenance=provenance)
    return {"job": None, "source": spec, "files": len(lock.files), "bytes": lock.total_bytes(),
            "lock": str(ws.lock_path)}
