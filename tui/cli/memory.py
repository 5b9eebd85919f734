"""`weightgate memory`: phase 3, what fits, estimated and then measured: estimate, fit,
measure, quant-check."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from weightgate.core.engine.errors import InputError, WeightgateError
from weightgate.core.engine.evidence import latest_by_item, read_evidence
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.lock import read_lock
from weightgate.core.memory.checks import record_fit
from weightgate.core.memory.precision import estimate_for_source
from weightgate.core.memory.report_text import render_estimate_text
from weightgate.tui.cli.common import (
    AttachOpt,
    BatchSizeOpt,
    DeviceOpt,
    JsonOpt,
    command,
    fail,
    group,
    run_job,
    say_if_locked,
    workspace,
)

TRAIN_METHODS = ("lora", "qlora")
ContextOpt = Annotated[Optional[int], typer.Option("--context", min=1,
                                                   help="Target context (default: \\[requirements] context_length, "
                                                        "else the model's maximum).")]

app = group("memory", """Phase 3: what fits, estimated from metadata, then measured.

The estimate needs no weights; fit records the largest precision that fits; measure and
quant-check load the model in a job.""")


def _check_train(train: Optional[str], as_json: bool) -> None:
    if train is not None and train not in TRAIN_METHODS:
        fail(InputError(f"--train {train!r}: lora or qlora"), as_json)


@command(app)
def estimate(source: Annotated[str, typer.Argument(help="org/name or org/name@revision, a model directory or a "
                                                       ".gguf")],
             context: ContextOpt = None,
             batch: Annotated[int, typer.Option("--batch", min=1, help="Concurrent sequences.")] = 1,
             train: Annotated[Optional[str], typer.Option(
                 "--train", help="Also estimate training: lora (on a 32/16-bit or int8 base) or qlora (on a 4-bit "
                                 "base).")] = None,
             device: DeviceOpt = None,
             budget_gib: Annotated[Optional[float], typer.Option(
                 "--budget-gib", min=0.01, help="Budget instead of the device's free memory.")] = None,
             as_json: JsonOpt = False) -> None:
    """Memory per precision from metadata alone (no weights downloaded).

    For fp32, bf16, fp16, int8, nf4 and fp4: weights, KV cache, activations, overhead; fits or
    not with headroom; the largest precision that fits."""
    _check_train(train, as_json)
    try:
        report = estimate_for_source(source, context=context, batch=batch, train=train, device=device,
                                     budget_gib=budget_gib)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(render_estimate_text(report), end="")


@command(app)
def fit(precision: Annotated[Optional[str], typer.Argument(
            help="Choose this precision yourself (default: the largest that fits).")] = None,
        context: ContextOpt = None,
        batch: Annotated[Optional[int], typer.Option("--batch", min=1,
                                                     help="Default: \\[requirements] batch_size.")] = None,
        train: Annotated[Optional[str], typer.Option(
            "--train", help="Also choose for training: lora or qlora, written as \\[decisions] "
                            "training_precision / training_method.")] = None,
        device: DeviceOpt = None, as_json: JsonOpt = False) -> None:
    """Record the largest precision that fits, with the reason.

    Estimates the workspace's model, writes \\[decisions] precision (8-bit before 4-bit) and
    records memory.weights / kv_cache / fits / largest_precision. With --train it also writes
    the training choice (\\[decisions] training_precision, training_method, training_reason).
    Exit 1 when an item fails: nothing fits, the choice does not fit, or a larger one would."""
    _check_train(train, as_json)
    ws = workspace(as_json)
    try:
        result = record_fit(ws, precision, context=context, batch=batch, train=train, device=device)
    except WeightgateError as exc:
        fail(exc, as_json)
    say_if_locked(ws, 3, "this fit")
    ok = result.precision is not None and all(status == "pass" for status in result.evidence.values())
    if as_json:
        print(json.dumps({"precision": result.precision, "recommended": result.recommended,
                          "reason": result.reason, "training_precision": result.training_precision,
                          "training_method": result.training_method, "training_reason": result.training_reason,
                          "evidence": result.evidence, "report": result.report.to_dict()}, indent=2, default=str))
        raise typer.Exit(0 if ok else 1)
    print(render_estimate_text(result.report), end="")
    print()
    if result.precision:
        print(f"[decisions] precision = {result.precision!r}  ({result.reason})")
    else:
        print("nothing written: " + result.reason)
    if train and result.training_precision:
        print(f"[decisions] training_precision = {result.training_precision!r}, "
              f"training_method = {result.training_method!r}  ({result.training_reason})")
        decided = result.precision or (plain(ws.config()).get("decisions") or {}).get("precision")
        if decided and decided != result.training_precision:
            print(f"  note: `weightgate train start` trains at [decisions] precision ({decided}); "
                  f"decide {result.training_precision} there to train at it")
    elif train:
        reason = result.report.training_choice.reason if result.report.training_choice else "no estimate"
        print("training: nothing written: " + reason)
    latest = latest_by_item(read_evidence(ws))
    for item, status in result.evidence.items():
        note = latest[item].note if item in latest else ""
        print(f"  {status:<5} {item:<26} {note}")
    raise typer.Exit(0 if ok else 1)


def _require_precision(as_json: bool) -> None:
    ws = workspace(as_json)
    if read_lock(ws) is None:
        fail(InputError("no model locked in this workspace", path=ws.lock_path,
                        hint="weightgate weights choose SOURCE; weightgate weights fetch"), as_json)
    if not (plain(ws.config()).get("decisions") or {}).get("precision"):
        fail(InputError("no precision decided yet", path=ws.config_path,
                        hint="weightgate memory fit chooses the largest precision that fits"), as_json)


@command(app)
def measure(precision: Annotated[Optional[str], typer.Option(
                "--precision", help="Default: the decided precision (only that one is recorded as evidence).")] = None,
            train_batch: Annotated[int, typer.Option("--train-batch", min=0,
                                                     help="Also measure one LoRA step at this batch (0: no).")] = 0,
            train_seq: Annotated[int, typer.Option("--train-seq", min=1, help="Sequence length of that step.")] = 128,
            device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
            follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """Load the model at the precision and measure its memory (a job).

    The footprint with the quantization state, load and prefill peaks, optionally one LoRA step;
    compared with the estimate and recorded as memory.measured."""
    _require_precision(as_json)
    params = {"precision": precision, "device": device}
    if train_batch:
        params["train"] = {"batch": train_batch, "seq": train_seq}

    def verdict(result: dict):
        from weightgate.core.memory.checks import ERROR_SIGN, error_words  # lazy: only once a job ended

        lines = [f"{name:<8} estimate {row['estimate'] / 2**20:9.1f} MiB  measured {row['measured'] / 2**20:9.1f} MiB"
                 f"  error {row['error']:+.1%} ({error_words(row['error'])})"
                 for name, row in result["comparison"]["rows"].items()]
        lines.append(ERROR_SIGN)
        lines.append(f"{result['status']}: {result['note']}"
                     + ("" if result.get("recorded") else " (not the decided precision: not recorded)"))
        return "\n".join(lines), result["status"] == "pass"
    run_job("memory_measure", params, as_json=as_json, follow=follow, verdict=verdict)


@command(app, "quant-check")
def quant_check(batch_size: BatchSizeOpt = None,
                device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
                follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """Quantized quality on the hard and edge cases (a job).

    The task set at the reference precision and at the quantized choice, compared; fails when
    hard, edge or all cases lose more than \\[settings] quant_tolerance."""
    _require_precision(as_json)

    def verdict(result: dict):
        lines = [f"{name:<5} {row['cases']:>3} cases  {row['pass_rate_reference']:.0%} -> "
                 f"{row['pass_rate_quantized']:.0%}  ({row['delta']:+.1%}, {row['regressions']} regressions)"
                 for name, row in (result.get("groups") or {}).items() if row["cases"]]
        if result.get("reference_run"):
            lines.append(f"compare them: weightgate eval compare {result['reference_run']} {result['quantized_run']}")
        lines.append(f"{result['status']}: {result['note']}")
        return "\n".join(lines), result["status"] == "pass"
    run_job("quant_quality", {"batch_size": batch_size, "device": device}, as_json=as_json, follow=follow,
            verdict=verdict)
