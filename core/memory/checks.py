"""Phase 3's items, decided from what weightgate measured:

    record_fit             memory.weights, kv_cache, fits, largest_precision: the estimate of every
                           precision against the budget with headroom, and the precision decided
                           (the largest that fits, or the one asked for, with the reason)
    compare_with_estimate  memory.measured: a measured load (and LoRA step) against the estimate,
    verdict                within tolerance, and the headroom that covers the difference

memory.quant_quality is decided by evaluation/quant_quality.py (it runs the task set twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tomlkit

from weightgate.core.engine.evidence import record_result
from weightgate.core.memory import estimate as memory
from weightgate.core.memory.capability import capability_for, record_compute_decision
from weightgate.core.memory.estimate import CPU_FIRST_USE_BYTES, canonical_precision, estimate, size_text
from weightgate.core.memory.precision import METHOD_NAMES, MemoryReport, estimate_for_workspace

WEIGHTS_TOLERANCE = 0.05        # the weights estimate must be within 5% of the measured footprint


# With the runtime warmed first (warm_runtime), a CPU measurement over its baseline is the
# model's own memory; what is left is page granularity and malloc arenas.
CPU_NOISE_BYTES = 4 * 1024**2


CUDA_NOISE_BYTES = 16 * 1024**2  # allocator rounding and cuBLAS workspaces on a GPU


def relative_error(estimated: int | float, measured: int | float) -> float | None:
    """(estimate - measured) / measured: negative means the estimate was too low."""
    return None if not measured else (estimated - measured) / measured


ERROR_SIGN = "error = (estimate - measured) / measured: + means the estimate is above what was measured"


def error_words(error: float | None) -> str:
    """A relative error with its sign explained: `estimate 3.2% above measured`."""
    if error is None:
        return "not comparable (nothing measured)"
    if abs(error) < 0.0005:
        return "estimate matches measured"
    return f"estimate {abs(error):.1%} {'above' if error > 0 else 'below'} measured"


def compare_with_estimate(result: dict, layout: Any, *, tokenizer_bytes: int = 0, train_setup: Any = None) -> dict:
    """Each measured figure of `result` (from `measure`) beside the estimator's figure for the
    same thing, and the relative error:

      weights   estimate weights(precision)              vs  footprint (tensors as stored)
      load      weights + loading overhead               vs  RSS delta of the load (CPU) / CUDA max allocated
      prefill   KV cache + inference activations         vs  the prefill's peak over the loaded model
      train     total - runtime overhead                 vs  the step's peak over the runtime baseline
      step      activations + LoRA grads                 vs  the step's peak over the state before it
      runtime   the runtime overhead (CPU)               vs  the process's RSS once warmed (warm_runtime)

    On the CPU the baseline of load / prefill / train is the RSS after the runtime was warmed on
    a throwaway copy: the model's own memory, which the estimate less its runtime overhead must
    match. The runtime row is the other part of the total: per process, by machine.
    """

    precision, device = result["precision"], result["device"]
    over = memory.overhead(device, tokenizer_bytes=tokenizer_bytes)
    rows: dict[str, dict] = {}

    def row(name: str, estimated: int, measured: int | None) -> None:
        if measured is not None:
            rows[name] = {"estimate": int(estimated), "measured": int(measured),
                          "error": relative_error(estimated, measured)}

    weights = memory.weights(layout, precision, device).total
    row("weights", weights, result["footprint"]["total"])
    loaded = result.get("cuda_max_allocated") if device.startswith("cuda") else result.get("rss_load_delta")
    row("load", weights + over["loading"], loaded)
    if result.get("infer"):
        infer = result["infer"]
        est = memory.estimate(layout, precision, batch=infer["batch"], seq=infer["seq"], device=device,
                              tokenizer_bytes=tokenizer_bytes)
        row("prefill", est.breakdown["kv_cache"] + est.breakdown["activations"], infer.get("step_delta"))
    if result.get("train"):
        train = result["train"]
        method = train.get("method") or ("qlora" if precision in memory.FOUR_BIT else "lora")
        setup = train_setup or memory.TrainingSetup(
            method=method, r=train.get("r", 16), targets=train.get("targets") or "all-linear",
            batch=train["batch"], seq=train["seq"], gradient_checkpointing=train.get("gradient_checkpointing", False),
            dropout=train.get("dropout", 0.05))
        est = memory.estimate(layout, precision, device=device, training=setup, tokenizer_bytes=tokenizer_bytes)
        row("train", est.total - est.details["overhead"]["runtime"], train.get("peak_delta"))
        row("step", est.breakdown["activations"] + est.details["gradient_bytes"], train.get("step_delta"))
    warmed = bool(result.get("warmup")) and not device.startswith("cuda")
    if warmed:
        runtime = memory.overhead(device, training=bool(result.get("train")))["runtime"]
        row("runtime", runtime, result.get("rss_runtime"))
    return {"precision": precision, "device": device, "rows": rows, "warmed": warmed}


def verdict(comparison: dict, headroom: float = 0.3) -> tuple[str, str]:
    """pass when the weights estimate is within 5% of the footprint and every process-level
    measurement (load, prefill, train, runtime) stays inside the estimate plus the headroom
    budgeted for it, plus noise (CPU_NOISE_BYTES / CUDA_NOISE_BYTES; a CPU measurement taken
    without warming the runtime also carries its first-use state, so it gets that much more)."""

    rows = comparison["rows"]
    problems = []
    weights = rows.get("weights")
    if weights is None or weights["error"] is None or abs(weights["error"]) > WEIGHTS_TOLERANCE:
        problems.append(f"weights: {error_words(weights['error'])} (tolerance 5% either way)" if weights
                        else "no footprint measured")
    if str(comparison.get("device", "cpu")).startswith("cuda"):
        slack = CUDA_NOISE_BYTES
    else:
        slack = CPU_NOISE_BYTES + (0 if comparison.get("warmed") else CPU_FIRST_USE_BYTES["training"])
    for name in ("load", "prefill", "train", "runtime"):
        entry = rows.get(name)
        if entry and entry["measured"] > entry["estimate"] * (1 + headroom) + slack:
            problems.append(f"{name}: measured {entry['measured']:,} B exceeds the estimate {entry['estimate']:,} B "
                            f"+ {headroom:.0%} headroom")
    summary = ", ".join(f"{name}: {error_words(entry['error'])}" for name, entry in rows.items()
                        if entry["error"] is not None)
    return ("fail", "; ".join(problems)) if problems else ("pass", summary)


def _record_memory_evidence(ws: Any, report: MemoryReport, chosen: str | None, record_result) -> dict[str, str]:
    est = report.estimate_for(chosen) if chosen else None
    basis = {"source": report.source, "layout_source": report.layout.source, "device": report.device,
             "parameters": report.layout.parameter_count, "context": report.context, "batch": report.batch,
             "headroom": report.headroom, "budget": report.budget.bytes, "budget_source": report.budget.source}
    per_precision = {e.precision: {"breakdown": e.breakdown, "total": e.total, "required": e.required, "fits": e.fits}
                     for e in report.inference}
    statuses: dict[str, str] = {}
    weights = {e.precision: e.breakdown["weights"] for e in report.inference}
    record_result(ws, "memory.weights", "pass", {**basis, "weights": weights},
                  note=", ".join(f"{p} {size_text(b)}" for p, b in weights.items()))
    statuses["memory.weights"] = "pass"
    shown = est or report.inference[-1]
    kv_note = (f"KV cache for {report.context} tokens x batch {report.batch} at {shown.precision}: "
               f"{size_text(shown.breakdown['kv_cache'])}")
    record_result(ws, "memory.kv_cache", "pass", {**basis, "kv_cache": {e.precision: e.breakdown["kv_cache"]
                                                                         for e in report.inference}}, note=kv_note)
    statuses["memory.kv_cache"] = "pass"
    if est is None:
        why = report.choice.reason if report.choice else "no precision chosen"
        record_result(ws, "memory.fits", "fail", {**basis, "estimates": per_precision}, note=why)
        record_result(ws, "memory.largest_precision", "fail", {**basis, "estimates": per_precision}, note=why)
        return {**statuses, "memory.fits": "fail", "memory.largest_precision": "fail"}
    values = {**basis, "precision": chosen, "breakdown": est.breakdown, "total": est.total, "required": est.required,
              "estimates": per_precision}
    if report.training:
        values["training"] = {e.precision: {"breakdown": e.breakdown, "total": e.total, "fits": e.fits}
                              for e in report.training}
        values["training_choice"] = vars(report.training_choice) if report.training_choice else None
    fits = "pass" if est.fits else "fail"
    budget = size_text(report.budget.bytes) if report.budget.bytes is not None else "unknown"
    record_result(ws, "memory.fits", fits, values,
                  note=f"{chosen}: {size_text(est.total)} + {report.headroom:.0%} headroom = {size_text(est.required)} "
                       f"{'<=' if est.fits else '>'} budget {budget} ({report.budget.source})")
    statuses["memory.fits"] = fits
    status, note = _largest_reason(report, chosen)
    record_result(ws, "memory.largest_precision", status, values, note=note)
    statuses["memory.largest_precision"] = status
    return statuses


@dataclass
class FitResult:
    report: MemoryReport
    precision: str | None          # what [decisions] precision now says (None: nothing written)
    recommended: str | None
    reason: str
    evidence: dict[str, str]       # item -> status recorded
    training_precision: str | None = None   # [decisions] training_precision written (None: not asked / nothing fits)
    training_method: str = ""               # [decisions] training_method: the method asked for
    training_reason: str = ""


def _largest_reason(report: MemoryReport, chosen: str) -> tuple[str, str]:
    best = report.choice.precision if report.choice else None
    order = report.candidates or [e.precision for e in report.inference]
    if best is None:
        return "fail", report.choice.reason if report.choice else "nothing fits"
    if chosen == best:
        return "pass", f"{chosen} is the largest precision that fits"
    if chosen in order and best in order and order.index(chosen) > order.index(best):
        return "fail", (f"{chosen} chosen, but {best} fits too and comes first (native, 16-bit, 8-bit before 4-bit): "
                        "quantize only as far as needed")
    est = report.estimate_for(chosen)
    if chosen not in order and est is not None and est.fits:
        return "pass", (f"{chosen} chosen: above the native {report.layout.native_precision} (it adds memory, not "
                        "precision) and it fits")
    return "fail", f"{chosen} does not fit; the largest that fits is {best}"


def record_fit(ws: Any, precision: str | None = None, *, context: int | None = None, batch: int | None = None,
               train: str | None = None, device: str | None = None, snapshot: Any = None,
               metadata: Any = None) -> FitResult:
    """`weightgate memory fit`: estimate the workspace's model, choose the largest precision that fits
    (or take `precision` as the person's choice), write [decisions] precision and
    precision_reason, and record evidence for memory.weights, memory.kv_cache, memory.fits and
    memory.largest_precision (values: the breakdown). With `train` ("lora" | "qlora") the
    training choice is written too: [decisions] training_precision, training_method (the method
    asked for) and training_reason. Nothing is written for a choice when nothing fits (the
    earlier decision, if any, stays); the failing evidence / the result's reason says why.
    Writes go through tomlkit: comments and order survive."""

    report = estimate_for_workspace(ws, context=context, batch=batch, train=train, device=device,
                                    snapshot=snapshot, metadata=metadata)
    recommended = report.choice.precision if report.choice else None
    if precision is not None:
        chosen = canonical_precision(precision, report.layout.native_precision)
        if report.estimate_for(chosen) is None:
            report.inference.append(estimate(report.layout, chosen, batch=report.batch, seq=report.context,
                                             device=report.device, budget=report.budget.bytes,
                                             headroom=report.headroom))
        reason = f"chosen by hand; {report.choice.reason if report.choice else ''}".strip("; ")
    else:
        chosen = recommended
        reason = report.choice.reason if report.choice else "no estimate"
    training = report.training_choice
    train_precision = training.precision if training else None
    train_reason = training.reason if training else ""
    if report.train_setup is not None and train_precision is not None:
        s = report.train_setup
        train_reason = (f"{METHOD_NAMES[s.method]} r={s.r}, micro batch {s.batch} x {s.seq} tokens, gradient "
                        f"checkpointing {'on' if s.gradient_checkpointing else 'off'}: {train_reason}")
    if chosen is not None or train_precision is not None:
        def change(doc) -> None:
            if "decisions" not in doc:
                doc["decisions"] = tomlkit.table()
            decisions = doc["decisions"]
            if chosen is not None:
                decisions["precision"] = chosen
                decisions["precision_reason"] = reason
            if train_precision is not None:
                decisions["training_precision"] = train_precision
                decisions["training_method"] = training.method
                decisions["training_reason"] = train_reason
        ws.update_config(change)
    if report.device == "cuda":
        record_compute_decision(ws, capability_for(device if str(device).startswith("cuda") else "cuda"))
    statuses = _record_memory_evidence(ws, report, chosen, record_result)
    return FitResult(report, chosen, recommended, reason, statuses, train_precision,
                     training.method if training else "", train_reason)
