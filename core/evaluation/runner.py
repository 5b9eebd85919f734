"""Eval runs: plan (torch-free: what runs and its identity), execute (load, render, generate in
batches, score, write the run), re-score saved outputs, and baselines with their evidence.

Run identity. A digest of everything that changes the outputs:
    model          the lock digest (the workspace's model) or a candidate's source + file digest
    precision      digest of the precision decision as written ("absent": the native dtype);
                   equal to the "precision" fingerprint, so evidence and runs line up
    precision_spec the resolved precision: name, dtype, bitsandbytes settings (device-dependent)
    adapter        digest of the adapter decision ("absent": none), = the "adapter" fingerprint
    adapter_files  digest of the adapter's files (a retrained adapter at the same path differs)
    evalset        digest of the eval-set file, = the "evalset.task"/"evalset.general" fingerprint
    prompt         system prompt, few-shot turns, chat template or plain rendering
    chat_template  digest of the tokenizer's chat template text
    generation     the generation config actually used (the model's generation_config.json
                   defaults, then greedy decoding and max_new_tokens, then overrides)
    batch_size     batching changes the arithmetic, so it is part of the identity
    limit          a run over the first N cases only (None: the whole set)
Beside it, `outputs` digests the same with `evalset` replaced by the digest of the cases' inputs
alone: two runs with equal `outputs` generate the same text, so when only expected answers or
scorers changed, the saved outputs are re-scored instead of generated again. Package versions and
the device are recorded as the run's environment, not in the identity; run names, the workspace's
path and the ceilings are not in it either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from weightgate.core.engine.digest import ABSENT, digest_file, digest_value
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import PASS, record_result
from weightgate.core.engine.fingerprints import Fingerprints, plain
from weightgate.core.engine.lock import lock_digest, model_dir, read_lock
from weightgate.core.engine.workspace import Workspace, setting_path
from weightgate.core.evaluation.evalsets import EvalCase, EvalSet, load_evalset
from weightgate.core.evaluation.finetune_need import record_finetuning_decision
from weightgate.core.evaluation.generation import (
    build_messages,
    chat_template_text,
    environment,
    generate_all,
    generation_settings,
    render,
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
    write_run,
)
from weightgate.core.evaluation.scoring import score_output
from weightgate.core.memory.loading import default_device, load_model, precision_spec
from weightgate.core.weights.verify import verified_snapshot

SET_SETTINGS = {"task": ("eval_set", "evals/task.jsonl"), "general": ("general_set", "evals/general.jsonl")}
DEFAULT_BATCH_SIZE = 8
# What a run was for; eval.fresh, baselines and ship look at full evaluations of the model as it
# is decided: plain ones, re-scorings of them, and the gate's (the kept adapter's task and general
# runs are exactly what `weightgate eval run` would generate next).
EVAL_KINDS = ("eval", "rescore", "gate")

ProgressFn = Callable[[dict], None]


# --- what is evaluated -----------------------------------------------------------------------


@dataclass
class Target:
    """A model to evaluate: where its files are and what identifies it."""

    model_dir: Path
    model_id: str                     # lock digest, or a candidate's source + file digest
    label: str                        # for people: the source spec
    precision: object = None          # as decided (a name or table); None: native
    adapter: Path | None = None
    adapter_decision: object = None   # [decisions] adapter as written
    workspace_model: bool = False     # the locked model: verify its files before loading


def decisions(ws: Workspace, config: dict | None = None) -> dict:
    config = config if config is not None else plain(ws.config())
    value = config.get("decisions")
    return value if isinstance(value, dict) else {}


def resolve_adapter(ws: Workspace, value) -> Path | None:
    """`[decisions] adapter`: a directory (relative to the workspace) or an id under
    .weightgate/adapters/ (its `best/` when it has one)."""
    if not value:
        return None
    text = str(value.get("path") if isinstance(value, dict) else value)
    for candidate in (ws.root / text, ws.adapters_dir / text):
        for where in (candidate / "best", candidate):
            if (where / "adapter_config.json").is_file():
                return where.resolve()
    raise InputError(f"adapter {text!r} not found (no adapter_config.json)", path=ws.config_path,
                     hint="[decisions] adapter is a directory written by peft, or an id under .weightgate/adapters/")


def adapter_files_digest(adapter: Path | None) -> str:
    if adapter is None:
        return ABSENT
    files = sorted(p for p in adapter.iterdir() if p.is_file() and p.name.startswith("adapter_"))
    return digest_value([(p.name, digest_file(p)) for p in files])


def workspace_target(ws: Workspace, config: dict | None = None) -> Target:
    """The locked model at the decided precision and adapter (files verified when run)."""

    lock = read_lock(ws)
    if lock is None:
        raise InputError("no model locked in this workspace", path=ws.lock_path,
                         hint="choose and fetch a model first: weightgate weights choose SOURCE; weightgate weights fetch")
    chosen = decisions(ws, config)
    return Target(model_dir=model_dir(ws, lock), model_id=lock_digest(lock), label=lock.source,
                  precision=chosen.get("precision"), adapter=resolve_adapter(ws, chosen.get("adapter")),
                  adapter_decision=chosen.get("adapter"), workspace_model=True)


# --- the plan ---------------------------------------------------------------------------------


@dataclass
class EvalPlan:
    ws: Workspace
    set_name: str
    evalset: EvalSet
    cases: list[EvalCase]
    target: Target
    device: str
    settings: dict
    batch_size: int
    limit: int | None
    identity: dict
    kind: str = "eval"
    overrides: dict = field(default_factory=dict)

    @property
    def evalset_rel(self) -> str:
        try:
            return str(self.evalset.path.relative_to(self.ws.root))
        except ValueError:
            return str(self.evalset.path)

    def messages(self, case: EvalCase) -> list[dict]:
        options = self.evalset.options
        return build_messages(case.input, options.system, options.few_shot)


def evalset_path(ws: Workspace, set_name: str, config: dict | None = None) -> Path:
    if set_name not in SET_SETTINGS:
        raise InputError(f"unknown eval set {set_name!r}", hint="--set task or --set general")
    setting, default = SET_SETTINGS[set_name]
    return setting_path(ws, config if config is not None else plain(ws.config()), setting, default)


def load_valid_evalset(path: Path) -> EvalSet:
    """The eval set, or an InputError listing every problem with its line (nothing runs on a
    set with a bad line: a silently skipped case changes the score)."""
    if not path.is_file():
        raise InputError("eval set not found", path=path, hint="write it first (see evals/README.md)")
    evalset = load_evalset(path)
    if evalset.problems:
        first = evalset.problems[0]
        listing = "\n".join(str(problem) for problem in evalset.problems)
        raise InputError(f"{len(evalset.problems)} problem(s) in the eval set:\n{listing}", path=path,
                         line=first.line, hint="fix them (`weightgate eval check` lists them), then run again")
    if not evalset.cases:
        raise InputError("the eval set has no cases", path=path)
    return evalset


def _settings_value(config: dict, key: str, default):
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    value = settings.get(key, default)
    return default if value in (None, "", 0) else value


def inputs_digest(evalset: EvalSet, cases: list[EvalCase]) -> str:
    """What of the eval set reaches the model: the header and each case's id and input."""
    return digest_value({"options": evalset.options.to_dict(), "cases": [(c.id, c.input) for c in cases]})


def scoring_digest(cases: list[EvalCase]) -> str:
    return digest_value([(c.id, c.expected, c.scorer, c.options, c.tags) for c in cases])


def make_identity(*, target: Target, evalset: EvalSet, cases: list[EvalCase], device: str, settings: dict,
                  batch_size: int, limit: int | None) -> dict:
    template = chat_template_text(target.model_dir)
    options = evalset.options
    components = {
        "model": target.model_id,
        "precision": digest_value(target.precision) if target.precision else ABSENT,
        "precision_spec": precision_spec(target.precision, target.model_dir, device),
        "adapter": digest_value(target.adapter_decision) if target.adapter_decision else ABSENT,
        "adapter_files": adapter_files_digest(target.adapter),
        "evalset": digest_file(evalset.path),
        "prompt": digest_value({"system": options.system, "few_shot": options.few_shot,
                                "format": "chat_template" if template else "plain"}),
        "chat_template": digest_value(template) if template else ABSENT,
        "generation": settings,
        "batch_size": int(batch_size),
        "limit": limit,
    }
    evalset_inputs = inputs_digest(evalset, cases)
    return {"digest": digest_value(components), "components": components,
            "outputs": digest_value({**components, "evalset": evalset_inputs}),
            "evalset_inputs": evalset_inputs, "scoring": scoring_digest(cases)}


def plan_eval(ws: Workspace, set_name: str = "task", *, batch_size: int | None = None, limit: int | None = None,
              device: str = "cpu", overrides: dict | None = None, target: Target | None = None,
              kind: str = "eval") -> EvalPlan:
    """Everything about a run that is known before loading the model, including its identity."""
    config = plain(ws.config())
    evalset = load_valid_evalset(evalset_path(ws, set_name, config))
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    cases = evalset.cases[:limit] if limit else list(evalset.cases)
    limit = limit if limit and limit < len(evalset.cases) else None
    batch_size = int(batch_size or _settings_value(config, "eval_batch_size", DEFAULT_BATCH_SIZE))
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    target = target or workspace_target(ws, config)
    max_new = evalset.options.max_new_tokens or int(_settings_value(config, "max_new_tokens", 0) or 0) or None
    settings = generation_settings(target.model_dir, max_new_tokens=max_new, overrides=overrides)
    identity = make_identity(target=target, evalset=evalset, cases=cases, device=device, settings=settings,
                             batch_size=batch_size, limit=limit)
    return EvalPlan(ws, set_name, evalset, cases, target, device, settings, batch_size, limit, identity, kind,
                    dict(overrides or {}))


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
             job_id: str | None = None, progress: ProgressFn | None = None, log: Callable[[str], None] | None = None,
             loaded=None) -> dict:
    """The eval job's body: plan, re-score or generate, then baseline and evidence.

    baseline: True marks the run as baseline, False never, None the first full run of its model,
    precision and adapter. reuse: re-score a saved run when only the scoring changed."""

    log = log or (lambda message: None)
    plan = plan_eval(ws, set_name, batch_size=batch_size, limit=limit, device=device or default_device())
    previous = reusable_run(ws, plan) if reuse else None
    if previous is not None:
        log(f"only expected answers or scorers changed since run {previous.id}: re-scoring its outputs, "
            "no generation")
        run = rescore(ws, previous.id, name=name)
    else:
        log(f"{len(plan.cases)} cases of {plan.evalset_rel}, batch size {plan.batch_size}, "
            f"identity {plan.identity['digest'][7:19]}")
        run = execute(plan, loaded=loaded, name=name, job_id=job_id, progress=progress)
    outcome = {"run": run.id, "status": run.status, "summary": run.summary, "identity": run.digest,
               "rescored_from": run.config.get("rescored_from"), "baseline": None}
    if baseline or (baseline is None and should_auto_baseline(ws, run)):
        outcome["baseline"] = mark_baseline(ws, run.id)
    return outcome
