"""Checks decided live from the workspace: requirements in weightgate.toml and the eval-set files.

Each check returns a CheckResult from today's inputs. `todo` means the input is not filled in
yet, `fail` means it is filled in but wrong; `detail` says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from core.evalsets import EvalSet, load_evalset
from core.workspace import Workspace, setting_path

METRICS = ("accuracy", "exact_match", "f1", "pass_rate")
HOSTING = ("self-hosted", "api")
LOCATION = ("on-prem", "cloud")
MIN_EVAL_CASES = 20
MAX_EVAL_CASES = 50
MIN_GENERAL_CASES = 10


@dataclass
class CheckResult:
    status: str            # pass | fail | todo
    detail: str
    values: dict = field(default_factory=dict)


class CheckContext:
    """What checks read, loaded once per status computation."""

    def __init__(self, ws: Workspace, config: dict):
        self.ws = ws
        self.config = config
        self._evalsets: dict[str, EvalSet | None] = {}
        self.cache: dict = {}   # per-computation memo for other check modules (the lock, scans)

    def requirements(self) -> dict:
        value = self.config.get("requirements")
        return value if isinstance(value, dict) else {}

    def evalset(self, setting: str, default: str) -> EvalSet | None:
        if setting not in self._evalsets:
            path = setting_path(self.ws, self.config, setting, default)
            self._evalsets[setting] = load_evalset(path) if path.is_file() else None
        return self._evalsets[setting]

    def task_set(self) -> EvalSet | None:
        return self.evalset("eval_set", "evals/task.jsonl")

    def general_set(self) -> EvalSet | None:
        return self.evalset("general_set", "evals/general.jsonl")

    def relative(self, evalset: EvalSet) -> str:
        try:
            return str(evalset.path.relative_to(self.ws.root))
        except ValueError:
            return str(evalset.path)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def check_task(ctx: CheckContext) -> CheckResult:
    task = ctx.requirements().get("task", "")
    if not isinstance(task, str) or not task.strip():
        return CheckResult("todo", "set [requirements] task: what the model must do, in measurable terms")
    words = len(task.split())
    if words < 6:
        return CheckResult("fail", f"task is {words} words; describe input, output and what counts as "
                                   "correct (at least 6 words)", {"words": words})
    return CheckResult("pass", task.strip(), {"words": words})


def check_threshold(ctx: CheckContext) -> CheckResult:
    req = ctx.requirements()
    metric, threshold = req.get("metric"), _number(req.get("quality_threshold"))
    if metric not in METRICS:
        return CheckResult("fail", f"metric {metric!r} is not one of {', '.join(METRICS)}")
    if threshold is None or threshold == 0:
        return CheckResult("todo", "set [requirements] quality_threshold: the score that counts as good "
                                   "enough, e.g. 0.9", {"metric": metric})
    if not 0 < threshold <= 1:
        return CheckResult("fail", f"quality_threshold {threshold} must be a fraction in (0, 1]",
                           {"metric": metric, "threshold": threshold})
    return CheckResult("pass", f"{metric} >= {threshold:g}", {"metric": metric, "threshold": threshold})


CEILINGS = {
    "p95_latency_ms": "p95 latency (ms)",
    "min_tokens_per_s": "minimum tokens/s",
    "memory_budget_gib": "memory budget (GiB)",
    "cost_per_1k_tasks": "cost per 1k tasks",
}


def check_ceilings(ctx: CheckContext) -> CheckResult:
    ceilings = ctx.requirements().get("ceilings")
    ceilings = ceilings if isinstance(ceilings, dict) else {}
    values, missing, wrong = {}, [], []
    for key, label in CEILINGS.items():
        number = _number(ceilings.get(key))
        if number is None and key in ceilings:
            wrong.append(f"{key} is not a number")
        elif number is None or number == 0:
            missing.append(key)
        elif number < 0:
            wrong.append(f"{key} is negative")
        else:
            values[key] = number
    if wrong:
        return CheckResult("fail", "; ".join(wrong), values)
    if missing:
        status = "todo" if not values else "fail"
        return CheckResult(status, "set [requirements.ceilings] " + ", ".join(missing), values)
    summary = ", ".join(f"{CEILINGS[key]} {value:g}" for key, value in values.items())
    return CheckResult("pass", summary, values)


def check_deployment(ctx: CheckContext) -> CheckResult:
    deployment = ctx.requirements().get("deployment")
    deployment = deployment if isinstance(deployment, dict) else {}
    hosting, location = deployment.get("hosting", ""), deployment.get("location", "")
    residency = deployment.get("data_residency", "")
    values = {"hosting": hosting, "location": location, "data_residency": residency}
    if not any((hosting, location, residency)):
        return CheckResult("todo", "set [requirements.deployment] hosting, location and data_residency")
    problems = []
    if hosting not in HOSTING:
        problems.append(f"hosting must be one of {', '.join(HOSTING)} (is {hosting!r})")
    if location not in LOCATION:
        problems.append(f"location must be one of {', '.join(LOCATION)} (is {location!r})")
    if not isinstance(residency, str) or not residency.strip():
        problems.append('data_residency is empty (write "none" if there is no rule)')
    if problems:
        return CheckResult("fail", "; ".join(problems), values)
    return CheckResult("pass", f"{hosting}, {location}, residency: {residency}", values)


def check_intended_use(ctx: CheckContext) -> CheckResult:
    use = ctx.requirements().get("intended_use")
    if not isinstance(use, dict):
        return CheckResult("todo", "add [requirements.intended_use] commercial = true|false, "
                                   "distribution = true|false")
    problems = [f"{key} must be true or false" for key in ("commercial", "distribution")
                if not isinstance(use.get(key), bool)]
    if problems:
        return CheckResult("fail", "; ".join(problems))
    values = {"commercial": use["commercial"], "distribution": use["distribution"]}
    words = ("commercial" if use["commercial"] else "non-commercial") + \
            (", distributed" if use["distribution"] else ", not distributed")
    return CheckResult("pass", words, values)


def _evalset_problems(ctx: CheckContext, evalset: EvalSet) -> CheckResult | None:
    if evalset.ok:
        return None
    first = evalset.problems[0]
    more = f" (+{len(evalset.problems) - 1} more)" if len(evalset.problems) > 1 else ""
    return CheckResult("fail", f"{first.location()}: {first.message}{more}; "
                               "run `weightgate evalset check` for all of them",
                       {"problems": len(evalset.problems), "cases": len(evalset.cases)})


def _task_set_or_result(ctx: CheckContext) -> EvalSet | CheckResult:
    evalset = ctx.task_set()
    if evalset is None:
        path = setting_path(ctx.ws, ctx.config, "eval_set", "evals/task.jsonl")
        return CheckResult("todo", f"write the task eval set at {path.name} (see evals/README.md)")
    return _evalset_problems(ctx, evalset) or evalset


def check_evalset_exists(ctx: CheckContext) -> CheckResult:
    evalset = _task_set_or_result(ctx)
    if isinstance(evalset, CheckResult):
        return evalset
    count = len(evalset.cases)
    values = {"cases": count, "path": ctx.relative(evalset)}
    if count < MIN_EVAL_CASES:
        return CheckResult("fail", f"{count} case{'' if count == 1 else 's'} in {ctx.relative(evalset)}; "
                                   f"at least {MIN_EVAL_CASES} real cases are needed", values)
    return CheckResult("pass", f"{count} cases in {ctx.relative(evalset)}", values)


def check_eval_size(ctx: CheckContext) -> CheckResult:
    result = check_evalset_exists(ctx)
    count = result.values.get("cases", 0)
    if result.status == "pass" and count > MAX_EVAL_CASES:
        return CheckResult("pass", f"{count} cases (more than {MAX_EVAL_CASES}: every eval run takes "
                                   "longer; consider a canary subset)", result.values)
    return result


def check_hard_edge(ctx: CheckContext) -> CheckResult:
    evalset = _task_set_or_result(ctx)
    if isinstance(evalset, CheckResult):
        return evalset
    tags = evalset.tag_counts()
    values = {"hard": tags.get("hard", 0), "edge": tags.get("edge", 0), "cases": len(evalset.cases)}
    missing = [tag for tag in ("hard", "edge") if not tags.get(tag)]
    if missing:
        return CheckResult("fail", "no case tagged " + " or ".join(missing) +
                           "; quality loss hides on easy cases", values)
    return CheckResult("pass", f"{values['hard']} hard, {values['edge']} edge of {len(evalset.cases)}",
                       values)


def check_general_set(ctx: CheckContext) -> CheckResult:
    evalset = ctx.general_set()
    if evalset is None:
        return CheckResult("todo", "write evals/general.jsonl: general-capability prompts that must not "
                                   "regress after fine-tuning")
    problem = _evalset_problems(ctx, evalset)
    if problem:
        return problem
    count = len(evalset.cases)
    if count < MIN_GENERAL_CASES:
        return CheckResult("fail", f"{count} general cases; at least {MIN_GENERAL_CASES} are needed",
                           {"cases": count})
    return CheckResult("pass", f"{count} general cases", {"cases": count})


LIVE_CHECKS: dict[str, Callable[[CheckContext], CheckResult]] = {
    "select.task": check_task,
    "select.threshold": check_threshold,
    "select.ceilings": check_ceilings,
    "select.deployment": check_deployment,
    "select.intended_use": check_intended_use,
    "select.evalset": check_evalset_exists,
    "eval.size": check_eval_size,
    "eval.hard_edge": check_hard_edge,
    "eval.general_set": check_general_set,
}
