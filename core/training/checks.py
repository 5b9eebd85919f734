"""Phase 5's items decided live at status time, from what jobs already recorded (torch-free):

    tune.qlora_nf4     the training run's quantization: its recorded precision and method, and the
                       bitsandbytes settings that precision loads with (core.memory.loading.precision_spec,
                       the one place training, eval and the shipped-version probe take them from)
    tune.loss_curves   the training run's journal holds train loss and validation loss points
                       (the `metric` events core.training.loop emits; what the loss chart draws)
    tune.data_size     the training examples counted by `weightgate data check` (tune.split's or
                       tune.format's evidence, while it is fresh for today's data)
    tune.prompting_first  a few-shot run of the task set beside the zero-shot baseline, both for
                       today's model, precision and eval set

"The training run" is the one these inputs produced: a run under .weightgate/adapters/ whose
run.json fingerprints (train config, dataset, model, precision) equal today's; the decided
adapter's run first, then finished runs, newest first. A run with other inputs never decides.

Recorded here when they are measured, tied to the fingerprints each item names:

    record_data_evidence   tune.format, dedup, leakage, token_lengths, pii, balance, split (a data check)
    record_lora_config     tune.lora_config: the config used, every value and whether it was a default
    record_effective_batch tune.effective_batch: micro x accumulation x processes, against the budget
    record_restore         tune.checkpoint_restore: the step-1 checkpoint restored bitwise equal
    record_best            tune.best_checkpoint: the run finished; its best step and validation loss

tune.gate is decided by keep_or_reject.py (it runs the eval sets with the adapter).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from weightgate.core.engine.check import CheckContext, CheckResult
from weightgate.core.engine.checklist import TRAINING_RUN_INPUTS, get_item
from weightgate.core.engine.digest import ABSENT
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.evidence import FAIL, PASS, latest_by_item, read_evidence, record_result
from weightgate.core.engine.fingerprints import Fingerprints
from weightgate.core.engine.jobs import events_path, read_status
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.checks import task_set
from weightgate.core.evaluation.runs import COMPLETE, Run, baseline_run, list_runs
from weightgate.core.memory.loading import precision_name, precision_spec
from weightgate.core.training.data.settings import train_data_path
from weightgate.core.training.runs import RUN_FILE, read_run

if TYPE_CHECKING:   # annotations only: the data check itself loads a tokenizer
    from weightgate.core.training.data.prepare import DataReport, PreparedDataset

RUN_INPUTS = TRAINING_RUN_INPUTS
FOUR_BIT = ("nf4", "fp4")
# Seeds: "a few hundred excellent examples beat thousands of noisy ones" (LoRA); "do not blindly
# full fine-tune with <1k examples"; "minimum 1000+ high-quality examples".
MIN_TRAIN_EXAMPLES = 200
MANY_TRAIN_EXAMPLES = 1000
TRAIN_HINT = "weightgate train start"


# --- the training run of today's inputs ---------------------------------------------------------


def training_run(ctx: CheckContext) -> dict | None:
    """run.json of the training run today's train config, data, model and precision produced."""
    if "training_run" in ctx.cache:
        return ctx.cache["training_run"]

    today = ctx.prints.of(RUN_INPUTS)
    runs = []
    if ctx.ws.adapters_dir.is_dir():
        for directory in ctx.ws.adapters_dir.iterdir():
            if not (directory / RUN_FILE).is_file():
                continue
            try:
                spec = read_run(directory)
            except InputError:
                continue
            if spec.get("fingerprints") == today:
                runs.append(spec)
    adapter = str(ctx.decisions().get("adapter") or "")
    runs.sort(key=lambda spec: (spec.get("run_id") == adapter, spec.get("status") == "finished",
                                spec.get("created") or 0), reverse=True)
    ctx.cache["training_run"] = runs[0] if runs else None
    return ctx.cache["training_run"]


def _no_run() -> CheckResult:
    return CheckResult("todo", f"no training run with today's training config, data, model and precision: "
                               f"{TRAIN_HINT}")


def check_qlora_nf4(ctx: CheckContext) -> CheckResult:
    spec = training_run(ctx)
    if spec is not None:
        precision, method = str(spec.get("precision")), str(spec.get("method"))
        where = f"run {spec.get('run_id')}"
    else:
        decisions = ctx.decisions()
        if not decisions.get("precision"):
            return CheckResult("todo", "no precision decided yet: weightgate memory fit")
        try:
            precision = precision_name(decisions["precision"])
        except InputError as exc:
            return CheckResult("fail", f"[decisions] precision: {exc.message}")
        method, where = ("qlora" if precision in FOUR_BIT else "lora"), "the decided precision"
    values = {"precision": precision, "method": method, "run": spec.get("run_id") if spec else None}
    if precision not in FOUR_BIT and method != "qlora":
        return CheckResult("not-needed", f"LoRA on a {precision} base ({where}): no 4-bit quantization, "
                                         "so no QLoRA data type to check", values)
    device = str(spec.get("device") or "cpu") if spec else "cpu"
    quant = precision_spec(precision, None, device)["quantization"] or {}
    values.update({k: quant.get(k) for k in ("quant_type", "double_quant", "compute_dtype")})
    if quant.get("quant_type") != "nf4":
        return CheckResult("fail", f"{where}: QLoRA on a {quant.get('quant_type') or precision} base: decide "
                                   "precision nf4 (4-bit NormalFloat keeps more precision for the same memory)"
                                   + (" and train again" if spec else ""), values)
    if spec is None:
        return CheckResult("todo", f"QLoRA at {precision}: {TRAIN_HINT} records the run's quantization", values)
    double = ", double quantization" if quant.get("double_quant") else ""
    return CheckResult("pass", f"{where}: QLoRA on an NF4 base{double}, compute in {quant.get('compute_dtype')}",
                       values)


# --- loss curves from the run's journal ---------------------------------------------------------

_CURVES: dict[str, dict] = {}   # events path -> {"offset", "size", "train", "val"}: read incrementally


def _curves(path: Path) -> tuple[dict[int, float], dict[int, float]]:
    """(step -> train loss, step -> validation loss) in a job journal; a step seen twice (a
    resumed run re-runs the steps after its last checkpoint) keeps its latest value."""

    key = str(path)
    try:
        size = os.stat(path).st_size
    except OSError:
        _CURVES.pop(key, None)
        return {}, {}
    cached = _CURVES.get(key)
    if cached is None or size < cached["offset"]:
        cached = _CURVES[key] = {"offset": 0, "train": {}, "val": {}}
    if size > cached["offset"]:
        events, cached["offset"] = read_events(path, cached["offset"])
        for event in events:
            if event.kind != "metric":
                continue
            values = (event.payload or {}).get("values") or {}
            step = values.get("step", (event.payload or {}).get("step"))
            if not isinstance(step, int):
                continue
            for name, series in (("loss", "train"), ("val_loss", "val")):
                if isinstance(values.get(name), (int, float)) and not isinstance(values.get(name), bool):
                    cached[series][step] = float(values[name])
    return cached["train"], cached["val"]


def _run_state(ctx: CheckContext, spec: dict, jobs: list[str]) -> str:
    """run.json's status, "interrupted" when it says running but its job has ended (as
    core.training.runs.list_runs reports it)."""
    status = str(spec.get("status"))
    if status in ("prepared", "running") and jobs:
        try:
            if read_status(ctx.ws.jobs_dir / jobs[-1]).is_terminal:
                return "interrupted"
        except InputError:
            return "interrupted"
    return status


def check_loss_curves(ctx: CheckContext) -> CheckResult:
    spec = training_run(ctx)
    if spec is None:
        return _no_run()
    run_id, jobs = spec.get("run_id"), [job for job in spec.get("job_ids") or [] if job]
    train: dict[int, float] = {}
    val: dict[int, float] = {}
    missing = []
    for job in jobs:
        path = events_path(ctx.ws.jobs_dir / job)
        if not path.is_file():
            missing.append(job)
            continue
        job_train, job_val = _curves(path)
        train.update(job_train)
        val.update(job_val)
    status = _run_state(ctx, spec, jobs)
    if status in ("prepared", "running"):
        # Decided when the run has ended: a pass re-recorded at every step would flood the evidence log.
        have = f"{len(train)} train-loss and {len(val)} validation-loss points so far"
        return CheckResult("todo", f"run {run_id} is {status}: {have} (the Fine-tuning screen draws them live)",
                           {"run": run_id})
    values = {"run": run_id, "jobs": jobs, "train_points": len(train), "val_points": len(val)}
    if train and val:
        best = min(val, key=lambda step: (val[step], step))
        last = max(val)
        values.update({"best_val_step": best, "best_val_loss": val[best], "last_val_loss": val[last],
                       "last_train_loss": train[max(train)]})
        detail = (f"run {run_id}: {len(train)} train-loss and {len(val)} validation-loss points in its journal; "
                  f"validation loss lowest {val[best]:.4f} at step {best}")
        if last != best and val[last] > val[best] * 1.05:
            detail += f", {val[last]:.4f} at step {last} (rising: overfitting; the best checkpoint is kept)"
        return CheckResult("pass", detail + f" (the Fine-tuning screen draws both; weightgate attach {jobs[-1]})",
                           values)
    lacking = " and ".join(name for name, series in (("train loss", train), ("validation loss", val))
                           if not series)
    if missing and len(missing) == len(jobs):
        return CheckResult("fail", f"run {run_id}: the journal of its job(s) {', '.join(missing)} is gone, so its "
                                   "curves cannot be shown: train again", values)
    return CheckResult("fail", f"run {run_id} ended {status} with no {lacking} in its journal: set [training] "
                               "eval_every so validation runs during training, and train again", values)


# --- dataset size from the data check ----------------------------------------------------------


def check_data_size(ctx: CheckContext) -> CheckResult:
    split, fmt = ctx.fresh_record("tune.split"), ctx.fresh_record("tune.format")
    if split is not None and isinstance(split.values.get("train"), int):
        count, what = split.values["train"], "training examples after cleaning and the split"
    elif fmt is not None and isinstance(fmt.values.get("examples"), int):
        count, what = fmt.values["examples"], "examples before cleaning (weightgate data check --fix splits them)"
    else:
        return CheckResult("todo", "no data check of today's training data: weightgate data check --fix")
    values = {"examples": count, "min": MIN_TRAIN_EXAMPLES}
    if count < MIN_TRAIN_EXAMPLES:
        return CheckResult("fail", f"{count} {what}: fewer than the few hundred clean examples LoRA needs "
                                   f"(at least {MIN_TRAIN_EXAMPLES}); add real examples, or waive with a reason",
                           values)
    note = "" if count >= MANY_TRAIN_EXAMPLES else (f"; under {MANY_TRAIN_EXAMPLES}: LoRA, not a full fine-tune, "
                                                     "and the gate's general set guards against forgetting")
    return CheckResult("pass", f"{count} {what}{note}", values)


# --- prompting first: few-shot beside the zero-shot baseline ------------------------------------


def check_prompting_first(ctx: CheckContext) -> CheckResult:
    prints = ctx.prints
    fewshot = latest_fewshot_run(ctx.ws, prints)
    if fewshot is None:
        return CheckResult("todo", "no few-shot run of the task set for today's model and precision: "
                                   "weightgate train fewshot")
    baseline = zero_shot_baseline(ctx.ws, prints)
    shots = fewshot.config.get("shots")
    values = {"fewshot_run": fewshot.id, "fewshot_score": fewshot.score, "shots": shots,
              "baseline_run": baseline.id if baseline else None, "baseline_score": baseline.score if baseline else None}
    if baseline is None:
        return CheckResult("fail", f"variant {fewshot.score:.2f} (run {fewshot.id}), but no baseline to compare "
                                   "with: weightgate eval run", values)
    if fewshot.config.get("few_shot_source") == ZERO_SHOT:
        own = len(task_set(ctx).options.few_shot) if task_set(ctx) else 0
        return CheckResult("pass", f"zero-shot {fewshot.score:.2f} (run {fewshot.id}), few-shot {baseline.score:.2f} "
                                   f"with the set's {own} example(s) (baseline {baseline.id})", values)
    return CheckResult("pass", f"zero-shot {baseline.score:.2f} (run {baseline.id}), few-shot {fewshot.score:.2f} "
                               f"with {shots} example(s) (run {fewshot.id})", values)


LIVE_CHECKS = {
    "tune.qlora_nf4": check_qlora_nf4,
    "tune.loss_curves": check_loss_curves,
    "tune.data_size": check_data_size,
    "tune.prompting_first": check_prompting_first,
}
FIX = "`weightgate data check --fix` writes the cleaned copy (the original is never edited)"


def _where(rows: list[dict], limit: int = 3) -> str:
    shown = ", ".join(f"line {row['line']}" for row in rows[:limit])
    return shown + (f" (+{len(rows) - limit} more)" if len(rows) > limit else "")


def decide(report: DataReport, prepared: PreparedDataset | None) -> dict[str, tuple[str, dict, str]]:
    """item id -> (status, values, note) for what this report shows."""
    out: dict[str, tuple[str, dict, str]] = {}
    short = prepared.digest[:16] if prepared else None
    problems = [*report.problems, *report.render_problems]
    values = {"formats": report.formats, "examples": report.examples, "records": len(report.units),
              "problems": len(problems)}
    if problems:
        first = problems[0]
        out["tune.format"] = (FAIL, values, f"{len(problems)} example(s) do not fit the prompt format; first "
                                            f"{first.location()}: {first.message}")
    else:
        kinds = ", ".join(f"{count} {name}" for name, count in sorted(report.formats.items()))
        out["tune.format"] = (PASS, values, f"{report.examples} examples ({kinds}) rendered with the model's "
                                            "chat template" if report.formats.get("chat", 0) + report.formats.get(
                                                "alpaca", 0) + report.formats.get("sharegpt", 0) + report.formats.get("preference", 0) else
                              f"{report.examples} raw-text documents, {len(report.units)} chunks")

    duplicates = len(report.removed.get("duplicate", []))
    values = {"exact_groups": len(report.exact_duplicates), "near_pairs": len(report.near_duplicates),
              "removed": duplicates, "threshold": report.settings.near_duplicate_threshold, "prepared": short}
    if not duplicates:
        out["tune.dedup"] = (PASS, values, f"no exact or near duplicates (Jaccard >= "
                                           f"{report.settings.near_duplicate_threshold:g})")
    elif prepared:
        out["tune.dedup"] = (PASS, values, f"{duplicates} duplicate(s) left out of the prepared set {short} "
                                           f"({len(report.exact_duplicates)} exact groups, "
                                           f"{len(report.near_duplicates)} near pairs)")
    else:
        rows = [row for group in report.exact_duplicates for row in group["removed"]] + \
            [pair["b"] for pair in report.near_duplicates]
        out["tune.dedup"] = (FAIL, values, f"{duplicates} duplicate(s) at {_where(rows)}; {FIX}")

    leaked = len(report.removed.get("leakage", []))
    values = {"leaks": len(report.leakage), "removed": leaked, "eval_cases": report.leakage_sets,
              "threshold": report.settings.leakage_threshold, "prepared": short}
    checked = " and ".join(f"{name} ({count})" for name, count in report.leakage_sets.items()) or "no eval set"
    if not report.leakage:
        out["tune.leakage"] = (PASS, values, f"no training example matches a case of {checked}")
    elif prepared:
        out["tune.leakage"] = (PASS, values, f"{leaked} example(s) matching eval cases left out of the prepared "
                                             f"set {short}")
    else:
        out["tune.leakage"] = (FAIL, values, f"{len(report.leakage)} eval case match(es) at "
                                             f"{_where(report.leakage)}; {FIX}")

    longest = max((unit.tokens for unit in report.units), default=0)
    values = {"max_tokens": report.max_tokens, "longest": longest, "over_long": len(report.over_long)}
    if report.over_long:
        out["tune.token_lengths"] = (FAIL, values, f"{len(report.over_long)} example(s) longer than "
                                                   f"{report.max_tokens} tokens at {_where(report.over_long)}: "
                                                   "shorten or split them (never truncated silently)")
    else:
        out["tune.token_lengths"] = (PASS, values, f"longest {longest} tokens <= {report.max_tokens}")

    pii = report.pii
    values = {"counts": {k: v for k, v in pii["counts"].items() if v}, "total": pii["total"], "prepared": short}
    found = ", ".join(f"{count} {kind}" for kind, count in pii["counts"].items() if count)
    if not pii["total"]:
        out["tune.pii"] = (PASS, values, "no emails, phone numbers, cards, IBANs, IP addresses or SSNs found")
    elif prepared:
        out["tune.pii"] = (PASS, values, f"{found} scrubbed in the prepared set {short}")
    else:
        out["tune.pii"] = (FAIL, values, f"{found} found at {_where(pii['findings'])}; {FIX}")

    tags = report.tags
    values = {"counts": tags["counts"], "untagged": tags["untagged"], "ratio": tags["ratio"],
              "max_ratio": tags["max_ratio"]}
    if not tags["counts"]:
        out["tune.balance"] = (FAIL, values, 'no example carries "tags": tag common queries and edge cases to '
                                             "check their balance (or waive this item)")
    elif tags["skewed"]:
        out["tune.balance"] = (FAIL, values, f"skewed: {tags['most']} {tags['counts'][tags['most']]} vs "
                                             f"{tags['least']} {tags['counts'][tags['least']]} (ratio "
                                             f"{tags['ratio']:g} > {tags['max_ratio']:g})")
    else:
        spread = ", ".join(f"{tag} {count}" for tag, count in tags["counts"].items())
        out["tune.balance"] = (PASS, values, f"{spread} (ratio {tags['ratio'] or 1:g} <= {tags['max_ratio']:g})")

    if prepared:
        train, val = prepared.counts["train"], prepared.counts["val"]
        values = {"train": train, "val": val, "digest": prepared.digest,
                  "val_fraction": report.settings.val_fraction}
        ok = train > 0 and val > 0
        out["tune.split"] = (PASS if ok else FAIL, values,
                             f"{train} train / {val} validation, split by content hash (prepared set {short})"
                             if ok else f"{train} train / {val} validation: too few examples for a split")
    elif report.blocking:
        out["tune.split"] = (FAIL, {"blocking": report.blocking},
                             "no split written: " + "; ".join(report.blocking))
    return out


def record_data_evidence(ws: Workspace, report: DataReport, prepared: PreparedDataset | None) -> dict[str, str]:
    """Append every decided item; returns item id -> status. Only for the workspace's own
    training data file (its digest is the `dataset` fingerprint the records carry)."""

    if report.path.resolve() != train_data_path(ws).resolve():
        return {}

    prints = Fingerprints(ws)
    decided = decide(report, prepared)
    latest = latest_by_item(read_evidence(ws))
    for item_id, (status, values, note) in decided.items():
        last = latest.get(item_id)
        if (last is not None and last.kind == "check" and last.status == status and last.values == values
                and last.fingerprints == prints.of(get_item(item_id).inputs)):
            continue   # training prepares the same data on every run: one record says it
        record_result(ws, item_id, status, values, kind="check", note=note, fingerprints=prints)
    return {item_id: status for item_id, (status, _, _) in decided.items()}


def record_lora_config(ws, run_id: str, config: dict, targets: list[str], method: str, precision: str) -> None:
    problems = []
    if config["alpha"] != 2 * config["r"]:
        problems.append(f"alpha {config['alpha']} is not 2r ({2 * config['r']})")
    if config.get("method") == "dpo" and config["lr"] > 5e-5:
        problems.append(f"lr {config['lr']:g} is over 10x the seed's DPO rate (5e-6): preference tuning drifts "
                        "from the reference model fast")
    elif config["lr"] > 5e-4:
        problems.append(f"lr {config['lr']:g} is above the conservative range (<= 2e-4 is the seeds' default)")
    values = {"run": run_id, "method": method, "precision": precision, "target_modules": targets,
              **{k: config[k] for k in ("r", "alpha", "dropout", "lr", "warmup_ratio", "epochs", "effective_batch",
                                        "seed", "max_grad_norm", "weight_decay")},
              "defaults": config.get("notes", []), "warnings": problems}
    note = (f"r {config['r']}, alpha {config['alpha']}, dropout {config['dropout']:g}, lr {config['lr']:g}, "
            f"warmup {config['warmup_ratio']:.0%}, {config['epochs']} epochs, {method} on {', '.join(targets)}")
    if config.get("method") == "dpo":
        values.update(objective="dpo", beta=config["beta"])
        note = f"DPO (beta {config['beta']:g}) on preference pairs; " + note
    if problems:
        note += "; " + "; ".join(problems)
    # Documented = recorded with every value; unconventional values are shown, not refused.
    record_result(ws, "tune.lora_config", PASS, values, note=note)


def record_effective_batch(ws, run_id: str, plan: dict) -> None:
    ok = plan["micro_batch"] * plan["accumulation"] * plan["processes"] == plan["effective_batch"] \
        and plan["fits"] is not False
    mib = 1 << 20
    budget = f"{plan['budget_bytes'] / mib:,.0f} MiB ({plan['budget_source']})" if plan["budget_bytes"] else "unknown"
    note = (f"{plan['micro_batch']} x {plan['accumulation']} x {plan['processes']} = {plan['effective_batch']}; "
            f"estimate {plan['estimate_bytes'] / mib:,.0f} MiB, with headroom {plan['required_bytes'] / mib:,.0f} MiB, "
            f"budget {budget} at seq {plan['seq']}")
    if plan["fits"] is False:
        note += ": even micro batch 1 does not fit; use QLoRA (nf4), a shorter max_seq or gradient checkpointing"
    record_result(ws, "tune.effective_batch", PASS if ok else FAIL, {"run": run_id, **plan}, note=note)


def record_restore(ws, run_id: str, result: dict) -> None:
    how = result.get("how") or "step-1 checkpoint restored into a fresh model and optimizer"
    note = (f"{how}: {result['adapter_tensors']} adapter and "
            f"{result['optimizer_tensors']} optimizer tensors bit-identical" if result["ok"]
            else "restore differs: " + "; ".join(result["differences"][:3]))
    record_result(ws, "tune.checkpoint_restore", PASS if result["ok"] else FAIL, {"run": run_id, **result}, note=note)


def record_best(ws, run_id: str, outcome: dict, best_path: str) -> None:
    finished = outcome["status"] == "finished" and outcome.get("best_step") is not None
    values = {"run": run_id, "best_step": outcome.get("best_step"), "best_val_loss": outcome.get("best_val_loss"),
              "steps": outcome.get("step"), "status": outcome["status"], "adapter": best_path}
    note = (f"run {run_id} finished {outcome.get('step')} steps; best val loss {outcome['best_val_loss']:.4f} at step "
            f"{outcome['best_step']} -> {best_path}" if finished else f"run {run_id} {outcome['status']}: "
            f"{outcome.get('message', '')}")
    record_result(ws, "tune.best_checkpoint", PASS if finished else FAIL, values, note=note)


FEWSHOT_KIND = "fewshot"


ZERO_SHOT = "zero-shot"   # the variant's source when the set brings its own few-shot turns


def zero_shot_baseline(ws: Workspace, prints: Fingerprints | None = None) -> Run | None:
    prints = prints or Fingerprints(ws)
    return baseline_run(ws, "task", model=prints.get("model"), precision=prints.get("precision"), adapter=ABSENT,
                        evalset=prints.get("evalset.task"))


def latest_fewshot_run(ws: Workspace, prints: Fingerprints) -> Run | None:
    for run in list_runs(ws, "task"):
        components = run.components
        if (run.status == COMPLETE and run.config.get("kind") == FEWSHOT_KIND and not components.get("limit")
                and components.get("model") == prints.get("model")
                and components.get("precision") == prints.get("precision")
                and components.get("evalset") == prints.get("evalset.task")):
            return run
    return None
