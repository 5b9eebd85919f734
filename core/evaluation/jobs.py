"""Eval job kinds: `eval`, `determinism`, `latency`, `benchmark`. Each loads torch in the job
process only, streams progress (cases done / total, ETA) and a live metric (the running score),
and returns a JSON summary as the job's result.

params:
    eval         set ("task"), batch_size, limit, baseline (true / false / null = first full run),
                 name, reuse (true: re-score instead of generating when only scorers changed),
                 throttle_s (pause after each batch: demos, and tests that watch a run live)
    determinism  repeats (3), set, batch_size, limit
    latency      batch_sizes ([1, 2, 4, 8]), set, requests (exactly N; default: the sampling rule's
                 min_requests, max_requests, ci_pct, time_cap_s: core/evaluation/latency.py)
    benchmark    batch_size, limit, latency_requests (default: the sampling rule)
    every kind   rerun (false): generate / measure again even when a complete run or report with
                 the same identity exists (otherwise it is reused: "reused run X")
"""

from __future__ import annotations

import time

from weightgate.core.engine.job_process import JobContext
from weightgate.core.evaluation import runner
from weightgate.core.evaluation.benchmark import run_benchmark as benchmark
from weightgate.core.evaluation.determinism import DEFAULT_REPEATS, check_determinism
from weightgate.core.evaluation.latency import DEFAULT_BATCH_SIZES, SamplingRule, measure_latency, row_summary
from weightgate.core.evaluation.quant_quality import check_quant_quality


def run_eval(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    params = ctx.params

    def progress(event: dict) -> None:
        ctx.progress(event["done"], event["total"], unit="case", eta_s=event["eta_s"],
                     message=f"score {event['score']:.3f} so far")
        ctx.metric({"score": round(event["score"], 6), "passed": event["passed"], "cases_done": event["done"]},
                   step=event["done"])
        ctx.check_cancel()
        if params.get("throttle_s"):
            time.sleep(float(params["throttle_s"]))

    outcome = runner.run_eval(ws, params.get("set", "task"), batch_size=params.get("batch_size"), limit=params.get("limit"),
                       baseline=params.get("baseline"), name=params.get("name", ""),
                       reuse=params.get("reuse", True), rerun=bool(params.get("rerun")), job_id=ctx.job_id,
                       progress=progress, log=ctx.log)
    summary = outcome["summary"]
    ctx.log(f"run {outcome['run']}: score {summary.get('score', 0):.3f} ({summary.get('passed')}/{summary.get('cases')}),"
            f" {summary.get('tokens_per_s', 0):.1f} tokens/s")
    ctx.artifact(ws.runs_dir / outcome["run"] / "run.json", label="run")
    baseline = outcome.get("baseline")
    if baseline:
        ctx.log(f"marked as baseline{'' if not baseline.get('mismatch') else ' (not of today: ' + ', '.join(baseline['mismatch']) + ')'}"
                + ("" if baseline.get("finetuning_needed") is None
                   else f"; fine-tuning {'needed' if baseline['finetuning_needed'] else 'not needed'}"))
    return outcome


def run_determinism(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    params = ctx.params

    def progress(event: dict) -> None:
        ctx.progress(event["done"], event["total"], unit="repeat", eta_s=event["eta_s"])
        ctx.check_cancel()

    result = check_determinism(ws, repeats=int(params.get("repeats", DEFAULT_REPEATS)), set_name=params.get("set", "task"),
                               batch_size=params.get("batch_size"), limit=params.get("limit"), progress=progress,
                               rerun=bool(params.get("rerun")))
    if result["reused"]:
        ctx.log(f"reused run {result['reused']}: a saved check with this identity and environment; rerun to repeat it")
    if result["identical"]:
        ctx.log(f"{result['repeats']} repeats identical over {result['cases']} cases")
    else:
        d = result["divergence"]
        ctx.log(f"repeat {d['repeat']} diverges at case {d['case']}, token {d['position']}", level="warning")
    return result


def run_latency(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    params = ctx.params

    def progress(event: dict) -> None:
        ctx.progress(event["done"], event["total"], unit="batch size", message=f"batch {event['batch_size']}")
        ctx.metric({"batch_size": event["batch_size"], "p95_latency_ms": event["p95_latency_ms"],
                    "tokens_per_s": event["tokens_per_s"]}, step=event["done"])
        ctx.check_cancel()

    result = measure_latency(ws, batch_sizes=params.get("batch_sizes") or DEFAULT_BATCH_SIZES,
                             set_name=params.get("set", "task"), requests=params.get("requests"),
                             rule=SamplingRule.from_params(params), progress=progress, rerun=bool(params.get("rerun")))
    if result["reused"]:
        ctx.log(f"reused run {result['reused']}: a saved measurement with this identity and environment; "
                "rerun to measure again")
    for row in result["batch_sizes"]:
        ctx.log(f"{row_summary(row)}; p95 interval ±{row.get('p95_ci_pct', 0):.1f} % ({row.get('stop', 'fixed')})")
    for violation in result["violations"]:
        ctx.log(violation, level="warning")
    return result


def run_benchmark(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    params = ctx.params

    def progress(event: dict) -> None:
        ctx.progress(event["done"], event["total"], unit="case", eta_s=event["eta_s"],
                     message=f"{event['candidate']} ({event['candidate_index']}/{event['candidates']})")
        ctx.metric({"score": round(event["score"], 6), "cases_done": event["done"]}, step=event["done"])
        ctx.check_cancel()

    requests = params.get("latency_requests")
    return benchmark(ws, batch_size=params.get("batch_size"), limit=params.get("limit"),
                     latency_requests=int(requests) if requests else None, rule=SamplingRule.from_params(params),
                     rerun=bool(params.get("rerun")), progress=progress, log=ctx.log)


def run_quant_quality(ctx: JobContext) -> dict:
    """`quant_quality`: the task set at a reference precision and at the quantized choice, compared;
    records memory.quant_quality (core/quant_quality.py).

    params:
        device      auto (default), cpu or cuda
        batch_size  default: [settings] eval_batch_size
    """

    ws = ctx.open_workspace()
    device = ctx.params.get("device")

    def progress(event: dict) -> None:
        ctx.progress(event["done"], event["total"], unit="case", eta_s=event["eta_s"],
                     message=f"score {event['score']:.3f} so far")
        ctx.check_cancel()

    result = check_quant_quality(ws, device=None if device in (None, "auto") else device,
                                 batch_size=ctx.params.get("batch_size"), progress=progress, log=ctx.log)
    ctx.log(result.note)
    return result.to_dict()
