"""Items decided live from what other checks and jobs already recorded (torch-free, cheap):

    tune.qlora_nf4     the training run's quantization: its recorded precision and method, and the
                       bitsandbytes settings that precision loads with (core.generation.precision_spec,
                       the one place training, eval and the shipped-version probe take them from)
    tune.loss_curves   the training run's journal holds train loss and validation loss points
                       (the `metric` events core.training.loop emits; what the loss chart draws)
    tune.data_size     the training examples counted by `weightgate data check` (tune.split's or
                       tune.format's evidence, while it is fresh for today's data)
    ship.warmup        the health probe's cold start and first vs warm request (ship.health's
                       evidence for today's release)

"The training run" is the one these inputs produced: a run under .weightgate/adapters/ whose
run.json fingerprints (train config, dataset, model, precision) equal today's; the decided
adapter's run first, then finished runs, newest first. A run with other inputs never decides.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.checks import CheckContext, CheckResult
from core.fingerprints import Fingerprints

RUN_INPUTS = ("train_config", "dataset", "model", "precision")   # as core.training.session.FINGERPRINTS
FOUR_BIT = ("nf4", "fp4")
# Seeds: "a few hundred excellent examples beat thousands of noisy ones" (LoRA); "do not blindly
# full fine-tune with <1k examples"; "minimum 1000+ high-quality examples".
MIN_TRAIN_EXAMPLES = 200
MANY_TRAIN_EXAMPLES = 1000
TRAIN_HINT = "weightgate train"


def _prints(ctx: CheckContext) -> Fingerprints:
    if "fingerprints" not in ctx.cache:
        ctx.cache["fingerprints"] = Fingerprints(ctx.ws, ctx.config)
    return ctx.cache["fingerprints"]


def _latest_evidence(ctx: CheckContext) -> dict:
    """item id -> its latest check/job record (read once per status computation)."""
    if "latest_evidence" not in ctx.cache:
        from core.evidence import read_evidence

        latest = {}
        for record in read_evidence(ctx.ws):
            if record.kind in ("check", "job"):
                latest[record.item] = record
        ctx.cache["latest_evidence"] = latest
    return ctx.cache["latest_evidence"]


def _fresh_record(ctx: CheckContext, item_id: str):
    """The item's latest recorded result while its fingerprints equal today's, else None."""
    record = _latest_evidence(ctx).get(item_id)
    if record is None or _prints(ctx).changed(record.fingerprints):
        return None
    return record


# --- the training run of today's inputs ---------------------------------------------------------


def training_run(ctx: CheckContext) -> dict | None:
    """run.json of the training run today's train config, data, model and precision produced."""
    if "training_run" in ctx.cache:
        return ctx.cache["training_run"]
    from core.errors import InputError
    from core.training.runs import RUN_FILE, read_run

    today = _prints(ctx).of(RUN_INPUTS)
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
    decisions = ctx.config.get("decisions") if isinstance(ctx.config.get("decisions"), dict) else {}
    adapter = str(decisions.get("adapter") or "")
    runs.sort(key=lambda spec: (spec.get("run_id") == adapter, spec.get("status") == "finished",
                                spec.get("created") or 0), reverse=True)
    ctx.cache["training_run"] = runs[0] if runs else None
    return ctx.cache["training_run"]


def _no_run() -> CheckResult:
    return CheckResult("todo", f"no training run with today's training config, data, model and precision: "
                               f"{TRAIN_HINT}")


def check_qlora_nf4(ctx: CheckContext) -> CheckResult:
    from core.errors import InputError
    from core.generation import precision_name, precision_spec

    spec = training_run(ctx)
    if spec is not None:
        precision, method = str(spec.get("precision")), str(spec.get("method"))
        where = f"run {spec.get('run_id')}"
    else:
        decisions = ctx.config.get("decisions") if isinstance(ctx.config.get("decisions"), dict) else {}
        if not decisions.get("precision"):
            return CheckResult("todo", "no precision decided yet: weightgate fit")
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
    from core.events import read_events

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
        from core.errors import InputError
        from core.jobs import read_status

        try:
            if read_status(ctx.ws.jobs_dir / jobs[-1]).is_terminal:
                return "interrupted"
        except InputError:
            return "interrupted"
    return status


def check_loss_curves(ctx: CheckContext) -> CheckResult:
    from core.jobs import events_path

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
    split, fmt = _fresh_record(ctx, "tune.split"), _fresh_record(ctx, "tune.format")
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


# --- cold-start warm-up from the health probe --------------------------------------------------


def check_warmup(ctx: CheckContext) -> CheckResult:
    record = _fresh_record(ctx, "ship.health")
    if record is None:
        return CheckResult("todo", "needs weightgate health VERSION (a cold load and a ping) on the release")
    cold, first, warm = (record.values.get(key) for key in ("cold_start_s", "first_request_ms", "warm_request_ms"))
    values = {"cold_start_s": cold, "first_request_ms": first, "warm_request_ms": warm}
    if record.status != "pass" or not isinstance(cold, (int, float)):
        return CheckResult("fail", f"the health check did not get the release ready ({record.note}): nothing to "
                                   "warm up yet", values)
    detail = (f"cold start {cold:.1f} s; `weightgate health` loads and pings before traffic, so use it as the "
              f"readiness probe and give the startup probe more than {cold:.0f} s")
    if isinstance(first, (int, float)) and isinstance(warm, (int, float)):
        detail += f" (first request {first:.0f} ms, warm {warm:.0f} ms)"
    return CheckResult("pass", detail, values)


LIVE_CHECKS = {
    "tune.qlora_nf4": check_qlora_nf4,
    "tune.loss_curves": check_loss_curves,
    "tune.data_size": check_data_size,
    "ship.warmup": check_warmup,
}
