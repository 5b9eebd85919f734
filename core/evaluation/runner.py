"""Eval runs: execute a plan (load, render, generate in batches, score, write the run), re-score
saved outputs when only expected answers or scorers changed, and baselines with their evidence.
What runs and its identity is plan.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from weightgate.core.engine.digest import ABSENT, digest_file, digest_value
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import PASS, record_result
from weightgate.core.engine.fingerprints import Fingerprints, plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.evalsets import EvalCase
from weightgate.core.evaluation.finetune_need import record_finetuning_decision
from weightgate.core.evaluation.generation import (
    chat_template_text,
    environment,
    generate_all,
    render,
)
from weightgate.core.evaluation.plan import (
    EVAL_KINDS,
    EvalPlan,
    Target,
    inputs_digest,
    load_valid_evalset,
    plan_eval,
    scoring_digest,
)
from weightgate.core.evaluation.runs import (
    COMPLETE,
    FAILED,
    PARTIAL,
    CaseResult,
    Run,
    append_case,
    baseline_run,
    list_runs,
    new_run_id,
    read_run,
    record_reuse,
    run_with_identity,
    write_run,
)
from weightgate.core.evaluation.scoring import score_output
from weightgate.core.memory.loading import default_device, load_model
from weightgate.core.weights.verify import verified_snapshot

ProgressFn = Callable[[dict], None]




# --- scoring and summaries --------------------------------------------------------------------


def score_case(case: EvalCase, prompt: str, output: str, tokens_in: int = 0, tokens_out: int = 0,
               seconds: float = 0.0, extra: dict | None = None) -> CaseResult:
    result = score_output(case.scorer, output, case.expected, case.options)
    extra = dict(extra or {})
    extra["detail"] = result.detail
    if case.options:
        extra["options"] = case.options
    return CaseResult(id=case.id, prompt=prompt, output=output, expected=list(case.expected), scorer=case.scorer,
                      score=result.score, passed=result.passed, tags=list(case.tags), tokens_in=tokens_in,
                      tokens_out=tokens_out, seconds=round(seconds, 6), extra=extra)


def summarize(cases: list[CaseResult], seconds: float) -> dict:
    def block(rows: list[CaseResult]) -> dict:
        count = len(rows)
        return {"cases": count, "passed": sum(1 for r in rows if r.passed),
                "score": round(sum(r.score for r in rows) / count, 6) if count else 0.0}

    tags = sorted({tag for case in cases for tag in case.tags})
    tokens_out = sum(c.tokens_out for c in cases)
    return {**block(cases), "by_tag": {tag: block([c for c in cases if tag in c.tags]) for tag in tags},
            "tokens_in": sum(c.tokens_in for c in cases), "tokens_out": tokens_out,
            "seconds": round(seconds, 3), "tokens_per_s": round(tokens_out / seconds, 2) if seconds > 0 else 0.0}


# --- executing --------------------------------------------------------------------------------


def load_target(ws: Workspace, target: Target, device: str):
    """Load the target's model; the workspace's model only after its files are verified."""

    model_dir = target.model_dir
    if target.workspace_model:
        model_dir = verified_snapshot(ws)
    return load_model(model_dir, target.precision, target.adapter, device)


def execute(plan: EvalPlan, *, loaded=None, name: str = "", job_id: str | None = None,
            progress: ProgressFn | None = None, extra_config: dict | None = None) -> Run:
    """Generate and score every case of the plan and write the run (cases as they finish)."""

    ws = plan.ws
    created = time.time()
    loaded = loaded or load_target(ws, plan.target, plan.device)
    prompts = [render(loaded.tokenizer, plan.messages(case)) for case in plan.cases]
    loaded_template = getattr(loaded.tokenizer, "chat_template", None)
    if isinstance(loaded_template, str) and loaded_template != chat_template_text(plan.target.model_dir):
        raise InputError("the loaded tokenizer's chat template differs from the model directory's",
                         path=plan.target.model_dir, hint="the files changed while loading; run again")
    if loaded.precision != plan.identity["components"]["precision_spec"]:
        # The load had to differ from the plan (no per-thread subnormal flushing on this build):
        # the identity records what ran.
        components = {**plan.identity["components"], "precision_spec": loaded.precision}
        evalset_inputs = plan.identity["evalset_inputs"]
        plan.identity = {**plan.identity, "components": components, "digest": digest_value(components),
                         "outputs": digest_value({**components, "evalset": evalset_inputs})}
    config = {"kind": plan.kind, "batch_size": plan.batch_size, "limit": plan.limit, "device": plan.device,
              "precision": loaded.precision["name"], "adapter": str(plan.target.adapter) if plan.target.adapter else None,
              "model": plan.target.label, "model_dir": str(plan.target.model_dir),
              "max_new_tokens": plan.settings.get("max_new_tokens"), "overrides": plan.overrides,
              "sort_by_length": True, "job": job_id, "footprint_bytes": loaded.footprint_bytes,
              "load_seconds": round(loaded.load_seconds, 3), **(extra_config or {})}
    run = Run(id=new_run_id(plan.set_name, created), name=name or default_name(plan, loaded), created=created,
              set=plan.set_name, evalset_path=plan.evalset_rel, identity=plan.identity,
              environment=environment(plan.device), config=config, summary={}, status=PARTIAL)
    write_run(ws, run, [])
    results: dict[int, CaseResult] = {}
    began = time.perf_counter()

    def on_batch(indices: list[int], generated) -> None:
        for index, output in zip(indices, generated):
            case = plan.cases[index]
            result = score_case(case, prompts[index], output.text, output.tokens_in, output.tokens_out,
                                output.seconds, {"finished": output.finished, "ttft": round(output.ttft, 6)})
            results[index] = result
            append_case(ws, run.id, result)
        if progress is not None:
            done = len(results)
            elapsed = time.perf_counter() - began
            scored = list(results.values())
            progress({"done": done, "total": len(plan.cases), "eta_s": elapsed / done * (len(plan.cases) - done),
                      "score": sum(r.score for r in scored) / done, "passed": sum(r.passed for r in scored),
                      "run": run.id})

    try:
        generate_all(loaded, prompts, plan.settings, plan.batch_size, on_batch=on_batch)
    except BaseException as exc:
        # Cancelled (JobCancelled, Ctrl-C): partial, with every finished case kept. An error: failed.
        run.status = FAILED if isinstance(exc, Exception) else PARTIAL
        ordered = [results[i] for i in sorted(results)]
        run.summary = summarize(ordered, time.perf_counter() - began)
        run.extra["error"] = f"{type(exc).__name__}: {exc}"
        write_run(ws, run, ordered)
        raise
    ordered = [results[i] for i in range(len(plan.cases))]
    run.summary = summarize(ordered, time.perf_counter() - began)
    run.status = COMPLETE
    write_run(ws, run, ordered)
    return run


def default_name(plan: EvalPlan, loaded) -> str:
    label = Path(plan.target.label).name or plan.target.label
    adapter = f" + {plan.target.adapter.name}" if plan.target.adapter else ""
    return f"{plan.set_name}: {label} {loaded.precision['name']}{adapter}"


# --- re-scoring -------------------------------------------------------------------------------


def rescore(ws: Workspace, run_id: str, *, name: str = "") -> Run:
    """A new run from a saved one's outputs, scored with today's eval set; nothing is generated.

    Refused when the inputs reaching the model changed (a case's input, the header, the cases
    themselves): then the outputs would not answer today's prompts and a new run is needed."""
    source = read_run(ws, run_id)
    if source.status != COMPLETE:
        raise InputError(f"run {source.id} is {source.status}; only a complete run can be re-scored")
    evalset = load_valid_evalset(ws.root / source.evalset_path)
    limit = source.components.get("limit")
    cases = evalset.cases[:limit] if limit else list(evalset.cases)
    if inputs_digest(evalset, cases) != source.identity.get("evalset_inputs"):
        raise InputError(f"the eval set's inputs changed since run {source.id}: its outputs answer other prompts",
                         path=evalset.path, hint="run the eval again: weightgate eval run")
    saved = {case.id: case for case in source.cases}
    rescored = []
    for case in cases:
        old = saved[case.id]
        extra = {key: value for key, value in old.extra.items() if key not in ("detail", "options")}
        rescored.append(score_case(case, old.prompt, old.output, old.tokens_in, old.tokens_out, old.seconds, extra))
    components = {**source.components, "evalset": digest_file(evalset.path)}
    identity = {**source.identity, "digest": digest_value(components), "components": components,
                "scoring": scoring_digest(cases)}
    created = time.time()
    summary = summarize(rescored, float(source.summary.get("seconds") or 0.0))
    run = Run(id=new_run_id(source.set, created), name=name or f"{source.name} (re-scored)", created=created,
              set=source.set, evalset_path=source.evalset_path, identity=identity, environment=source.environment,
              config={**source.config, "kind": "rescore", "rescored_kind": source.config.get("kind", "eval"),
                      "rescored_from": source.id, "job": None},
              summary=summary, status=COMPLETE)
    write_run(ws, run, rescored)
    return run


def reusable_run(ws: Workspace, plan: EvalPlan) -> Run | None:
    """A complete run that generated exactly what this plan would, scored differently."""
    for run in list_runs(ws, plan.set_name):
        if (run.status == COMPLETE and run.identity.get("outputs") == plan.identity["outputs"]
                and run.digest != plan.identity["digest"]):
            return run
    return None


# --- baselines and evidence -------------------------------------------------------------------


def current_mismatch(ws: Workspace, run: Run, prints: Fingerprints | None = None) -> list[str]:
    """Which of model, precision, adapter, eval set differ between the run and today."""
    prints = prints or Fingerprints(ws)
    wanted = {"model": "model", "precision": "precision", "adapter": "adapter", "evalset": f"evalset.{run.set}"}
    components = run.components
    return [key for key, name in wanted.items() if components.get(key) != prints.get(name)]


def mark_baseline(ws: Workspace, run_id: str) -> dict:
    """Mark a complete, full-set run as the baseline for its model, precision and adapter (one per
    set and combination: the previous one is unmarked). For a task run of today's model,
    precision, adapter and eval set, record eval.baseline and whether fine-tuning is needed."""

    run = read_run(ws, run_id)
    if run.status != COMPLETE:
        raise InputError(f"run {run.id} is {run.status}; only a complete run can be a baseline")
    if run.components.get("limit"):
        raise InputError(f"run {run.id} covers only the first {run.components['limit']} cases",
                         hint="a baseline needs the whole eval set: run it without --limit")
    same = ("model", "precision", "adapter")
    for other in list_runs(ws, run.set):
        if other.baseline and other.id != run.id and all(other.components.get(k) == run.components.get(k)
                                                         for k in same):
            other.baseline = False
            write_run(ws, other)
    run.baseline = True
    write_run(ws, run)
    outcome = {"run": run.id, "baseline": True, "evidence": None, "finetuning_needed": None,
               "mismatch": current_mismatch(ws, run)}
    if run.set != "task" or outcome["mismatch"]:
        return outcome
    summary = run.summary
    values = {"run": run.id, "score": summary.get("score"), "cases": summary.get("cases"),
              "passed": summary.get("passed"), "identity": run.digest}
    record_result(ws, "eval.baseline", PASS, values,
                  note=f"baseline {run.id}: score {summary.get('score', 0):.3f} on {summary.get('cases')} cases")
    outcome["evidence"] = "eval.baseline"
    threshold = (plain(ws.config()).get("requirements") or {}).get("quality_threshold")
    if (run.components.get("adapter") == ABSENT and isinstance(threshold, (int, float))
            and not isinstance(threshold, bool) and 0 < threshold <= 1):
        # "baseline 0.93 >= threshold 0.90": decided from the run's score (core.evaluation.finetune_need).
        outcome["finetuning_needed"] = record_finetuning_decision(ws, run=run).status == "fail"
    return outcome


def should_auto_baseline(ws: Workspace, run: Run) -> bool:
    """The first complete full run of a model + precision + adapter on this eval set becomes its
    baseline (later runs are compared with it; `weightgate eval baseline RUN` moves it)."""
    if run.status != COMPLETE or run.components.get("limit") or run.config.get("kind") not in EVAL_KINDS:
        return False
    existing = baseline_run(ws, run.set, **{key: run.components.get(key)
                                            for key in ("model", "precision", "adapter", "evalset")})
    return existing is None


def run_eval(ws: Workspace, set_name: str = "task", *, batch_size: int | None = None, limit: int | None = None,
             device: str | None = None, baseline: bool | None = None, name: str = "", reuse: bool = True,
             rerun: bool = False, job_id: str | None = None, progress: ProgressFn | None = None,
             log: Callable[[str], None] | None = None, loaded=None) -> dict:
    """The eval job's body: plan, reuse, re-score or generate, then baseline and evidence.

    A complete eval run with exactly this identity is reused ("reused run X": nothing is loaded
    or generated) unless `rerun`. baseline: True marks the run as baseline, False never, None the
    first full run of its model, precision and adapter. reuse: re-score a saved run when only the
    scoring changed."""

    log = log or (lambda message: None)
    plan = plan_eval(ws, set_name, batch_size=batch_size, limit=limit, device=device or default_device())
    same = None if rerun else run_with_identity(ws, set_name, plan.identity["digest"], EVAL_KINDS)
    previous = reusable_run(ws, plan) if reuse and not rerun and same is None else None
    if same is not None:
        log(f"reused run {same.id}: it is complete and has this run's identity {plan.identity['digest'][7:19]} "
            "(model, precision, adapter, eval set, prompt, generation, batch size); rerun to generate again")
        run = record_reuse(ws, same, kind=plan.kind, job=job_id)
    elif previous is not None:
        log(f"only expected answers or scorers changed since run {previous.id}: re-scoring its outputs, "
            "no generation")
        run = rescore(ws, previous.id, name=name)
    else:
        log(f"{len(plan.cases)} cases of {plan.evalset_rel}, batch size {plan.batch_size}, "
            f"identity {plan.identity['digest'][7:19]}")
        run = execute(plan, loaded=loaded, name=name, job_id=job_id, progress=progress)
    outcome = {"run": run.id, "status": run.status, "summary": run.summary, "identity": run.digest,
               "rescored_from": run.config.get("rescored_from"), "reused": run.id if same is not None else None,
               "baseline": None}
    if baseline or (baseline is None and should_auto_baseline(ws, run)):
        outcome["baseline"] = mark_baseline(ws, run.id)
    return outcome
