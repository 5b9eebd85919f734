"""The six phases' gates: every checklist item decided by its phase's `checks.py`, or by the
evidence its jobs recorded, and which phases are open. Statuses are computed, never stored
(the rules are in engine/status.py).

This is the one place that knows every phase's checks, so it sits above them (registry
included, which decides phase 6); the release, which must ask the gates before anything goes
in front of users, the demo and the UI sit above it.
"""

from __future__ import annotations

from weightgate.core.engine.check import CheckContext, CheckFunction
from weightgate.core.engine.checklist import get_item
from weightgate.core.engine.dependencies import Why, explain
from weightgate.core.engine.status import Report, build_report, evidence_by_item, locked_line
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation import checks as evaluation_checks
from weightgate.core.evaluation.finetune_need import FINETUNING_DECISION, not_needed_phases
from weightgate.core.registry import checks as registry_checks
from weightgate.core.training import checks as training_checks
from weightgate.core.weights import checks as weights_checks

# item id -> the function that decides it live at status time. Items not here are decided by
# the latest evidence their jobs recorded, or by a person (attest items).
LIVE_CHECKS: dict[str, CheckFunction] = {
    **evaluation_checks.LIVE_CHECKS,
    **weights_checks.LIVE_CHECKS,
    **training_checks.LIVE_CHECKS,
    **registry_checks.LIVE_CHECKS,
}


def compute_report(ws: Workspace, *, record: bool = True) -> Report:
    """Every item's status and every phase's gate, from today's workspace.

    record: append live-check results (and the fine-tuning decision) to the evidence log when
    they differ from the last one recorded, so each tick has a dated record of what was measured."""
    ctx = CheckContext(ws)
    by_item = evidence_by_item(ws)
    not_needed = not_needed_phases(ws, ctx.prints, by_item.setdefault(FINETUNING_DECISION, []), record=record)
    return build_report(ctx, LIVE_CHECKS, by_item, not_needed=not_needed, record=record)


def locked_note(ws: Workspace, phase: int, what: str = "this run") -> str:
    """One line when `phase` is locked (engine.status.locked_line); empty when it is open."""
    return locked_line(compute_report(ws, record=False), phase, what)


def explain_item(ws: Workspace, item_id: str) -> Why:
    """`weightgate status --why ITEM`: its inputs, their fingerprints when it was decided and
    today, and which differ."""
    item = get_item(item_id)
    ctx = CheckContext(ws)
    by_item = evidence_by_item(ws)
    not_needed = not_needed_phases(ws, ctx.prints, by_item.setdefault(FINETUNING_DECISION, []), record=False)
    report = build_report(ctx, LIVE_CHECKS, by_item, not_needed=not_needed, record=False)
    return explain(report.item(item.id), ctx.prints, live=item.id in LIVE_CHECKS)
