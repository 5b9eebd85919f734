"""Phase 1's and phase 4's items, decided live at status time (torch-free): the requirements
in weightgate.toml, the eval-set files, the shortlist, the benchmark's choice, and whether the
latest task run was taken on today's model, precision, adapter, eval set and settings.
"""

from __future__ import annotations

from weightgate.core.engine.check import CheckContext, CheckResult
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import Fingerprints
from weightgate.core.engine.workspace import Workspace, setting_path
from weightgate.core.evaluation.evalsets import EvalSet, load_evalset
from weightgate.core.evaluation.plan import EVAL_KINDS, plan_eval
from weightgate.core.evaluation.reports import latest_report
from weightgate.core.evaluation.runs import COMPLETE, list_runs
from weightgate.core.weights.metadata_cache import candidate_specs, load_metadata
from weightgate.core.weights.sources import human_params

METRICS = ("accuracy", "exact_match", "f1", "pass_rate")
HOSTING = ("self-hosted", "api")
LOCATION = ("on-prem", "cloud")
MIN_EVAL_CASES = 20
MAX_EVAL_CASES = 50
MIN_GENERAL_CASES = 10


def evalset(ctx: CheckContext, setting: str, default: str) -> EvalSet | None:
    """The eval set a setting names, loaded once per status computation (None: no such file)."""
    def load() -> EvalSet | None:
        path = setting_path(ctx.ws, ctx.config, setting, default)
        return load_evalset(path) if path.is_file() else None
    return ctx.memo(f"evalset:{setting}", load)


def task_set(ctx: CheckContext) -> EvalSet | None:
    return evalset(ctx, "eval_set", "evals/task.jsonl")


def general_set(ctx: CheckContext) -> EvalSet | None:
    return evalset(ctx, "general_set", "evals/general.jsonl")


def relative(ctx: CheckContext, path) -> str:
    try:
        return str(path.relative_to(ctx.ws.root))
    except ValueError:
        return str(path)


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
                               "run `weightgate eval check` for all of them",
                       {"problems": len(evalset.problems), "cases": len(evalset.cases)})


def _task_set_or_result(ctx: CheckContext) -> EvalSet | CheckResult:
    evalset = task_set(ctx)
    if evalset is None:
        path = setting_path(ctx.ws, ctx.config, "eval_set", "evals/task.jsonl")
        return CheckResult("todo", f"write the task eval set at {path.name} (see evals/README.md)")
    return _evalset_problems(ctx, evalset) or evalset


def check_evalset_exists(ctx: CheckContext) -> CheckResult:
    evalset = _task_set_or_result(ctx)
    if isinstance(evalset, CheckResult):
        return evalset
    count = len(evalset.cases)
    values = {"cases": count, "path": relative(ctx, evalset.path)}
    if count < MIN_EVAL_CASES:
        return CheckResult("fail", f"{count} case{'' if count == 1 else 's'} in {relative(ctx, evalset.path)}; "
                                   f"at least {MIN_EVAL_CASES} real cases are needed", values)
    return CheckResult("pass", f"{count} cases in {relative(ctx, evalset.path)}", values)


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
    evalset = general_set(ctx)
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




COMPONENT_WORDS = {"model": "model", "precision": "precision", "precision_spec": "precision",
                   "adapter": "adapter", "adapter_files": "adapter files", "evalset": "eval set",
                   "prompt": "prompt", "chat_template": "chat template", "generation": "generation config",
                   "batch_size": "batch size", "limit": "limit"}


def latest_eval_run(ws, set_name: str = "task"):
    for run in list_runs(ws, set_name):
        if (run.status == COMPLETE and run.config.get("kind", "eval") in EVAL_KINDS
                and not run.components.get("limit")):
            return run
    return None


def check_fresh(ctx: CheckContext) -> CheckResult:
    run = latest_eval_run(ctx.ws)
    if run is None:
        return CheckResult("todo", "no complete run of the task set yet: weightgate eval run")
    try:
        # Today's identity for the run's own batch size, device and overrides.
        plan = plan_eval(ctx.ws, "task", batch_size=run.components.get("batch_size"),
                         device=str(run.config.get("device") or "cpu"), overrides=run.config.get("overrides") or None)
    except InputError as exc:
        return CheckResult("fail", f"cannot compute today's run identity: {exc.message}", {"run": run.id})
    values = {"run": run.id, "score": run.summary.get("score"), "identity": run.digest}
    if plan.identity["digest"] == run.digest:
        return CheckResult("pass", f"run {run.id} (score {run.summary.get('score', 0):.3f}) matches today's model, "
                                   "precision, adapter, eval set, prompt and generation config", values)
    today = plan.identity["components"]
    changed = sorted({COMPONENT_WORDS.get(key, key) for key, value in today.items()
                      if run.components.get(key) != value})
    values["changed"] = changed
    return CheckResult("fail", f"{', '.join(changed) or 'the identity'} changed since run {run.id}: "
                               "run weightgate eval run again", values)


def check_choice(ctx: CheckContext) -> CheckResult:
    status, detail, values = choice_verdict(ctx.ws, ctx.config)
    return CheckResult(status, detail, values)


def check_shortlist(ctx: CheckContext) -> CheckResult:
    specs = candidate_specs(ctx.config)
    if not specs:
        return CheckResult("todo", "add candidates, smallest first: weightgate weights add ORG/NAME (or a local dir)")
    sized, missing = [], []
    for spec in specs:
        meta = load_metadata(ctx.ws, spec)
        if meta is None or not meta.get("parameter_count"):
            missing.append(spec)
        else:
            sized.append((spec, int(meta["parameter_count"]), meta.get("size_class", "?")))
    values = {"candidates": [{"source": s, "parameters": p, "size_class": c} for s, p, c in sized]}
    if missing:
        return CheckResult("todo", "no metadata yet for " + ", ".join(missing) +
                           ": run `weightgate weights inspect SOURCE --save` (reads headers, downloads no weights)",
                           values)
    order = [p for _, p, _ in sized]
    if order != sorted(order):
        smallest = min(sized, key=lambda row: row[1])
        return CheckResult("fail", f"not smallest first: {smallest[0]} ({human_params(smallest[1])}) should come "
                           f"before {sized[0][0]} ({human_params(sized[0][1])})", values)
    detail = ", ".join(f"{s} ({human_params(p)})" for s, p, _ in sized)
    if sized[0][1] >= 7_000_000_000:
        detail += ("; warning: the smallest candidate has "
                   f"{human_params(sized[0][1])} parameters: shortlist a smaller one unless you know it cannot work")
    return CheckResult("pass", detail, values)



LIVE_CHECKS = {
    "select.task": check_task,
    "select.threshold": check_threshold,
    "select.ceilings": check_ceilings,
    "select.deployment": check_deployment,
    "select.intended_use": check_intended_use,
    "select.evalset": check_evalset_exists,
    "eval.size": check_eval_size,
    "eval.hard_edge": check_hard_edge,
    "eval.general_set": check_general_set,
    "select.shortlist": check_shortlist,
    "select.choice": check_choice,
    "eval.fresh": check_fresh,
}


def ceilings_of(config: dict) -> dict:
    requirements = config.get("requirements") if isinstance(config.get("requirements"), dict) else {}
    ceilings = requirements.get("ceilings") if isinstance(requirements.get("ceilings"), dict) else {}
    out = {}
    for key in ("p95_latency_ms", "min_tokens_per_s", "memory_budget_gib", "cost_per_1k_tasks"):
        value = ceilings.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            out[key] = float(value)
    serving = requirements.get("batch_size")
    if isinstance(serving, int) and not isinstance(serving, bool) and serving > 0:
        out["batch_size"] = serving
    return out


def requirement_failures(row: dict, config: dict) -> list[str]:
    """What this candidate's row misses of today's requirements (empty: clears them all)."""

    if row.get("error"):
        return [f"not benchmarked: {row['error']}"]
    requirements = config.get("requirements") if isinstance(config.get("requirements"), dict) else {}
    ceilings = ceilings_of(config)
    failures = []
    threshold = requirements.get("quality_threshold")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or threshold <= 0:
        failures.append("no quality threshold set")
    elif row["score"] < threshold:
        failures.append(f"score {row['score']:.3f} < threshold {threshold:g}")
    if "p95_latency_ms" in ceilings and row["p95_latency_ms"] > ceilings["p95_latency_ms"]:
        failures.append(f"p95 latency {row['p95_latency_ms']:.0f} ms > {ceilings['p95_latency_ms']:g} ms")
    if "min_tokens_per_s" in ceilings and row["tokens_per_s"] < ceilings["min_tokens_per_s"]:
        failures.append(f"{row['tokens_per_s']:.1f} tokens/s < {ceilings['min_tokens_per_s']:g}")
    if "memory_budget_gib" in ceilings and row["memory_gib"] > ceilings["memory_budget_gib"]:
        failures.append(f"memory {row['memory_gib']:.2f} GiB > budget {ceilings['memory_budget_gib']:g} GiB")
    if "cost_per_1k_tasks" in ceilings:
        if row.get("cost_per_1k_tasks") is None:
            failures.append("cost unknown: set [settings] price_per_hour (or price_per_1k_tokens)")
        elif row["cost_per_1k_tasks"] > ceilings["cost_per_1k_tasks"]:
            failures.append(f"cost {row['cost_per_1k_tasks']:.4g} per 1k tasks > {ceilings['cost_per_1k_tasks']:g}")
    return failures


def format_row(row: dict) -> str:
    if row.get("error"):
        return f"{row['source']}: error: {row['error']}"
    cost = "n/a" if row.get("cost_per_1k_tasks") is None else f"{row['cost_per_1k_tasks']:.4g}/1k"
    return (f"score {row['score']:.3f} ({row['passed']}/{row['cases']})  p50 {row['p50_latency_ms']:.0f} ms  "
            f"p95 {row['p95_latency_ms']:.0f} ms  {row['tokens_per_s']:.1f} tok/s  {row['memory_gib']:.2f} GiB  "
            f"cost {cost}  {row['precision']}")


def choice_verdict(ws: Workspace, config: dict) -> tuple[str, str, dict]:
    """(status, detail, values) of select.choice from the latest benchmark and today's
    requirements and decisions (torch-free: status calls it)."""
    chosen_values = config.get("decisions") if isinstance(config.get("decisions"), dict) else {}
    chosen = chosen_values.get("model")
    if not chosen:
        return "todo", "choose a candidate: weightgate weights choose SOURCE --reason \"...\"", {}
    report = latest_report(ws, "benchmark")
    if report is None:
        return "todo", "benchmark the candidates on the eval set: weightgate eval benchmark", {"model": chosen}
    changed = [name for name, digest in (report.get("fingerprints") or {}).items()
               if Fingerprints(ws, config).get(name) != digest]
    if changed or report.get("limit"):
        why = f"{', '.join(changed)} changed since" if changed else "it covered only part of the eval set"
        return "fail", f"the latest benchmark is stale ({why}): run weightgate eval benchmark again", {"model": chosen}
    row = next((r for r in report.get("rows", []) if r.get("source") == chosen), None)
    if row is None:
        return "fail", f"{chosen} is not in the latest benchmark: run weightgate eval benchmark", {"model": chosen}
    failures = requirement_failures(row, config)
    values = {"model": chosen, "report": report.get("report"), "failures": failures,
              **{key: row.get(key) for key in ("score", "p95_latency_ms", "tokens_per_s", "memory_gib",
                                               "cost_per_1k_tasks")}}
    relaxation = chosen_values.get("relaxation")
    if not failures:
        return "pass", f"{chosen} clears every requirement: {format_row(row)}", values
    if isinstance(relaxation, str) and relaxation.strip():
        values["relaxation"] = relaxation.strip()
        return "pass", f"{chosen} misses {'; '.join(failures)}; relaxed consciously: {relaxation.strip()}", values
    return "fail", (f"{chosen} misses {'; '.join(failures)}: choose a candidate that clears them, or record "
                    "[decisions] relaxation = \"why this is acceptable\""), values
