"""The gate a release goes through, and the checklist it carries.

    ship_gate(ws, override)        ship needs phase 6 open (every item of phases 1-5 holding); with
                                   closed gates only by an explicit override with a reason
    promote_gate(ws, ref, override) promote needs phase 6 passed on the version (its own checks:
                                   checksums, merge, health, latency, canary, licence, ...)
    checklist_snapshot(report)     every item of phases 1-6 as decided now: status, detail, the
                                   evidence record's digest, the fingerprints it was decided on,
                                   attestation and waiver notes (the manifest's [checklist])

A refusal names every item that holds the gate, as `weightgate status` does. An override is
recorded as evidence (kind "override" on ship.gates), written into the manifest and the card,
and listed by every later `status`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from weightgate.core.engine.errors import InputError, WeightgateError
from weightgate.core.engine.evidence import _user, record_override
from weightgate.core.engine.status import PASSED, ItemStatus, Report
from weightgate.core.engine.workspace import Workspace
from weightgate.core.gates import compute_report

GATE_ITEM = "ship.gates"
DETAIL_LIMIT = 300


def held_line(status: ItemStatus) -> str:
    return f"{status.item.id} ({status.status}: {status.detail})"


class GatesClosed(WeightgateError):
    """The gate is closed and no override was given: nothing shipped or promoted. Exit code 1."""

    exit_code = 1

    def __init__(self, action: str, what: str, held: list[ItemStatus]):
        self.action = action
        self.held = [{"id": s.item.id, "phase": s.item.phase, "status": s.status, "detail": s.detail}
                     for s in held]
        ids = ", ".join(s.item.id for s in held)
        self.message = f"{what} is held by {len(held)} item{'s' if len(held) != 1 else ''}: {ids}"
        self.hint = (f"make them pass (weightgate status says what each needs), or {action} anyway with "
                     "--override-gates --reason \"...\" (recorded in the manifest, the card and every status)")
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}"

    def lines(self) -> list[str]:
        """One line per held item, with what it says (the CLI prints these under the refusal)."""
        return [f"  phase {h['phase']}  {h['id']:<24} {h['status']:<7} {h['detail']}" for h in self.held]

    def to_dict(self) -> dict:
        return {"error": self.message, "refused": self.message, "hint": self.hint, "held_by": self.held}


@dataclass
class GateDecision:
    open: bool
    held: list[ItemStatus]
    report: Report
    override: dict | None = None          # reason, by, time: when the gate was closed and overridden
    held_ids: list[str] = field(default_factory=list)

    def table(self) -> dict:
        """The manifest's [gates] (and [promotion]'s override)."""
        table: dict = {"open": self.open, "held_by": self.held_ids}
        if self.override is not None:
            table["override"] = dict(self.override)
        return table

    def record(self, ws: Workspace, action: str, version: str) -> None:
        """The override as evidence (listed by every later status); nothing when the gate was open."""
        if self.override is not None:
            record_override(ws, GATE_ITEM, action, self.override["reason"], self.held_ids, {"version": version})


def _decide(report: Report, held: list[ItemStatus], action: str, what: str, override: str | None) -> GateDecision:
    if override is not None and not override.strip():
        raise InputError("--override-gates needs a reason", hint="--override-gates --reason \"why this ships anyway\"")
    if not held:
        return GateDecision(True, [], report)
    if override is None:
        raise GatesClosed(action, what, held)
    return GateDecision(False, held, report, {"reason": override.strip(), "by": _user(), "time": time.time()},
                        [s.item.id for s in held])


def ship_gate(ws: Workspace, override: str | None = None, report: Report | None = None) -> GateDecision:
    """Phase 6 must be open: every item of phases 1-5 passes (or is waived / not needed)."""
    report = report or compute_report(ws)
    return _decide(report, report.phase(6).held_by, "ship", "phase 6 is locked: shipping", override)


def promote_gate(ws: Workspace, label: str, override: str | None = None) -> GateDecision:
    """Phase 6 must have passed on the version ([decisions] release names it): the earlier phases
    still hold and each of its own checks passes."""
    report = compute_report(ws)
    phase = report.phase(6)
    held = [] if phase.state == PASSED else [*phase.held_by, *phase.blocking]
    return _decide(report, held, "promote", f"promoting {label}", override)


PENDING = "pending"


def checklist_snapshot(report: Report, stage: str) -> dict:
    """The manifest's [checklist]: every item as decided now, with what it was decided on. At
    ship, phase 6's items are about the version before this one (phase 6 is decided on a version
    once it is the release): they are recorded as pending, and promotion records them decided."""
    phases, items = [], []
    for phase in report.phases:
        pending = stage == "ship" and phase.phase.number == 6
        phases.append({"number": phase.phase.number, "key": phase.phase.key, "title": phase.phase.title,
                       "state": PENDING if pending else phase.state,
                       "blocking": [] if pending else [s.item.id for s in phase.blocking]})
        for status in phase.items:
            entry = {"id": status.item.id, "phase": status.item.phase, "severity": status.item.severity.value,
                     "status": status.status, "detail": status.detail[:DETAIL_LIMIT]}
            if pending:
                entry.update(status="todo", detail="decided on this version once it is the release: health, "
                                                   "canary, then promote")
                items.append(entry)
                continue
            record = status.evidence
            if record is not None:
                entry.update(evidence=record.digest, kind=record.kind, by=record.by, time=record.time,
                             fingerprints=dict(record.fingerprints))
                if record.kind in ("attest", "waive", "decision"):
                    entry["note"] = record.note
            items.append(entry)
    return {"stage": stage, "taken": time.time(), "by": _user(), "phases": phases, "items": items}


def relaxations(checklist: dict) -> list[dict]:
    """The items that hold by a person's word rather than a measurement: waivers and
    attestations, with their notes (the card names them)."""
    return [item for item in checklist.get("items") or []
            if item.get("kind") in ("waive", "attest") and item.get("status") in ("waived", "pass")]
