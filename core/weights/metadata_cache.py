"""Candidate metadata (parameters, size class, licence, ...) cached in .weightgate/metadata/, so
status and the Selection screen never hit the network. Written by `weightgate weights inspect --save`
and `weightgate weights add`."""

from __future__ import annotations

import json
from pathlib import Path

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.digest import digest_value
from weightgate.core.engine.workspace import Workspace


def candidate_specs(config: dict) -> list[str]:
    candidates = config.get("candidates")
    if not isinstance(candidates, list):
        return []
    return [str(entry["source"]) for entry in candidates if isinstance(entry, dict) and entry.get("source")]


def _path(ws: Workspace, spec: str) -> Path:
    return ws.state_dir / "metadata" / (digest_value(spec).split(":", 1)[1][:24] + ".json")


def save_metadata(ws: Workspace, spec: str, metadata: dict) -> Path:
    path = _path(ws, spec)
    write_atomic(path, json.dumps({"spec": spec, **metadata}, indent=2, sort_keys=True, default=str))
    return path


def load_metadata(ws: Workspace, spec: str) -> dict | None:
    path = _path(ws, spec)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None   # a torn cache entry is just re-fetched
    return data if data.get("spec") == spec else None
