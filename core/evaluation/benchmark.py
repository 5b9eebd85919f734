"""Phase 1 benchmarking: run the task eval set on every shortlisted candidate and put score,
latency, tokens/s, memory and cost per task side by side; decide whether the chosen model clears
every requirement.

Per candidate (each loaded at `[decisions] precision` when set, else its native dtype):
    score            an eval run of the task set (saved as a run, config.kind = "benchmark")
    latency          p50 / p95 per request at batch size 1 after a warm-up, as many requests as the
                     sampling rule needs for a stable p95 (core.evaluation.latency)
    tokens/s         p50 per request at batch size 1 (real output tokens / request latency)
    memory           the loaded model's footprint (weights and buffers), GiB
    cost per task    only when a price is configured in [settings]:
                       price_per_hour        what the serving hardware costs per hour: cost per task
                                             = price x (eval-run seconds / cases) / 3600, the time
                                             per task at the eval batch size
                       price_per_1k_tokens   an API's price: (tokens in + out) / 1000 x price
                     compared with [requirements.ceilings] cost_per_1k_tasks

Where candidates come from: the locked model is used from its verified snapshot; a local
directory in place; a hub repo is downloaded verified (hashed while downloading) into the HF
cache at the commit pinned when it was shortlisted. GGUF candidates and repos that need remote
code are not run here.

select.choice passes only for the chosen candidate (`[decisions] model`) when its row clears
every requirement, or when a conscious relaxation is recorded: `[decisions] relaxation = "..."`.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Callable

from weightgate.core.engine.checklist import get_item
from weightgate.core.engine.digest import digest_value
from weightgate.core.engine.errors import InputError, WeightgateError
from weightgate.core.engine.evidence import FAIL, PASS, record_result
from weightgate.core.engine.fingerprints import Fingerprints, plain
from weightgate.core.engine.lock import read_lock
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.checks import format_row, requirement_failures
from weightgate.core.evaluation.generation import environment, render
from weightgate.core.evaluation.latency import SamplingRule, measure_batches
from weightgate.core.evaluation.plan import Target, decisions, plan_eval, workspace_target
from weightgate.core.evaluation.reports import reports_dir, save_report
from weightgate.core.evaluation.runner import execute, load_target
from weightgate.core.evaluation.runs import record_reuse, run_with_identity
from weightgate.core.memory.loading import default_device
from weightgate.core.weights.download import download_model
from weightgate.core.weights.metadata_cache import candidate_specs, load_metadata
from weightgate.core.weights.sources import parse_source

GIB = 2 ** 30
BENCHMARK_INPUTS = get_item("select.benchmark").inputs   # the benchmark records are that item's


def candidate_target(ws: Workspace, spec: str, config: dict, log: Callable[[str], None] | None = None):
    """A Target for one shortlisted candidate (downloads a hub candidate, verified)."""

    precision = decisions(ws, config).get("precision")
    lock = read_lock(ws)
    if lock is not None and lock.source == spec:
        target = workspace_target(ws, config)
        target.adapter, target.adapter_decision = None, None   # candidates are compared as shipped
        return target
    source = parse_source(spec)
    meta = load_metadata(ws, spec) or {}
    if meta.get("remote_code"):
        raise InputError(f"{spec} needs remote code; it is not run before verification",
                         hint="benchmark it after trusting it at a pinned commit (phase 2)")
    if source.kind == "gguf":
        raise InputError(f"{spec} is a GGUF file; benchmarking loads the safetensors model converted from it",
                         hint="fetch it first (f, or `weightgate weights fetch`): it is hashed, converted once and locked")
    if source.kind == "local":
        root = Path(source.path)
        files = sorted(p for p in root.iterdir() if p.is_file())
        # Size + mtime, not hashes: a large local candidate is not re-read at every benchmark.
        model_id = digest_value({"source": spec, "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                                          for p in files]})
        return Target(model_dir=root, model_id=model_id, label=spec, precision=precision)

    if log:
        log(f"downloading {spec} (verified) for the benchmark")
    result = download_model(source, commit=meta.get("commit") or None)
    model_id = digest_value({"source": spec, "commit": result.commit,
                             "files": sorted((f.path, f.size, f.sha256) for f in result.files)})

    return Target(model_dir=Path(result.snapshot_dir), model_id=model_id, label=spec, precision=precision)


def price_settings(config: dict) -> dict:
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    prices = {}
    for key in ("price_per_hour", "price_per_1k_tokens"):
        value = settings.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            prices[key] = float(value)
    return prices


def cost_per_task(run_summary: dict, prices: dict) -> float | None:
    cases = run_summary.get("cases") or 0
    if not cases:
        return None
    if "price_per_hour" in prices:
        return prices["price_per_hour"] * (float(run_summary.get("seconds") or 0.0) / cases) / 3600.0
    if "price_per_1k_tokens" in prices:
        tokens = (run_summary.get("tokens_in") or 0) + (run_summary.get("tokens_out") or 0)
        return prices["price_per_1k_tokens"] * tokens / cases / 1000.0
    return None


def previous_row(ws: Workspace, spec: str, reuse_key: str) -> dict | None:
    """This candidate's row from the newest benchmark report that measured it with this key."""
    directory = reports_dir(ws)
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("benchmark-*.json"), reverse=True):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for row in data.get("rows", []) if isinstance(data, dict) else []:
            if (isinstance(row, dict) and row.get("source") == spec and row.get("reuse_key") == reuse_key
                    and not row.get("error")):
                return {**row, "reused": row.get("reused") or path.stem}
    return None


def benchmark_candidate(ws: Workspace, spec: str, config: dict, *, device: str, batch_size: int | None = None,
                        limit: int | None = None, latency_requests: int | None = None,
                        rule: SamplingRule | None = None, rerun: bool = False,
                        progress: Callable[[dict], None] | None = None,
                        log: Callable[[str], None] | None = None) -> dict:
    """One candidate's row. Its eval runs batched (runner.execute, the eval batch size) and is
    reused when a complete run has its identity; the whole row is reused when a benchmark
    measured it with the same key (identity, latency sampling, prices, environment). `rerun`
    generates and measures again."""
    log = log or (lambda message: None)
    rule = rule or SamplingRule()
    prices = price_settings(config)
    target = candidate_target(ws, spec, config, log)
    plan = plan_eval(ws, "task", batch_size=batch_size, limit=limit, device=device, target=target, kind="benchmark")
    key = digest_value({"identity": plan.identity["digest"], "prices": prices, "environment": environment(device),
                        "latency": {"requests": latency_requests} if latency_requests else rule.to_dict()})
    row = None if rerun else previous_row(ws, spec, key)
    if row is not None:
        log(f"  reused run {row['reused']}: {spec} was benchmarked with this identity and environment")
        return {key_: value for key_, value in row.items() if key_ != "failures"}
    run = None if rerun else run_with_identity(ws, "task", plan.identity["digest"])
    loaded = load_target(ws, target, device)
    try:
        if run is None:
            run = execute(plan, loaded=loaded, name=f"benchmark: {spec}", progress=progress,
                          extra_config={"candidate": spec})
        else:
            log(f"  reused run {run.id} for the score: complete, with this identity")
            record_reuse(ws, run, kind="benchmark")
        prompts = [render(loaded.tokenizer, plan.messages(case)) for case in plan.cases]
        latency = measure_batches(loaded, prompts, plan.settings, [1], requests=latency_requests, rule=rule)[0]
        footprint = loaded.footprint_bytes
        precision = loaded.precision["name"]
    finally:
        del loaded
        gc.collect()   # the next candidate needs the memory
    summary = run.summary
    cost = cost_per_task(summary, prices)
    return {"source": spec, "run": run.id, "precision": precision, "score": summary["score"],
            "passed": summary["passed"], "cases": summary["cases"],
            "p50_latency_ms": latency["latency_ms"]["p50"], "p95_latency_ms": latency["latency_ms"]["p95"],
            "latency_requests": latency["requests"], "p95_ci_ms": latency["p95_ci_ms"],
            "ttft_p50_ms": latency["ttft_ms"]["p50"], "tokens_per_s": latency["tokens_per_s"]["p50"],
            "throughput_tokens_per_s": summary["tokens_per_s"], "memory_gib": round(footprint / GIB, 4),
            "seconds_per_task": round(summary["seconds"] / summary["cases"], 6) if summary["cases"] else None,
            "cost_per_task": cost, "cost_per_1k_tasks": None if cost is None else round(cost * 1000, 6),
            "model_id": target.model_id, "batch_size": plan.batch_size, "reuse_key": key, "reused": None}


def run_benchmark(ws: Workspace, *, device: str | None = None, batch_size: int | None = None,
                  limit: int | None = None, latency_requests: int | None = None, rule: SamplingRule | None = None,
                  rerun: bool = False, progress: Callable[[dict], None] | None = None,
                  log: Callable[[str], None] | None = None) -> dict:
    """Benchmark every shortlisted candidate, save the table, record select.benchmark."""

    log = log or (lambda message: None)
    config = plain(ws.config())
    specs = candidate_specs(config)
    if not specs:
        raise InputError("no candidates shortlisted", path=ws.config_path, hint="weightgate weights add SOURCE")
    device = device or default_device()
    prints = Fingerprints(ws, config)
    fingerprints = prints.of(BENCHMARK_INPUTS)
    rows = []
    for index, spec in enumerate(specs):
        log(f"[{index + 1}/{len(specs)}] {spec}")

        def candidate_progress(event: dict, index=index) -> None:
            if progress is not None:
                progress({**event, "candidate": spec, "candidate_index": index + 1, "candidates": len(specs)})

        try:
            row = benchmark_candidate(ws, spec, config, device=device, batch_size=batch_size, limit=limit,
                                      latency_requests=latency_requests, rule=rule, rerun=rerun,
                                      progress=candidate_progress, log=log)
        except WeightgateError as exc:
            row = {"source": spec, "error": getattr(exc, "message", str(exc))}
        except Exception as exc:   # one broken candidate must not hide the others' numbers
            row = {"source": spec, "error": f"{type(exc).__name__}: {exc}"}
        row["failures"] = requirement_failures(row, config)
        rows.append(row)
        log(f"  {format_row(row)}" + (f" (reused {row['reused']})" if row.get("reused") else ""))
    report = {"rows": rows, "fingerprints": fingerprints, "limit": limit, "device": device,
              "prices": price_settings(config), "time": time.time()}
    report["report"] = str(save_report(ws, "benchmark", report).relative_to(ws.root))
    errors = [row["source"] for row in rows if row.get("error")]
    if limit:
        log(f"--limit {limit}: a partial benchmark is not recorded as evidence")
    else:
        note = (f"{len(rows)} candidate(s) benchmarked on {rows[0].get('cases', 0) if rows else 0} cases"
                if not errors else "not benchmarked: " + ", ".join(errors))
        record_result(ws, "select.benchmark", FAIL if errors else PASS,
                      {"rows": rows, "report": report["report"]}, note=note)
        report["evidence"] = "select.benchmark"
    return report


def render_table(report: dict) -> str:
    header = f"{'candidate':<40} {'score':>6} {'p50 ms':>8} {'p95 ms':>8} {'tok/s':>7} {'GiB':>6} {'cost/1k':>9}  verdict"
    lines = [header, "-" * len(header)]
    for row in report.get("rows", []):
        name = row["source"] if len(row["source"]) <= 40 else "..." + row["source"][-37:]
        if row.get("error"):
            lines.append(f"{name:<40} error: {row['error']}")
            continue
        cost = "-" if row.get("cost_per_1k_tasks") is None else f"{row['cost_per_1k_tasks']:.4g}"
        verdict = "clears all" if not row.get("failures") else "; ".join(row["failures"])
        lines.append(f"{name:<40} {row['score']:>6.3f} {row['p50_latency_ms']:>8.0f} {row['p95_latency_ms']:>8.0f} "
                     f"{row['tokens_per_s']:>7.1f} {row['memory_gib']:>6.2f} {cost:>9}  {verdict}"
                     + (f" (reused run {row['reused']})" if row.get("reused") else ""))
    return "\n".join(lines)
