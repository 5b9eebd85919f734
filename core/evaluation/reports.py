"""Measurement reports that are not eval runs (determinism, latency, benchmark):
`.weightgate/reports/<kind>-<utc time>.json`, newest last by name. Torch-free: status reads them."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.workspace import Workspace

KINDS = ("determinism", "latency", "benchmark")


def reports_dir(ws: Workspace) -> Path:
    return ws.state_dir / "reports"


def save_report(ws: Workspace, kind: str, data: dict) -> Path:
    # Milliseconds + a random tail: two reports in one second still sort by time and never collide.
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}"
    path = reports_dir(ws) / f"{kind}-{stamp}-{secrets.token_hex(2)}.json"
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
    return path


def _newest_report(ws: Workspace, kind: str, accept) -> dict | None:
    """The newest readable report of a kind that `accept`s, with its path (relative to the
    workspace) as "report"; a damaged report does not hide an older good one."""
    directory = reports_dir(ws)
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob(f"{kind}-*.json"), reverse=True):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and accept(data):
            data["report"] = str(path.relative_to(ws.root))
            return data
    return None


def latest_report(ws: Workspace, kind: str) -> dict | None:
    """The newest readable report of a kind, with its path (relative to the workspace) as "report"."""
    return _newest_report(ws, kind, lambda data: True)


def find_report(ws: Workspace, kind: str, reuse_key: str) -> dict | None:
    """The newest readable report of a kind made with this reuse key (what would be measured
    again), with its path as "report"; None when there is none."""
    return _newest_report(ws, kind, lambda data: data.get("reuse_key") == reuse_key)
