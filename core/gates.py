"""Statuses and gates: computed from evidence plus today's fingerprints, never stored.

Item statuses: pass, fail, stale, todo, waived, not-needed.
Phase N opens when every critical item of phases 1..N-1 passes (or is not needed) and every
recommended one passes or is waived. Phase 5 is entered only when the baseline misses the
quality threshold; a fresh "not needed" decision marks all of it not-needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from core.checklist import PHASES, Item, Mode, Phase, Severity, items_of
from core.checks import CheckContext, CheckResult
from core.live_checks import LIVE_CHECKS
from core.evidence import (FAIL, NOT_NEEDED, PASS, REVOKED, WAIVED, Evidence, append_evidence,
                           read_evidence)
from core.fingerprints import Fingerprints, plain
from core.workspace import Workspace

STALE, TODO = "stale", "todo"
ITEM_STATUSES = (PASS, FAIL, STALE, TODO, WAIVED, NOT_NEEDED)

# Pseudo item under which the evaluation records whether fine-tuning is needed.
FINETUNING_DECISION = "phase.finetuning"
FINETUNING_DECISION_INPUTS = ("model", "precision", "evalset.task", "requirements")
FINETUNING_PHASE = 5

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

    def phase(self, number: int) -> PhaseStatus:
        return self.phases[number - 1]

    def item(self, item_id: str) -> ItemStatus:
        for phase in self.phases:
            for status in phase.items:
                if status.item.id == item_id:
                    return status
        raise KeyError(item_id)

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
                "phases": [phase.to_dict() for phase in self.phases]}


def _is_fresh(record: Evidence, prints: Fingerprints) -> list[str]:
    return prints.changed(record.fingerprints)


def _waiver_status(item: Item, records: list[Evidence], prints: Fingerprints) -> ItemStatus | None:
    """The waiver on a live item, if the latest waive/revoke record is a waiver."""
    latest = None
    for record in records:
        if record.kind in ("waive", "revoke"):
            latest = record
    if latest is None or latest.status != WAIVED:
        return None
    changed = _is_fresh(latest, prints)
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
    changed = _is_fresh(latest, prints)
    if changed:
        return ItemStatus(item, STALE, f"{_describe(latest)}, but {', '.join(changed)} changed since; "
                          "measure again", latest, changed, dict(latest.values))
    return ItemStatus(item, latest.status, _describe(latest), latest, values=dict(latest.values))


def _describe(record: Evidence) -> str:
    if record.kind == "attest":
        return f"attested by {record.by}: {record.note}"
    if record.kind == "waive":
        return f"waived: {record.note}"
    # The status is shown beside the detail everywhere: the detail does not repeat it.
    summary = record.note or ", ".join(f"{k}={v}" for k, v in list(record.values.items())[:4])
    return summary or record.status


def _finetuning_decision(records: list[Evidence], prints: Fingerprints) -> Evidence | None:
    if not records:
        return None
    latest = records[-1]
    if latest.status == NOT_NEEDED and not _is_fresh(latest, prints):
        return latest
    return None


def compute_report(ws: Workspace, *, record: bool = True) -> Report:
    """Every item's status and every phase's gate, from today's workspace.

    record: append live-check results to the evidence log when they differ from the last one
    recorded for that item, so each tick has a dated record of what was measured.
    """
    config = plain(ws.config())
    prints = Fingerprints(ws, config)
    ctx = CheckContext(ws, config)
    ctx.cache["fingerprints"] = prints   # one computation of each fingerprint, checks included
    by_item: dict[str, list[Evidence]] = {}
    for evidence in read_evidence(ws):
        by_item.setdefault(evidence.item, []).append(evidence)

    decision_records = by_item.setdefault(FINETUNING_DECISION, [])
    decide_from_baseline(ws, prints, decision_records, record=record)
    decision = _finetuning_decision(decision_records, prints)
    phases: list[PhaseStatus] = []
    held_by: list[ItemStatus] = []
    for phase in PHASES:
        statuses = []
        for item in items_of(phase.number):
            records = by_item.get(item.id, [])
            if phase.number == FINETUNING_PHASE and decision is not None:
                status = ItemStatus(item, NOT_NEEDED,
                                    "fine-tuning not needed: " + (decision.note or _describe(decision)),
                                    decision, values=dict(decision.values))
            elif item.id in LIVE_CHECKS:
                result = LIVE_CHECKS[item.id](ctx)
                if record:
                    _record_live(ws, item, result, records, prints)
                status = _live_status(item, result, records, prints)
            else:
                status = _recorded_status(item, records, prints)
            statuses.append(status)
        blocking = [status for status in statuses if status.holds_gate]
        note = ""
        if held_by:
            state = LOCKED
        elif phase.number == FINETUNING_PHASE and decision is not None:
            state, note = NOT_NEEDED, "the baseline meets the quality threshold: " + (decision.note or _describe(decision))
        elif not blocking:
            state = PASSED
        elif any(status.status == STALE for status in blocking):
            state = STALE
        else:
            state = OPEN
        phases.append(PhaseStatus(phase, state, statuses, list(held_by), blocking, note))
        held_by.extend(blocking)
    return Report(str(ws.root), phases, time.time())


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


def record_finetuning_decision(ws: Workspace, needed: bool | None = None, values: dict | None = None,
                               note: str = "", *, run=None, threshold: float | None = None,
                               prints: Fingerprints | None = None) -> Evidence:
    """Is phase 5 needed? Given a baseline `run` (a core.runs.Run), taken from its score and
    [requirements] quality_threshold: "baseline 0.93 >= threshold 0.90" marks it not needed."""
    prints = prints or Fingerprints(ws)
    if run is not None:
        needed, values, note = baseline_decision(run, threshold if threshold is not None
                                                 else _quality_threshold(prints.config))
    return append_evidence(ws, Evidence(FINETUNING_DECISION, FAIL if needed else NOT_NEEDED, "decision",
                                        prints.of(FINETUNING_DECISION_INPUTS), values or {}, note=note))


def _quality_threshold(config: dict) -> float | None:
    requirements = config.get("requirements") if isinstance(config.get("requirements"), dict) else {}
    value = requirements.get("quality_threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        return None
    return float(value)


def baseline_decision(run, threshold: float | None) -> tuple[bool, dict, str]:
    """(needed, values, note) from a baseline run's score and the quality threshold."""
    if threshold is None:
        raise ValueError("no quality threshold to compare the baseline with")
    score = float(run.summary.get("score") or 0.0)
    needed = score < threshold
    values = {"baseline_score": score, "threshold": threshold, "run": run.id,
              "cases": run.summary.get("cases"), "passed": run.summary.get("passed")}
    return needed, values, f"baseline {score:.2f} {'<' if needed else '>='} threshold {threshold:.2f} (run {run.id})"


def decide_from_baseline(ws: Workspace, prints: Fingerprints, records: list[Evidence], *,
                         record: bool = True) -> Evidence | None:
    """The fine-tuning decision of today's inputs, taken from the base model's baseline run of the
    task set for today's model, precision and eval set. A fresh recorded decision is kept; a
    missing or stale one is decided again (e.g. after the threshold changed). None while there is
    no baseline or no threshold: phase 5 waits for both."""
    from core.digest import ABSENT
    from core.runs import baseline_run

    if records and not _is_fresh(records[-1], prints):
        return records[-1]
    threshold = _quality_threshold(prints.config)
    if threshold is None:
        return None
    run = baseline_run(ws, "task", model=prints.get("model"), precision=prints.get("precision"), adapter=ABSENT,
                       evalset=prints.get("evalset.task"))
    if run is None:
        return None
    if record:
        evidence = record_finetuning_decision(ws, run=run, threshold=threshold, prints=prints)
    else:   # decided for this report only
        needed, values, note = baseline_decision(run, threshold)
        evidence = Evidence(FINETUNING_DECISION, FAIL if needed else NOT_NEEDED, "decision",
                            prints.of(FINETUNING_DECISION_INPUTS), values, note=note)
    records.append(evidence)
    return evidence


def phase_is_open(report: Report, number: int) -> bool:
    return not report.phase(number).locked
