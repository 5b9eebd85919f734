"""`memory_measure`: load the workspace's model at its decided precision (files verified first),
measure its memory, compare with the estimate and record memory.measured.

params:
    precision   default: [decisions] precision (native when none). Another precision is
                measured and reported but not recorded (the evidence is tied to the decision).
    infer       {"batch": B, "seq": S} to measure one prefill too (default: the target batch x
                min(context, 512)); false to skip
    train       {"batch": 1, "seq": 128, "r": 16, "targets": ..., "gradient_checkpointing": false}
                to measure one LoRA training step too
    device      auto (default), cpu or cuda
"""

from __future__ import annotations

from weightgate.core.engine.evidence import record_result
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.job_process import JobContext
from weightgate.core.memory.checks import compare_with_estimate, error_words, verdict
from weightgate.core.memory.estimate import canonical_precision
from weightgate.core.memory.measure import measure
from weightgate.core.memory.precision import layout_for, tokenizer_bytes, workspace_metadata, workspace_targets
from weightgate.core.weights.verify import verified_snapshot

DEFAULT_PREFILL_SEQ = 512


def run_measure(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    params = ctx.params
    ctx.progress(0, 3, message="verifying the weights")
    model_dir = verified_snapshot(ws)
    meta = workspace_metadata(ws)
    layout = layout_for(meta)
    config = plain(ws.config())
    decided = (config.get("decisions") or {}).get("precision")
    native = layout.native_precision
    decided_name = canonical_precision(decided, native) if decided else native
    precision = canonical_precision(params.get("precision") or decided_name, native)
    targets = workspace_targets(config, config_path=ws.config_path)
    infer = params.get("infer")
    if infer is None:
        infer = {"batch": targets["batch"], "seq": min(targets["context"] or DEFAULT_PREFILL_SEQ, DEFAULT_PREFILL_SEQ)}
    device = params.get("device")
    device = None if device in (None, "auto") else device
    ctx.check_cancel()
    ctx.progress(1, 3, message=f"loading at {precision}")
    result = measure(model_dir, precision, device=device, infer=infer or None, train=params.get("train") or None,
                     log=ctx.log)
    ctx.progress(2, 3, message="comparing with the estimate")
    comparison = compare_with_estimate(result, layout, tokenizer_bytes=tokenizer_bytes(meta))
    status, note = verdict(comparison, targets["headroom"])
    for name, row in comparison["rows"].items():
        ctx.log(f"{name}: estimate {row['estimate']:,} B, measured {row['measured']:,} B, error {row['error']:+.1%} ({error_words(row['error'])})")
    ctx.metric({f"{name}_error": round(row["error"], 4) for name, row in comparison["rows"].items()})
    recorded = precision == decided_name
    if recorded:
        record_result(ws, "memory.measured", status, {"comparison": comparison, "measurement": result}, note=note)
    else:
        ctx.log(f"{precision} is not the decided precision ({decided_name}): not recorded as evidence", level="warning")
    ctx.progress(3, 3, message=note)
    return {"status": status, "note": note, "recorded": recorded, "comparison": comparison, "measurement": result}
