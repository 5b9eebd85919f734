"""memory.quant_quality: a quantized choice must keep the quality of the weights it came from.

When [decisions] precision is 8-bit or 4-bit, the task set runs twice on the same model, eval set,
prompt and generation config: at a reference precision (the largest unquantized precision above
the choice that fits the budget, or [settings] quant_reference) and at the choice. The two runs
are compared case by case (core/compare.py); the item fails when the pass rate of the hard or the
edge cases, or of the whole set, drops by more than [settings] quant_tolerance (default 0.05).
Runs whose identity already exists are reused, never generated again.

Torch is imported only when a run has to be generated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import record_result
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.compare import compare_runs
from weightgate.core.evaluation.plan import plan_eval, workspace_target
from weightgate.core.evaluation.runner import execute
from weightgate.core.evaluation.runs import run_with_identity
from weightgate.core.memory.estimate import canonical_precision
from weightgate.core.memory.loading import default_device
from weightgate.core.memory.precision import estimate_for_workspace, layout_for, workspace_metadata

QUANTIZED = ("int8", "nf4", "fp4")
DEFAULT_TOLERANCE = 0.05
JUDGED_GROUPS = ("hard", "edge")


@dataclass
class QuantQualityResult:
    status: str                      # pass | fail
    note: str
    chosen: str
    reference: str | None = None
    reference_why: str = ""
    reference_run: str | None = None
    quantized_run: str | None = None
    tolerance: float = DEFAULT_TOLERANCE
    groups: dict = field(default_factory=dict)     # name -> {cases, pass_rate_a, pass_rate_b, delta, regressions}
    regressed_cases: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def tolerance_of(config: dict) -> float:
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    value = settings.get("quant_tolerance", DEFAULT_TOLERANCE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise InputError(f"[settings] quant_tolerance = {value!r} is not a fraction", hint="e.g. quant_tolerance = 0.05")
    return float(value)


def chosen_precision(ws: Workspace, config: dict) -> tuple[str, str]:
    """(the decided precision's canonical name, the model's native precision)."""

    layout = layout_for(workspace_metadata(ws))
    native = layout.native_precision
    decided = (config.get("decisions") or {}).get("precision")
    if not decided:
        raise InputError("no precision decided yet", path=ws.config_path,
                         hint="weightgate memory fit chooses the largest precision that fits")
    return canonical_precision(str(decided), native), native


def reference_precision(ws: Workspace, config: dict, chosen: str, *, device: str | None = None) -> tuple[str, str]:
    """The precision the choice is judged against, and why that one."""

    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    report = estimate_for_workspace(ws, device=device)
    native = report.layout.native_precision
    if settings.get("quant_reference"):
        reference = canonical_precision(str(settings["quant_reference"]), native)
        if reference in QUANTIZED:
            raise InputError(f"[settings] quant_reference = {reference!r} is itself quantized",
                             path=ws.config_path, hint="name an unquantized precision: bf16, fp16 or fp32")
        return reference, "[settings] quant_reference"
    above = [e for e in report.inference if e.precision not in QUANTIZED and e.precision != chosen]
    for est in above:
        if est.fits:
            what = "native" if est.precision == native else "the largest unquantized precision that fits"
            return est.precision, f"{what}: needs {est.required / 2**30:.2f} GiB of the {report.budget.bytes / 2**30:.2f} GiB budget"
    needed = ", ".join(f"{e.precision} needs {e.required / 2**30:.2f} GiB" for e in above) or "none estimated"
    raise InputError(f"no unquantized precision fits the budget to serve as the reference ({needed})",
                     path=ws.config_path,
                     hint="run the reference where it fits and set [settings] quant_reference = \"bf16\" "
                          "(the reference run is reused once it exists)")


def _run_at(ws: Workspace, precision: str | None, *, device: str, batch_size: int | None,
            progress: Callable | None, log: Callable[[str], None]) -> object:
    """A complete task-set run of the workspace's model at `precision` (None: the decision):
    an existing run with the same identity, or a new one."""

    target = workspace_target(ws)
    if precision is not None:
        target = dataclasses.replace(target, precision=precision)
    plan = plan_eval(ws, "task", batch_size=batch_size, device=device, target=target)
    run = run_with_identity(ws, "task", plan.identity["digest"])
    if run is not None:
        log(f"{precision or 'the chosen precision'}: reusing run {run.id} (same identity)")
        return run
    log(f"{precision or 'the chosen precision'}: generating {len(plan.cases)} cases")
    return execute(plan, name=f"quant check: {target.label} {precision or target.precision}",
                   progress=progress, extra_config={"purpose": "quant_quality"})


def judge(comparison, tolerance: float) -> tuple[str, dict, list[str], list[dict]]:
    """pass / fail from the compare result: hard, edge and the whole set each keep their pass
    rate within the tolerance."""
    groups = {"all": comparison.overall, **{name: comparison.focus[name] for name in JUDGED_GROUPS
                                            if name in comparison.focus}}
    table, problems = {}, []
    for name, group in groups.items():
        delta = group.pass_rate_b - group.pass_rate_a
        table[name] = {"cases": group.cases, "pass_rate_reference": group.pass_rate_a,
                       "pass_rate_quantized": group.pass_rate_b, "delta": delta, "regressions": group.regressions}
        if group.cases and delta < -tolerance - 1e-12:
            problems.append(f"{name} cases {group.pass_rate_a:.0%} -> {group.pass_rate_b:.0%} "
                            f"({delta:+.1%}, tolerance {tolerance:.0%})")
    regressed = [{"id": case.id, "tags": list(getattr(case, "tags", []) or []), "reference": case.output_a,
                  "quantized": case.output_b} for case in comparison.by_status("regression")]
    return ("fail" if problems else "pass"), table, problems, regressed


def check_quant_quality(ws: Workspace, *, device: str | None = None, batch_size: int | None = None,
                        progress: Callable | None = None, log: Callable[[str], None] | None = None,
                        record: bool = True) -> QuantQualityResult:
    """Decide memory.quant_quality (and record it as evidence unless record=False)."""

    log = log or (lambda message: None)
    config = plain(ws.config())
    tolerance = tolerance_of(config)
    chosen, native = chosen_precision(ws, config)
    if chosen not in QUANTIZED:
        result = QuantQualityResult("pass", f"{chosen} is not quantized: nothing to compare", chosen,
                                    tolerance=tolerance)
    else:
        device = device or default_device()
        reference, why = reference_precision(ws, config, chosen, device=device)
        log(f"reference {reference} ({why}); choice {chosen}")
        ref_run = _run_at(ws, reference, device=device, batch_size=batch_size, progress=progress, log=log)
        quant_run = _run_at(ws, None, device=device, batch_size=batch_size, progress=progress, log=log)
        comparison = compare_runs(ref_run, quant_run, ws=ws)
        status, table, problems, regressed = judge(comparison, tolerance)
        shown = ", ".join(f"{name} {row['pass_rate_reference']:.0%}->{row['pass_rate_quantized']:.0%}"
                          for name, row in table.items() if row["cases"])
        note = (f"{chosen} vs {reference}: " + ("; ".join(problems) if problems else f"{shown} (tolerance {tolerance:.0%})"))
        result = QuantQualityResult(status, note, chosen, reference, why, ref_run.id, quant_run.id, tolerance,
                                    table, regressed)
    if record:
        record_result(ws, "memory.quant_quality", result.status, result.to_dict(), note=result.note)
    return result
