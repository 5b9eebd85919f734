"""Item statuses and phase gates as rules: computed from evidence plus today's fingerprints,
never stored. Which function decides which item is not known here: `core/gates.py` passes the
table in (each phase's checks.py sits above the engine).

Item statuses: pass, fail, stale, todo, waived, not-needed.
Phase N opens when every critical item of phases 1..N-1 passes (or is not needed) and every
recommended one passes or is waived. A phase can be decided "not needed" as a whole by a fresh
decision record (phase 5, when the baseline already meets the quality threshold).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

from weightgate.core.engine.check import CheckContext, CheckFunction, CheckResult
from weightgate.core.engine.checklist import PHASES, Item, Mode, Phase, Severity, items_of
from weightgate.core.engine.evidence import (
    FAIL,
    NOT_NEEDED,
    PASS,
    REVOKED,
    WAIVED,
    Evidence,
    append_evidence,
    read_evidence,
)
from weightgate.core.engine.fingerprints import Fingerprints
from weightgate.core.engine.workspace import Workspace

STALE, TODO = "stale", "todo"
ITEM_STATUSES = (PASS, FAIL, STALE, TODO, WAIVED, NOT_NEEDED)

# Phase states shown in the sidebar.
PASSED, OPEN, LOCKED = "passed", "open", "locked"


@dataclass
class ItemStatus:
    item: Item
    status: str
    detail: str
    evidence: Evidence | None = None
    stale_inputs: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    @property
    def holds_gate(self) -> bool:
        if self.item.severity is Severity.CRITICAL:
            return self.status not in (PASS, NOT_NEEDED)
        if self.item.severity is Severity.RECOMMENDED:
            return self.status not in (PASS, WAIVED, NOT_NEEDED)
        return False

    def to_dict(self) -> dict:
        item = self.item
        return {
            "id": item.id, "phase": item.phase, "title": item.title, "why": item.why,
            "severity": item.severity.value, "mode": item.mode.value, "status": self.status,
            "detail": self.detail, "holds_gate": self.holds_gate, "stale_inputs": self.stale_inputs,
            "values": self.values, "needs": item.needs,
            "evidence": None if self.evidence is None else {
                "kind": self.evidence.kind, "status": self.evidence.status, "time": self.evidence.time,
                "by": self.evidence.by, "note": self.evidence.note,
            },
        }


@dataclass
class PhaseStatus:
    phase: Phase
    state: str                      # passed | open | stale | locked | not-needed
    items: list[ItemStatus]
    held_by: list[ItemStatus]       # items of earlier phases that keep this phase locked
    blocking: list[ItemStatus]      # items of this phase that keep it from passing
    note: str = ""

    @property
    def locked(self) -> bool:
        return self.state == LOCKED

    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in ITEM_STATUSES}
        for status in self.items:
            counts[status.status] += 1
        return counts

    def to_dict(self) -> dict:
        return {
            "number": self.phase.number, "key": self.phase.key, "title": self.phase.title,
            "why": self.phase.why, "state": self.state, "note": self.note, "counts": self.counts(),
            "held_by": [{"id": s.item.id, "phase": s.item.phase, "status": s.status, "title": s.item.title}
                        for s in self.held_by],
            "blocking": [s.item.id for s in self.blocking],
            "items": [s.to_dict() for s in self.items],
        }


@dataclass
class Report:
    workspace: str
    phases: list[PhaseStatus]
    time: float
    # Every action ever done with closed gates (kind "override"), oldest first: `status` shows
    # them all, for as long as the evidence log lasts.
    overrides: list[Evidence] = field(default_factory=list)

    def phase(self, number: int) -> PhaseStatus:
        return self.phases[number - 1]

    def item(self, item_id: str) -> ItemStatus:
        for phase in self.phases:
            for status in phase.items:
                if status.item.id == item_id:
                    return status
        raise KeyError(item_id)

    def is_open(self, number: int) -> bool:
        return not self.phase(number).locked

    @property
    def current_phase(self) -> int:
        """The first phase that is open but not passed (or the last open one)."""
        last_open = 1
        for phase in self.phases:
            if phase.state in (OPEN, STALE):
                return phase.phase.number
            if phase.state != LOCKED:
                last_open = phase.phase.number
        return last_open

    def to_dict(self) -> dict:
        return {"workspace": self.workspace, "time": self.time, "current_phase": self.current_phase,
                "phases": [phase.to_dict() for phase in self.phases],
                "overrides": [override_dict(record) for record in self.overrides]}


def locked_line(report: Report, phase: int, what: str = "this run") -> str:
    """'phase 4 is locked by select.evalset: this run is recorded, the gate stays closed', or ''
    when the phase is open: work in a locked phase runs (a person may look ahead) and says so."""
    status = report.phase(phase)
    if not status.locked:
        return ""
    ids = [held.item.id for held in status.held_by]
    shown = ", ".join(ids[:3]) + (f" +{len(ids) - 3} more" if len(ids) > 3 else "")
    return f"phase {phase} is locked by {shown}: {what} is recorded, the gate stays closed"


def override_dict(record: Evidence) -> dict:
    return {"item": record.item, "time": record.time, "by": record.by, "reason": record.note,
            **{k: v for k, v in record.values.items() if k in ("action", "version", "held_by")}}


def override_line(record: Evidence) -> str:
    """'release ship of demo@v1 with closed gates: select.task, eval.baseline; reason: ... (root, 2026-12-07)'"""
    values = record.values
    held = ", ".join(values.get("held_by") or []) or "none recorded"
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(record.time)) if record.time else "?"
    what = f"{values.get('action', 'an action')} of {values.get('version')}" if values.get("version") else \
        str(values.get("action", "an action"))
    return f"{what} with closed gates: {held}; reason: {record.note} ({record.by}, {when} UTC)"


class NotNeeded(NamedTuple):
    """A fresh decision that a whole phase is not needed, and why (shown as the phase's note)."""
    why: str
    record: Evidence


def evidence_by_item(ws: Workspace) -> dict[str, list[Evidence]]:
    by_item: dict[str, list[Evidence]] = {}
    for evidence in read_evidence(ws):
        by_item.setdefault(evidence.item, []).append(evidence)
    return by_item


def build_report(ctx: CheckContext, checks: Mapping[str, CheckFunction], by_item: dict[str, list[Evidence]],
                 *, not_needed: Mapping[int, NotNeeded] | None = None, record: bool = True) -> Report:
    """Every item's status and every phase's gate.

    checks: item id -> the function deciding it live; other items are decided by their latest
    recorded evidence (a job's result, an attestation). not_needed: phase number -> a fresh
    decision that the whole phase is not needed. record: append live-check results to the
    evidence log when they differ from the last one recorded for that item, so each tick has a
    dated record of what was measured."""
    not_needed = not_needed or {}
    phases: list[PhaseStatus] = []
    held_by: list[ItemStatus] = []
    for phase in PHASES:
        decision = not_needed.get(phase.number)
        statuses = []
        for item in items_of(phase.number):
            records = by_item.get(item.id, [])
            if decision is not None:
                status = ItemStatus(item, NOT_NEEDED, f"{phase.title.lower()} not needed: "
                                    + describe(decision.record), decision.record,
                                    values=dict(decision.record.values))
            elif item.id in checks:
                result = checks[item.id](ctx)
                if record:
                    _record_live(ctx.ws, item, result, records, ctx.prints)
                status = _live_status(item, result, records, ctx.prints)
            else:
                status = _recorded_status(item, records, ctx.prints)
            statuses.append(status)
        blocking = [status for status in statuses if status.holds_gate]
        note = ""
        if held_by:
            state = LOCKED
        elif decision is not None:
            state, note = NOT_NEEDED, f"{decision.why}: {describe(decision.record)}"
        elif not blocking:
            state = PASSED
        elif any(status.status == STALE for status in blocking):
            state = STALE
        else:
            state = OPEN
        phases.append(PhaseStatus(phase, state, statuses, list(held_by), blocking, note))
        held_by.extend(blocking)
    overrides = sorted((r for records in by_item.values() for r in records if r.kind == "override"),
                       key=lambda r: r.time)
    return Report(str(ctx.ws.root), phases, time.time(), overrides)


def is_fresh(record: Evidence, prints: Fingerprints) -> bool:
    return not prints.changed(record.fingerprints)


def _waiver_status(item: Item, records: list[Evidence], prints: Fingerprints) -> ItemStatus | None:
    """The waiver on a live item, if the latest waive/revoke record is a waiver."""
    latest = None
    for record in records:
        if record.kind in ("waive", "revoke"):
            latest = record
    if latest is None or latest.status != WAIVED:
        return None
    changed = prints.changed(latest.fingerprints)
    if changed:
        return ItemStatus(item, STALE, f"waived, but {', '.join(changed)} changed since: "
                          "fix it or waive again", latest, changed)
    return ItemStatus(item, WAIVED, f"waived: {latest.note}", latest)


def _live_status(item: Item, result: CheckResult, records: list[Evidence],
                 prints: Fingerprints) -> ItemStatus:
    last_check = next((r for r in reversed(records) if r.kind == "check"), None)
    if result.status == PASS:
        return ItemStatus(item, PASS, result.detail, last_check, values=result.values)
    waived = _waiver_status(item, records, prints)
    if waived is not None:
        waived.values = result.values
        return waived
    return ItemStatus(item, result.status, result.detail, last_check, values=result.values)


def _recorded_status(item: Item, records: list[Evidence], prints: Fingerprints) -> ItemStatus:
    latest = records[-1] if records else None
    if latest is None or latest.status == REVOKED:
        if item.mode is Mode.ATTEST:
            return ItemStatus(item, TODO, f"attest with a note: weightgate attest {item.id} --note \"...\"")
        return ItemStatus(item, TODO, f"needs {item.needs}" if item.needs else "not measured yet")
    changed = prints.changed(latest.fingerprints)
    if changed:
        return ItemStatus(item, STALE, f"{describe(latest)}, but {', '.join(changed)} changed since; "
                          "measure again", latest, changed, dict(latest.values))
    return ItemStatus(item, latest.status, describe(latest), latest, values=dict(latest.values))


def describe(record: Evidence) -> str:
    if record.kind == "attest":
        return f"attested by {record.by}: {record.note}"
    if record.kind == "waive":
        return f"waived: {record.note}"
    # The status is shown beside the detail everywhere: the detail does not repeat it.
    summary = record.note or ", ".join(f"{k}={v}" for k, v in list(record.values.items())[:4])
    return summary or record.status


def _record_live(ws: Workspace, item: Item, result: CheckResult, records: list[Evidence],
                 prints: Fingerprints) -> None:
    if result.status not in (PASS, FAIL):
        return
    last_check = next((r for r in reversed(records) if r.kind == "check"), None)
    fingerprints = prints.of(item.inputs)
    if (last_check is not None and last_check.status == result.status
            and last_check.fingerprints == fingerprints and last_check.values == result.values):
        return
    record = append_evidence(ws, Evidence(item.id, result.status, "check", fingerprints,
                                          dict(result.values), note=result.detail))
    records.append(record)
