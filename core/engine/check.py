"""What a check is: a function from a CheckContext to a CheckResult.

Each phase's `checks.py` holds the functions that decide its items; `core/gates.py` maps item
ids to them. A check reads today's inputs through one CheckContext per status computation, so
the lock, the fingerprints and the evidence log are read once however many checks need them.
`todo` means an input is not filled in yet, `fail` that it is filled in but wrong; `detail`
says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from weightgate.core.engine.evidence import Evidence, read_evidence
from weightgate.core.engine.fingerprints import Fingerprints, plain
from weightgate.core.engine.workspace import Workspace


@dataclass
class CheckResult:
    status: str            # pass | fail | todo | not-needed
    detail: str
    values: dict = field(default_factory=dict)


class CheckContext:
    """What checks read, loaded once per status computation."""

    def __init__(self, ws: Workspace, config: dict | None = None, prints: Fingerprints | None = None):
        self.ws = ws
        self.config = config if config is not None else plain(ws.config())
        self.prints = prints or Fingerprints(ws, self.config)
        self.cache: dict[str, Any] = {}   # per-computation memo of the checks (the lock, scans, runs)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute() once per status computation."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def table(self, name: str) -> dict:
        """A top-level table of weightgate.toml, {} when absent or not a table."""
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    def requirements(self) -> dict:
        return self.table("requirements")

    def decisions(self) -> dict:
        return self.table("decisions")

    def fresh_record(self, item_id: str) -> Evidence | None:
        """The item's latest check or job record while its fingerprints equal today's, else None."""
        latest = self.memo("latest_records", self._latest_records)
        record = latest.get(item_id)
        if record is None or self.prints.changed(record.fingerprints):
            return None
        return record

    def _latest_records(self) -> dict[str, Evidence]:
        return {record.item: record for record in read_evidence(self.ws) if record.kind in ("check", "job")}


CheckFunction = Callable[[CheckContext], CheckResult]
