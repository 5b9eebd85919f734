"""Live checks of evaluation state, decided at status time (torch-free):
eval.fresh (the latest task run was taken on today's model, precision, adapter, eval set, prompt
and generation config) and select.choice (the chosen candidate clears every requirement in the
latest benchmark, or a relaxation is recorded)."""

from __future__ import annotations

from core.checks import CheckContext, CheckResult
from core.errors import InputError
from core.runs import COMPLETE, list_runs

COMPONENT_WORDS = {"model": "model", "precision": "precision", "precision_spec": "precision",
                   "adapter": "adapter", "adapter_files": "adapter files", "evalset": "eval set",
                   "prompt": "prompt", "chat_template": "chat template", "generation": "generation config",
                   "batch_size": "batch size", "limit": "limit"}


def latest_eval_run(ws, set_name: str = "task"):
    from core.evaluation import EVAL_KINDS

    for run in list_runs(ws, set_name):
        if (run.status == COMPLETE and run.config.get("kind", "eval") in EVAL_KINDS
                and not run.components.get("limit")):
            return run
    return None


def check_fresh(ctx: CheckContext) -> CheckResult:
    from core.evaluation import plan_eval

    run = latest_eval_run(ctx.ws)
    if run is None:
        return CheckResult("todo", "no complete run of the task set yet: weightgate eval")
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
                               "run weightgate eval again", values)


def check_choice(ctx: CheckContext) -> CheckResult:
    from core.benchmark import choice_verdict

    status, detail, values = choice_verdict(ctx.ws, ctx.config)
    return CheckResult(status, detail, values)
