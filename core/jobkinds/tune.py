"""Phase 5 job kinds: `data_check` (the training-data checks, for the TUI: the tokenizer load
stays out of its process), `fewshot` (the few-shot variant of the task eval, for
tune.prompting_first) and `tune_gate` (the keep-or-reject gate of an adapter, tune.gate).

params:
    data_check  fix (false: report and record only; true: also write the prepared copy)
    fewshot     shots (3), batch_size (default: the zero-shot baseline's)
    tune_gate   adapter (an id under .weightgate/adapters/ or a directory; default: the newest)
"""

from __future__ import annotations

from core.jobs import JobContext


def _workspace(ctx: JobContext):
    from core.errors import InputError
    from core.workspace import open_workspace

    if ctx.workspace is None:
        raise InputError("this job needs a workspace")
    return open_workspace(ctx.workspace)


def _progress(ctx: JobContext):
    def progress(event: dict) -> None:
        ctx.progress(event["done"], event["total"], unit="case", eta_s=event["eta_s"],
                     message=f"score {event['score']:.3f} so far")
        ctx.check_cancel()
    return progress


def run_data_check(ctx: JobContext) -> dict:
    from core.data_check import check_dataset, save_latest_report, write_prepared
    from core.data_evidence import record_data_evidence

    ws = _workspace(ctx)
    ctx.log("checking the training data")
    report = check_dataset(ws)
    prepared = write_prepared(ws, report) if ctx.params.get("fix") and not report.blocking else None
    save_latest_report(ws, report, prepared)
    items = record_data_evidence(ws, report, prepared)
    for item, status in items.items():
        ctx.log(f"{item}: {status}", level="info" if status == "pass" else "warning")
    if prepared is not None:
        ctx.artifact(prepared.train_path.parent / "report.json", label="prepared data")
    return {"items": items, "blocking": report.blocking, "digest": prepared.digest if prepared else None,
            "counts": prepared.counts if prepared else None}


def run_fewshot(ctx: JobContext) -> dict:
    from core.prompting import DEFAULT_SHOTS, run_fewshot as fewshot

    ws = _workspace(ctx)
    outcome = fewshot(ws, shots=int(ctx.params.get("shots") or DEFAULT_SHOTS), batch_size=ctx.params.get("batch_size"),
                      progress=_progress(ctx), log=ctx.log)
    zero = outcome["baseline_score"]
    ctx.log(f"few-shot {outcome['score']:.3f} (run {outcome['run']})"
            + (f" vs zero-shot {zero:.3f} (run {outcome['baseline']})" if zero is not None else ""))
    return outcome


def run_gate(ctx: JobContext) -> dict:
    from core.finetune_gate import run_gate as gate

    ws = _workspace(ctx)
    return gate(ws, ctx.params.get("adapter"), progress=_progress(ctx), log=ctx.log)
