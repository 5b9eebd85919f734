"""Latency: time to first token and tokens/s at several batch sizes, after a warm-up, with p50 and
p95, checked against `[requirements.ceilings]`.

Per request, in a batch of b requests generated together:
    ttft        batch start -> the first generated token (prefill done), stamped per decoding step
                (core.memory.loading's step timer)
    latency     batch start -> this request's last real token (its EOS, or max_new_tokens)
    tokens/s    this request's real output tokens / its latency (padding and anything after its
                EOS excluded)
Plus the throughput of the batch size: all real output tokens / generation wall time.

How many requests (SamplingRule): at least `min_requests` (and two batches) at each batch size,
then whole batches more until the p95 is stable: its 95% bootstrap confidence interval's
half-width is within `ci_pct` % of the p95 (a p95 from 8 requests is the slowest one or two of
them and moves by tens of ms between runs), or `max_requests` are measured, or `time_cap_s` has
passed since the minimum was reached, whichever comes first. Each row reports its sample count,
the interval and why sampling stopped. An explicit `requests=N` measures exactly N (rounded up to
whole batches, at least two of them) instead.

Ceilings: p95 latency (ms) <= p95_latency_ms and p50 per-request tokens/s >= min_tokens_per_s,
at every measured batch size up to `[requirements] batch_size` (the serving batch, when set;
otherwise at every measured batch size).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from weightgate.core.engine.digest import digest_value
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import FAIL, PASS, record_result
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.checks import ceilings_of
from weightgate.core.evaluation.generation import environment, generate_batch, render
from weightgate.core.evaluation.plan import plan_eval
from weightgate.core.evaluation.reports import find_report, save_report
from weightgate.core.evaluation.runner import load_target
from weightgate.core.memory.loading import default_device

DEFAULT_BATCH_SIZES = (1, 2, 4, 8)
MIN_REQUESTS = 8            # an explicit `requests` below two batches is raised to two batches
BOOTSTRAP_RESAMPLES = 400   # the interval's ends move by < 1 % of the p95 between seeds at this count


@dataclass(frozen=True)
class SamplingRule:
    """When a batch size has enough requests for a stable p95 (see the module's docstring)."""

    min_requests: int = 20
    max_requests: int = 200
    ci_pct: float = 5.0
    time_cap_s: float = 30.0

    def __post_init__(self) -> None:
        if self.min_requests < 2 or self.max_requests < self.min_requests:
            raise InputError(f"latency sampling needs 2 <= min_requests <= max_requests, got "
                             f"{self.min_requests} and {self.max_requests}")
        if self.ci_pct <= 0 or self.time_cap_s < 0:
            raise InputError(f"latency sampling needs ci_pct > 0 and time_cap_s >= 0, got {self.ci_pct} "
                             f"and {self.time_cap_s}")

    @classmethod
    def from_params(cls, params: dict) -> "SamplingRule":
        """From a job's params (min_requests, max_requests, ci_pct, time_cap_s; the rest default)."""
        defaults = cls()
        values = {}
        for key, cast in (("min_requests", int), ("max_requests", int), ("ci_pct", float), ("time_cap_s", float)):
            value = params.get(key)
            values[key] = getattr(defaults, key) if value is None else cast(value)
        values["max_requests"] = max(values["max_requests"], values["min_requests"])
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def p95_interval(values: list[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap percentile interval of the p95 (seeded: the same samples give the same interval)."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    estimates = sorted(percentile([values[rng.randrange(n)] for _ in range(n)], 95) for _ in range(resamples))
    return estimates[int(0.025 * resamples)], estimates[int(0.975 * resamples) - 1]


def half_width_pct(values: list[float]) -> float:
    """The p95 interval's half-width as a percentage of the p95."""
    low, high = p95_interval(values)
    p95 = percentile(values, 95)
    return (high - low) / 2 / p95 * 100 if p95 > 0 else 0.0


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
                    rule: SamplingRule | None = None, progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Warm up, then generate prompts (cycling through `prompts`) at each batch size: exactly
    `requests` of them when given, else as many as `rule` asks for a stable p95."""

    rule = rule or SamplingRule()
    biggest = max(batch_sizes)
    warm = dict(settings, max_new_tokens=min(4, int(settings.get("max_new_tokens") or 4)))
    # First calls pay for allocator growth, kernel selection and lazy initialisation: not latency.
    generate_batch(loaded, [prompts[i % len(prompts)] for i in range(biggest)], warm)
    generate_batch(loaded, prompts[:1], warm)
    rows = []
    for step, size in enumerate(batch_sizes):
        def whole(count: int, size=size) -> int:
            return -(-count // size) * size
        if requests:
            least = most = whole(max(requests, 2 * size))
        else:
            least, most = whole(max(rule.min_requests, 2 * size)), whole(max(rule.max_requests, 2 * size))
        ttft, latency, tps = [], [], []
        tokens, wall = 0, 0.0
        stop, spread, next_check, minimum_at = "fixed" if requests else "max requests", None, least, None
        while len(latency) < most:
            batch = [prompts[(len(latency) + i) % len(prompts)] for i in range(size)]
            began = time.perf_counter()
            results = generate_batch(loaded, batch, settings)
            wall += time.perf_counter() - began
            for result in results:
                ttft.append(result.ttft * 1000)
                latency.append(result.seconds * 1000)
                tps.append(result.tokens_out / result.seconds if result.seconds > 0 else 0.0)
                tokens += result.tokens_out
            if requests or len(latency) < least:
                continue
            minimum_at = minimum_at or time.perf_counter()
            if len(latency) >= next_check:   # the bootstrap costs ~n*400 draws: check as n grows 10 %
                spread = half_width_pct(latency)
                next_check = max(len(latency) + size, int(len(latency) * 1.1))
                if spread <= rule.ci_pct:
                    stop = "stable"
                    break
            if time.perf_counter() - minimum_at >= rule.time_cap_s:
                stop = "time cap"
                break
        low, high = p95_interval(latency)
        spread = half_width_pct(latency) if spread is None or stop != "stable" else spread
        rows.append({"batch_size": size, "requests": len(latency), "ttft_ms": _stats(ttft), "latency_ms": _stats(latency),
                     "p95_ci_ms": [round(low, 2), round(high, 2)], "p95_ci_pct": round(spread, 2), "stop": stop,
                     "tokens_per_s": _stats(tps), "throughput_tokens_per_s": round(tokens / wall, 2) if wall else 0.0,
                     "tokens_out": tokens, "seconds": round(wall, 3)})
        if progress is not None:
            progress({"done": step + 1, "total": len(batch_sizes), "batch_size": size,
                      "p95_latency_ms": rows[-1]["latency_ms"]["p95"],
                      "tokens_per_s": rows[-1]["tokens_per_s"]["p50"], "requests": len(latency)})
    return rows


def row_summary(row: dict) -> str:
    """One batch size for a log line: the words of batch_summary (TTFT and end-to-end p95 apart)."""
    return batch_summary(row)


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
    percentiles of their own: the p95 the ceiling checks is the end-to-end one, given with its
    95 % interval and the number of requests it was measured on, where the sampling rule recorded them."""
    low, high = row.get("p95_ci_ms") or (None, None)
    interval = f"{low:.0f}-{high:.0f} ms, " if low is not None else ""
    sample = f" ({interval}n={row['requests']})" if row.get("requests") else ""
    return (f"batch {row['batch_size']}: TTFT p50 {row['ttft_ms']['p50']:.0f} ms, p95 {row['ttft_ms']['p95']:.0f} ms; "
            f"end to end p95 {row['latency_ms']['p95']:.0f} ms{sample}; {row['tokens_per_s']['p50']:.1f} tok/s per request")


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
                    requests: int | None = None, rule: SamplingRule | None = None, device: str | None = None,
                    loaded=None, target=None, progress: Callable[[dict], None] | None = None, record: bool = True,
                    rerun: bool = False) -> dict:
    """Measure on the eval set's prompts; record eval.latency for the workspace's model.

    A saved measurement with the same key (the run identity at batch 1, the batch sizes, the
    sampling, the environment: versions, device, threads) is reused ("reused": its report)
    unless `rerun`; it is checked against today's ceilings and recorded like a new one."""

    sizes = sorted({int(size) for size in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise InputError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    rule = rule or SamplingRule()
    device = device or default_device()
    plan = plan_eval(ws, set_name, batch_size=1, device=device, target=target, kind="latency")
    key = digest_value({"identity": plan.identity["digest"], "batch_sizes": sizes,
                        "sampling": {"requests": requests} if requests else rule.to_dict(),
                        "environment": environment(device)})
    previous = None if rerun else find_report(ws, "latency", key)
    if previous is not None:
        result = {k: v for k, v in previous.items() if k not in ("report", "evidence")}
        result["reused"] = Path(previous["report"]).stem
        result["report"] = previous["report"]
        rows = result["batch_sizes"]
    else:
        loaded = loaded or load_target(ws, plan.target, plan.device)
        prompts = [render(loaded.tokenizer, plan.messages(case)) for case in plan.cases]
        rows = measure_batches(loaded, prompts, plan.settings, sizes, requests=requests, rule=rule, progress=progress)
        result = {"batch_sizes": rows, "sampling": {"requests": requests} if requests else rule.to_dict(),
                  "precision": loaded.precision["name"], "footprint_bytes": loaded.footprint_bytes,
                  "max_new_tokens": plan.settings.get("max_new_tokens"), "model": plan.target.label,
                  "identity": {k: plan.identity["components"].get(k) for k in ("model", "precision", "adapter")},
                  "reuse_key": key, "reused": None, "time": time.time()}
    ceilings = ceilings_of(plain(ws.config()))
    checked, violations = check_rows(rows, ceilings)
    missing = [k for k in ("p95_latency_ms", "min_tokens_per_s") if k not in ceilings]
    result.update({"ceilings": ceilings, "checked": checked, "violations": violations, "missing_ceilings": missing,
                   "within": not violations and not missing})
    if previous is None:
        result["report"] = str(save_report(ws, "latency", result).relative_to(ws.root))
    if record and plan.target.workspace_model:
        summary = [batch_summary(row) for row in rows]
        if missing or violations:
            note = "; ".join((["no ceiling " + ", ".join(missing)] if missing else []) + violations) + \
                f". Next: {next_step(violations, missing)}. Measured: " + " | ".join(summary)
        else:
            note = "within ceilings: " + " | ".join(summary)
        if result["reused"]:
            note += f" (reused {result['reused']})"
        record_result(ws, "eval.latency", PASS if result["within"] else FAIL,
                      {"batch_sizes": rows, "checked": checked, "violations": violations, "ceilings": ceilings,
                       "report": result["report"], "summary": summary, "reused": result["reused"]}, note=note)
        result["evidence"] = "eval.latency"
    return result
