"""Latency: time to first token and tokens/s at several batch sizes, after a warm-up, with p50 and
p95, checked against `[requirements.ceilings]`.

Per request, in a batch of b requests generated together:
    ttft        batch start -> the first generated token (prefill done), stamped per decoding step
                (core.memory.loading's step timer)
    latency     batch start -> this request's last real token (its EOS, or max_new_tokens)
    tokens/s    this request's real output tokens / its latency (padding and anything after its
                EOS excluded)
Plus the throughput of the batch size: all real output tokens / generation wall time.

Ceilings: p95 latency (ms) <= p95_latency_ms and p50 per-request tokens/s >= min_tokens_per_s,
at every measured batch size up to `[requirements] batch_size` (the serving batch, when set;
otherwise at every measured batch size).
"""

from __future__ import annotations

import time
from typing import Callable

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import FAIL, PASS, record_result
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.checks import ceilings_of
from weightgate.core.evaluation.generation import generate_batch, render
from weightgate.core.evaluation.plan import plan_eval
from weightgate.core.evaluation.reports import save_report
from weightgate.core.evaluation.runner import load_target
from weightgate.core.memory.loading import default_device

DEFAULT_BATCH_SIZES = (1, 2, 4, 8)
MIN_REQUESTS = 8


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _stats(values: list[float], digits: int = 2) -> dict:
    return {"p50": round(percentile(values, 50), digits), "p95": round(percentile(values, 95), digits),
            "min": round(min(values), digits) if values else 0.0, "max": round(max(values), digits) if values else 0.0}


def measure_batches(loaded, prompts: list[str], settings: dict, batch_sizes, *, requests: int | None = None,
                    progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Warm up, then generate `requests` prompts (cycling through `prompts`) at each batch size."""

    biggest = max(batch_sizes)
    warm = dict(settings, max_new_tokens=min(4, int(settings.get("max_new_tokens") or 4)))
    # First calls pay for allocator growth, kernel selection and lazy initialisation: not latency.
    generate_batch(loaded, [prompts[i % len(prompts)] for i in range(biggest)], warm)
    generate_batch(loaded, prompts[:1], warm)
    rows = []
    for step, size in enumerate(batch_sizes):
        count = max(requests or MIN_REQUESTS, 2 * size)
        count = -(-count // size) * size   # whole batches only
        ttft, latency, tps = [], [], []
        tokens, wall = 0, 0.0
        for start in range(0, count, size):
            batch = [prompts[(start + i) % len(prompts)] for i in range(size)]
            began = time.perf_counter()
            results = generate_batch(loaded, batch, settings)
            wall += time.perf_counter() - began
            for result in results:
                ttft.append(result.ttft * 1000)
                latency.append(result.seconds * 1000)
                tps.append(result.tokens_out / result.seconds if result.seconds > 0 else 0.0)
                tokens += result.tokens_out
        rows.append({"batch_size": size, "requests": count, "ttft_ms": _stats(ttft), "latency_ms": _stats(latency),
                     "tokens_per_s": _stats(tps), "throughput_tokens_per_s": round(tokens / wall, 2) if wall else 0.0,
                     "tokens_out": tokens, "seconds": round(wall, 3)})
        if progress is not None:
            progress({"done": step + 1, "total": len(batch_sizes), "batch_size": size,
                      "p95_latency_ms": rows[-1]["latency_ms"]["p95"],
                      "tokens_per_s": rows[-1]["tokens_per_s"]["p50"]})
    return rows


def check_rows(rows: list[dict], ceilings: dict) -> tuple[list[int], list[str]]:
    """(the batch sizes checked, every violation as a sentence)."""
    serving = ceilings.get("batch_size")
    checked = [row["batch_size"] for row in rows if serving is None or row["batch_size"] <= serving]
    violations = []
    for row in rows:
        if row["batch_size"] not in checked:
            continue
        p95 = row["latency_ms"]["p95"]
        if "p95_latency_ms" in ceilings and p95 > ceilings["p95_latency_ms"]:
            violations.append(f"batch {row['batch_size']}: p95 latency {p95:.0f} ms end to end "
                              f"> {ceilings['p95_latency_ms']:g} ms")
        tps = row["tokens_per_s"]["p50"]
        if "min_tokens_per_s" in ceilings and tps < ceilings["min_tokens_per_s"]:
            violations.append(f"batch {row['batch_size']}: {tps:.1f} tokens/s < {ceilings['min_tokens_per_s']:g}")
    return checked, violations


def batch_summary(row: dict) -> str:
    """One batch size in words. TTFT (to the first token) and latency (to the last) are both
    percentiles of their own: the p95 the ceiling checks is the end-to-end one."""
    return (f"batch {row['batch_size']}: TTFT p50 {row['ttft_ms']['p50']:.0f} ms, p95 {row['ttft_ms']['p95']:.0f} ms; "
            f"end to end p95 {row['latency_ms']['p95']:.0f} ms; {row['tokens_per_s']['p50']:.1f} tok/s per request")


def next_step(violations: list[str], missing: list[str]) -> str:
    """What to do about a failed eval.latency, by what failed."""
    if missing:
        return ("set [requirements.ceilings] " + ", ".join(missing) + " in weightgate.toml, "
                "then run `weightgate eval latency` again")
    fixes = []
    if any("p95 latency" in v for v in violations):
        fixes.append("shorten answers (max_new_tokens), serve a smaller batch ([requirements] batch_size) or a "
                     "faster device or precision")
    if any("tokens/s" in v for v in violations):
        fixes.append("use a faster device or precision, or a smaller model")
    return ("; ".join(fixes) + "; or, if the product allows, raise [requirements.ceilings]. "
            "Then run `weightgate eval latency` again")


def measure_latency(ws: Workspace, *, batch_sizes=DEFAULT_BATCH_SIZES, set_name: str = "task",
                    requests: int | None = None, device: str | None = None, loaded=None, target=None,
                    progress: Callable[[dict], None] | None = None, record: bool = True) -> dict:
    """Measure on the eval set's prompts; record eval.latency for the workspace's model."""

    sizes = sorted({int(size) for size in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise InputError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    plan = plan_eval(ws, set_name, batch_size=1, device=device or default_device(), target=target, kind="latency")
    loaded = loaded or load_target(ws, plan.target, plan.device)
    prompts = [render(loaded.tokenizer, plan.messages(case)) for case in plan.cases]
    rows = measure_batches(loaded, prompts, plan.settings, sizes, requests=requests, progress=progress)
    ceilings = ceilings_of(plain(ws.config()))
    checked, violations = check_rows(rows, ceilings)
    missing = [key for key in ("p95_latency_ms", "min_tokens_per_s") if key not in ceilings]
    result = {"batch_sizes": rows, "ceilings": ceilings, "checked": checked, "violations": violations,
              "missing_ceilings": missing, "within": not violations and not missing,
              "precision": loaded.precision["name"], "footprint_bytes": loaded.footprint_bytes,
              "max_new_tokens": plan.settings.get("max_new_tokens"), "model": plan.target.label,
              "identity": {key: plan.identity["components"].get(key) for key in ("model", "precision", "adapter")},
              "time": time.time()}
    result["report"] = str(save_report(ws, "latency", result).relative_to(ws.root))
    if record and plan.target.workspace_model:
        summary = [batch_summary(row) for row in rows]
        if missing or violations:
            note = "; ".join((["no ceiling " + ", ".join(missing)] if missing else []) + violations) + \
                f". Next: {next_step(violations, missing)}. Measured: " + " | ".join(summary)
        else:
            note = "within ceilings: " + " | ".join(summary)
        record_result(ws, "eval.latency", PASS if result["within"] else FAIL,
                      {"batch_sizes": rows, "checked": checked, "violations": violations, "ceilings": ceilings,
                       "report": result["report"], "summary": summary}, note=note)
        result["evidence"] = "eval.latency"
    return result
