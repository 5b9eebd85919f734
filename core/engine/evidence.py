"""The append-only evidence log: every check result, attestation and waiver, with fingerprints.

An item's status is computed from this log and today's fingerprints, never stored.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable

from weightgate.core.engine.atomic import append_line
from weightgate.core.engine.checklist import Item, Severity, get_item
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import Fingerprints
from weightgate.core.engine.jsonl import iter_jsonl
from weightgate.core.engine.workspace import Workspace

# What a record says about its item.
PASS, FAIL, WAIVED, NOT_NEEDED, REVOKED = "pass", "fail", "waived", "not-needed", "revoked"
RECORD_STATUSES = {PASS, FAIL, WAIVED, NOT_NEEDED, REVOKED}
# How the record came to be.
# "override": an action done while the gates were closed (ship, promote), with its reason.
KINDS = {"check", "attest", "waive", "revoke", "job", "decision", "override"}


@dataclass
class Evidence:
    item: str
    status: str
    kind: str
    fingerprints: dict[str, str]
    values: dict = field(default_factory=dict)
    note: str = ""
    by: str = ""
    time: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @property
    def digest(self) -> str:
        """The record's identity: a release's checklist snapshot names the records it was decided
        on by this, so an edited or removed line is found by `weightgate release audit`."""
        return "sha256:" + hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def read_evidence(ws: Workspace) -> list[Evidence]:
    """Every record in order. A torn last line (a crash mid-append) is ignored, not fatal."""
    path = ws.evidence_path
    if not path.exists():
        return []
    records = []
    for line in iter_jsonl(path, allow_partial_tail=True):
        value = line.value
        if not isinstance(value, dict) or "item" not in value or "status" not in value:
            raise InputError("evidence record without item/status", path=path, line=line.number,
                             hint="evidence.jsonl is written by weightgate; restore it from a backup "
                                  "or delete the line")
        records.append(Evidence(
            item=value["item"], status=value["status"], kind=value.get("kind", "check"),
            fingerprints=dict(value.get("fingerprints") or {}), values=dict(value.get("values") or {}),
            note=value.get("note", ""), by=value.get("by", ""), time=float(value.get("time", 0.0)),
        ))
    return records


def latest_by_item(records: Iterable[Evidence]) -> dict[str, Evidence]:
    latest: dict[str, Evidence] = {}
    for record in records:
        latest[record.item] = record
    return latest


def append_evidence(ws: Workspace, record: Evidence) -> Evidence:
    if record.status not in RECORD_STATUSES:
        raise ValueError(f"bad evidence status {record.status!r}")
    if record.kind not in KINDS:
        raise ValueError(f"bad evidence kind {record.kind!r}")
    if not record.time:
        record.time = time.time()
    if not record.by:
        record.by = _user()
    line = record.to_json()
    append_line(ws.evidence_path, line)
    # What was written, as read back (JSON has no int keys or tuples): its digest is the one a
    # later reader of the log computes.
    return Evidence(**json.loads(line))


def record_result(ws: Workspace, item_id: str, status: str, values: dict | None = None, *,
                  kind: str = "job", note: str = "", fingerprints: Fingerprints | None = None) -> Evidence:
    """What a check or a job calls: the item's result, tied to today's fingerprints of its inputs."""
    item = get_item(item_id)
    prints = fingerprints or Fingerprints(ws)
    return append_evidence(ws, Evidence(item=item.id, status=status, kind=kind,
                                        fingerprints=prints.of(item.inputs), values=values or {},
                                        note=note))


def attest(ws: Workspace, item_id: str, note: str) -> Evidence:
    item = get_item(item_id)
    note = (note or "").strip()
    if not note:
        raise InputError(f"attesting {item.id} needs a note",
                         hint="say what you checked, e.g. --note \"read the model card's data section\"")
    if item.mode.value != "attest":
        raise InputError(f"{item.id} is decided automatically, not by attestation",
                         hint="run the check that measures it; `weightgate status` says what it needs")
    return record_result(ws, item.id, PASS, kind="attest", note=note)


def waive(ws: Workspace, item_id: str, reason: str) -> Evidence:
    item = get_item(item_id)
    reason = (reason or "").strip()
    if item.severity is Severity.CRITICAL:
        raise InputError(f"{item.id} is critical and cannot be waived",
                         hint="critical items must pass; only recommended items can be waived")
    if item.severity is Severity.OPTIONAL:
        raise InputError(f"{item.id} is optional: it never holds a gate, so there is nothing to waive")
    if not reason:
        raise InputError(f"waiving {item.id} needs a reason", hint="--reason \"why this does not apply\"")
    return record_result(ws, item.id, WAIVED, kind="waive", note=reason)


def record_override(ws: Workspace, item_id: str, action: str, reason: str, held_by: list[str],
                    values: dict | None = None) -> Evidence:
    """An action done with closed gates (`ship --override-gates`, `promote --override-gates`):
    the items that held it and the person's reason, shown by every later `status`."""
    reason = (reason or "").strip()
    if not reason:
        raise InputError(f"{action} with closed gates needs a reason", hint="--override-gates --reason \"why\"")
    return record_result(ws, item_id, FAIL, {"action": action, "held_by": list(held_by), **(values or {})},
                         kind="override", note=reason)


def revoke(ws: Workspace, item_id: str, note: str = "") -> Evidence:
    """Withdraw an attestation or waiver; the item goes back to what its checks say."""
    item: Item = get_item(item_id)
    return record_result(ws, item.id, REVOKED, kind="revoke", note=note)
