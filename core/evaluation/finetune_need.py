"""Is phase 5 needed? Decided from the base model's baseline run of the task set against
[requirements] quality_threshold: "baseline 0.93 >= threshold 0.90" marks fine-tuning not
needed, with the numbers. The decision is evidence under a pseudo item, tied to the model,
precision, eval set and requirements it was taken on, so a change re-decides it.
"""

from __future__ import annotations

from weightgate.core.engine.checklist import FINETUNING_DECISION_INPUTS
from weightgate.core.engine.digest import ABSENT
from weightgate.core.engine.evidence import FAIL, NOT_NEEDED, Evidence, append_evidence
from weightgate.core.engine.fingerprints import Fingerprints
from weightgate.core.engine.status import NotNeeded, is_fresh
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.runs import Run, baseline_run

FINETUNING_DECISION = "phase.finetuning"   # the pseudo item the decision is recorded under
FINETUNING_PHASE = 5
WHY_NOT_NEEDED = "the baseline meets the quality threshold"


def record_finetuning_decision(ws: Workspace, needed: bool | None = None, values: dict | None = None,
                               note: str = "", *, run: Run | None = None, threshold: float | None = None,
                               prints: Fingerprints | None = None) -> Evidence:
    """Record whether phase 5 is needed: given a baseline `run`, taken from its score and the
    quality threshold; otherwise as `needed` says."""
    prints = prints or Fingerprints(ws)
    if run is not None:
        needed, values, note = baseline_decision(run, threshold if threshold is not None
                                                 else quality_threshold(prints.config))
    return append_evidence(ws, Evidence(FINETUNING_DECISION, FAIL if needed else NOT_NEEDED, "decision",
                                        prints.of(FINETUNING_DECISION_INPUTS), values or {}, note=note))


def quality_threshold(config: dict) -> float | None:
    requirements = config.get("requirements") if isinstance(config.get("requirements"), dict) else {}
    value = requirements.get("quality_threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        return None
    return float(value)


def baseline_decision(run: Run, threshold: float | None) -> tuple[bool, dict, str]:
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
    no baseline or no threshold: phase 5 waits for both. `records` are the decision's earlier
    records; a new one is appended to it."""
    if records and is_fresh(records[-1], prints):
        return records[-1]
    threshold = quality_threshold(prints.config)
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


def not_needed_phases(ws: Workspace, prints: Fingerprints, records: list[Evidence], *,
                      record: bool = True) -> dict[int, NotNeeded]:
    """{5: why} while a fresh decision says the baseline already meets the threshold, else {}."""
    decision = decide_from_baseline(ws, prints, records, record=record)
    if decision is None or decision.status != NOT_NEEDED or not is_fresh(decision, prints):
        return {}
    return {FINETUNING_PHASE: NotNeeded(WHY_NOT_NEEDED, decision)}
