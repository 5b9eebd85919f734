"""Phase 3 commands: `estimate`, `fit`, `measure`, `quant-check`.

`estimate` works on any source (hub metadata by range requests, a directory, a GGUF file) with
no workspace; the others act on the workspace's locked model and record evidence.

Help texts go through rich markup (typer's rich_markup_mode): a TOML table name such as
[decisions] would be read as a style tag and vanish, so it is written escaped, \\[decisions],
in raw strings.
"""

from __future__ import annotations

import json
from typing import Optional

TRAIN_METHODS = ("lora", "qlora")


def add_memory_commands(app, workspace, fail) -> None:
    import typer

    from weightgate.core.engine.errors import InputError, WeightgateError

    def check_train(train: Optional[str], as_json: bool) -> None:
        if train is not None and train not in TRAIN_METHODS:
            fail(InputError(f"--train {train!r}: lora or qlora"), as_json)

    @app.command()
    def estimate(source: str = typer.Argument(..., help="org/name or org/name@revision, a model directory or a .gguf"),
                 context: Optional[int] = typer.Option(None, "--context", min=1,
                                                       help="Target context (default: the model's maximum)."),
                 batch: int = typer.Option(1, "--batch", min=1, help="Concurrent sequences."),
                 train: Optional[str] = typer.Option(None, "--train",
                                                     help="Also estimate training: lora (on a 32/16-bit or int8 "
                                                          "base) or qlora (on a 4-bit base)."),
                 device: Optional[str] = typer.Option(None, "--device",
                                                      help="auto (default), cpu, cuda or cuda:N: whose memory is the budget."),
                 budget_gib: Optional[float] = typer.Option(None, "--budget-gib", min=0.01,
                                                            help="Budget instead of the device's free memory."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
        """Memory per precision (fp32, bf16, fp16, int8, nf4, fp4) from metadata alone (no weights
        downloaded): weights, KV cache, activations, overhead; fits or not with headroom; the
        largest precision that fits."""
        from weightgate.core.memory.precision import estimate_for_source
        from weightgate.core.memory.report_text import render_estimate_text

        check_train(train, as_json)
        try:
            report = estimate_for_source(source, context=context, batch=batch, train=train, device=device,
                                         budget_gib=budget_gib)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2, default=str))
        else:
            print(render_estimate_text(report), end="")

    @app.command()
    def fit(precision: Optional[str] = typer.Argument(None, help="Choose this precision yourself "
                                                                 "(default: the largest that fits)."),
            context: Optional[int] = typer.Option(None, "--context", min=1,
                                                  help=r"Default: \[requirements] context_length."),
            batch: Optional[int] = typer.Option(None, "--batch", min=1, help=r"Default: \[requirements] batch_size."),
            train: Optional[str] = typer.Option(None, "--train",
                                                help=r"Also choose for training: lora or qlora, written as "
                                                     r"\[decisions] training_precision / training_method."),
            device: Optional[str] = typer.Option(None, "--device", help="auto (default), cpu, cuda or cuda:N."),
            as_json: bool = typer.Option(False, "--json")) -> None:
        r"""Estimate the workspace's model, write \[decisions] precision (the largest that fits, 8-bit
        before 4-bit) with the reason, and record memory.weights / kv_cache / fits / largest_precision.
        With --train, also write the training choice: \[decisions] training_precision, training_method
        and training_reason. Exit 1 when an item fails: nothing fits, the choice does not fit, or a
        larger one would."""
        from weightgate.core.memory.checks import record_fit
        from weightgate.core.memory.report_text import render_estimate_text

        check_train(train, as_json)
        ws = workspace(as_json)
        try:
            result = record_fit(ws, precision, context=context, batch=batch, train=train, device=device)
        except WeightgateError as exc:
            fail(exc, as_json)
        ok = result.precision is not None and all(status == "pass" for status in result.evidence.values())
        if as_json:
            print(json.dumps({"precision": result.precision, "recommended": result.recommended,
                              "reason": result.reason, "training_precision": result.training_precision,
                              "training_method": result.training_method, "training_reason": result.training_reason,
                              "evidence": result.evidence, "report": result.report.to_dict()}, indent=2, default=str))
        else:
            print(render_estimate_text(result.report), end="")
            print()
            if result.precision:
                print(f"[decisions] precision = {result.precision!r}  ({result.reason})")
            else:
                print("nothing written: " + result.reason)
            if train and result.training_precision:
                print(f"[decisions] training_precision = {result.training_precision!r}, "
                      f"training_method = {result.training_method!r}  ({result.training_reason})")
                decided = result.precision or _decided(ws)
                if decided and decided != result.training_precision:
                    print(f"  note: `weightgate train` trains at [decisions] precision ({decided}); "
                          f"decide {result.training_precision} there to train at it")
            elif train:
                reason = result.report.training_choice.reason if result.report.training_choice else "no estimate"
                print("training: nothing written: " + reason)
            from weightgate.core.engine.evidence import latest_by_item, read_evidence

            latest = latest_by_item(read_evidence(ws))
            for item, status in result.evidence.items():
                note = latest[item].note if item in latest else ""
                print(f"  {status:<5} {item:<26} {note}")
        raise typer.Exit(0 if ok else 1)

    def _decided(ws) -> str | None:
        from weightgate.core.engine.fingerprints import plain

        return (plain(ws.config()).get("decisions") or {}).get("precision")

    def start(kind: str, params: dict, as_json: bool, follow: bool, verdict) -> None:
        from weightgate.tui.cli import run_job_command

        run_job_command(workspace(as_json), kind, params, as_json=as_json, follow=follow, verdict=verdict)

    def require_precision(as_json: bool) -> None:
        from weightgate.core.engine.fingerprints import plain
        from weightgate.core.engine.lock import read_lock

        ws = workspace(as_json)
        if read_lock(ws) is None:
            fail(InputError("no model locked in this workspace", path=ws.lock_path,
                            hint="weightgate choose SOURCE; weightgate fetch"), as_json)
        if not (plain(ws.config()).get("decisions") or {}).get("precision"):
            fail(InputError("no precision decided yet", path=ws.config_path,
                            hint="weightgate fit chooses the largest precision that fits"), as_json)

    @app.command()
    def measure(precision: Optional[str] = typer.Option(None, "--precision",
                                                         help="Default: the decided precision (only that one "
                                                              "is recorded as evidence)."),
                train_batch: int = typer.Option(0, "--train-batch", min=0,
                                                help="Also measure one LoRA step at this batch (0: no)."),
                train_seq: int = typer.Option(128, "--train-seq", min=1, help="Sequence length of that step."),
                device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
                follow: bool = typer.Option(False, "--attach", help="Follow the job until it ends."),
                as_json: bool = typer.Option(False, "--json")) -> None:
        """Load the model at the precision and measure its memory (a job): footprint incl. the
        quantization state, load and prefill peaks, optionally a LoRA step; compared with the
        estimate and recorded as memory.measured."""
        require_precision(as_json)
        params = {"precision": precision, "device": device}
        if train_batch:
            params["train"] = {"batch": train_batch, "seq": train_seq}

        def verdict(result: dict):
            lines = [f"{name:<8} estimate {row['estimate'] / 2**20:9.1f} MiB  measured {row['measured'] / 2**20:9.1f} MiB"
                     f"  error {row['error']:+.1%}" for name, row in result["comparison"]["rows"].items()]
            lines.append(f"{result['status']}: {result['note']}"
                         + ("" if result.get("recorded") else " (not the decided precision: not recorded)"))
            return "\n".join(lines), result["status"] == "pass"
        start("memory_measure", params, as_json, follow, verdict)

    @app.command("quant-check")
    def quant_check(batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
                    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
                    follow: bool = typer.Option(False, "--attach", help="Follow the job until it ends."),
                    as_json: bool = typer.Option(False, "--json")) -> None:
        r"""Quantized quality (a job): the task set at the reference precision and at the quantized
        choice, compared; fails when hard or edge cases lose more than \[settings] quant_tolerance."""
        require_precision(as_json)

        def verdict(result: dict):
            lines = [f"{name:<5} {row['cases']:>3} cases  {row['pass_rate_reference']:.0%} -> "
                     f"{row['pass_rate_quantized']:.0%}  ({row['delta']:+.1%}, {row['regressions']} regressions)"
                     for name, row in (result.get("groups") or {}).items() if row["cases"]]
            if result.get("reference_run"):
                lines.append(f"compare them: weightgate compare {result['reference_run']} {result['quantized_run']}")
            lines.append(f"{result['status']}: {result['note']}")
            return "\n".join(lines), result["status"] == "pass"
        start("quant_quality", {"device": device, "batch_size": batch_size}, as_json, follow, verdict)
