"""What the Deployment screen shows: the registry's versions with their aliases, relation and
scores, each checked by size and mtime against its last full verification, the endpoints that
running `weightgate release serve` jobs serve it at, and the history of alias moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.jobs import RUNNING, list_jobs
from weightgate.core.registry.store import VersionRef, release_decision
from weightgate.core.registry.verify import quick_state
from weightgate.core.registry.versions import list_release_versions


@dataclass
class VersionsView:
    name: str = ""
    versions: list[dict] = field(default_factory=list)     # core.registry.versions rows + "checksum": (state, detail)
    history: list[dict] = field(default_factory=list)
    release: str | None = None                              # [decisions] release
    error: str | None = None


def read_versions(ws) -> VersionsView:
    try:
        listing = list_release_versions(ws)
    except InputError as exc:
        return VersionsView(error=exc.message + (f" ({exc.hint})" if exc.hint else ""))

    for row in listing["versions"]:
        if "error" in row:
            row["checksum"] = ("fail", row["error"])
            continue
        state, detail, _ = quick_state(ws, VersionRef(listing["name"], row["version"], Path(row["path"])))
        row["checksum"] = (state, detail)
    serving = running_endpoints(ws)
    for row in listing["versions"]:
        row["endpoints"] = [e for e in serving if e.get("version") == row.get("label")]
    return VersionsView(listing["name"], listing["versions"], listing["history"],
                        release_decision(plain(ws.config())) or None)


def running_endpoints(ws) -> list[dict]:
    """{"job", "url", "pid", "version"} of every running serve job that journaled `serving at URL`."""
    found = []
    for status in list_jobs(ws.jobs_dir):
        if status.kind != "serve" or status.state != RUNNING or status.job_dir is None:
            continue
        events, _ = read_events(status.job_dir / "events.jsonl")
        ready = [e.payload for e in events if e.kind == "log" and e.payload.get("url") and e.payload.get("pid")]
        if ready:
            found.append({"job": status.job_id, "url": ready[-1]["url"], "pid": ready[-1]["pid"],
                          "version": ready[-1].get("version")})
    return found
