"""`quant_quality`: the task set at a reference precision and at the quantized choice, compared;
records memory.quant_quality (core/quant_quality.py).

params:
    device      auto (default), cpu or cuda
    batch_size  default: [settings] eval_batch_size
"""

from __future__ import annotations

from core.jobs import JobContext


def run(ctx: JobContext) -> dict:
    from core.errors import InputError
    from core.quant_quality import check_quant_quality
    from core.workspace import open_workspace

    if ctx.workspace is None:
        raise InputError("the quant_quality job needs a workspace")
    ws = open_workspace(ctx.workspace)
    device = ctx.params.get("device")

    def progress(event: dict) -> None:
        ctx.progress(event["done"], event["total"], unit="case", eta_s=event["eta_s"],
                     message=f"score {event['score']:.3f} so far")
        ctx.check_cancel()

    result = check_quant_quality(ws, device=None if device in (None, "auto") else device,
                                 batch_size=ctx.params.get("batch_size"), progress=progress, log=ctx.log)
    ctx.log(result.note)
    return result.to_dict()
