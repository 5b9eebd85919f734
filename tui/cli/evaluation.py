"""`weightgate eval`: phases 1 and 4, a baseline you can trust: run, runs, baseline, rescore,
compare, reviews, determinism, latency, benchmark, check."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from weightgate.core.engine.errors import InputError, WeightgateError
from weightgate.core.evaluation.benchmark import render_table
from weightgate.core.evaluation.compare import compare_command
from weightgate.core.evaluation.evalsets import load_evalset
from weightgate.core.evaluation.plan import plan_eval
from weightgate.core.evaluation.reports import latest_report
from weightgate.core.evaluation.review import render_reviews_text
from weightgate.core.evaluation.runner import mark_baseline, rescore
from weightgate.core.evaluation.runs import list_runs, read_run
from weightgate.tui.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AttachOpt,
    BatchSizeOpt,
    JsonOpt,
    LimitOpt,
    command,
    fail,
    group,
    run_job,
    workspace,
)

RunArg = Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix.")]

app = group("eval", """Phases 1 and 4: the eval sets on the model, compared and repeated.

Runs are detached jobs (batched greedy generation at the decided precision, with the model's
chat template); each run's identity fingerprints everything that changes an output.""")


RerunOpt = Annotated[bool, typer.Option(
    "--rerun", help="Run again even when a complete run with the same identity exists (default: reuse it).")]


def _interval(row: dict) -> str:
    low, high = row.get("p95_ci_ms") or (None, None)
    return "n/a" if low is None else f"{low:.0f}-{high:.0f} ms"


def _check_plan(set_name: str, batch_size, limit, as_json: bool) -> None:
    """A bad eval set or a missing lock is reported here (exit 2), not in a job's log."""
    try:
        plan_eval(workspace(as_json), set_name, batch_size=batch_size, limit=limit)
    except WeightgateError as exc:
        fail(exc, as_json)


@command(app)
def run(set_name: Annotated[str, typer.Option("--set", help="task or general")] = "task",
        batch_size: Annotated[Optional[int], typer.Option(
            "--batch-size", min=1, help="Default: \\[settings] eval_batch_size or 8.")] = None,
        limit: LimitOpt = None,
        baseline: Annotated[Optional[bool], typer.Option(
            "--baseline/--no-baseline", help="Mark as baseline (default: the first full run of a model + "
                                             "precision + adapter).")] = None,
        name: Annotated[str, typer.Option("--name", help="A name for the run.")] = "",
        fresh: Annotated[bool, typer.Option("--fresh", help="Generate even if only scorers changed.")] = False,
        rerun: RerunOpt = False, follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """Run an eval set on the workspace's model (a detached job).

    Batched greedy generation, scores, and a run under .weightgate/runs/."""
    _check_plan(set_name, batch_size, limit, as_json)
    params = {"set": set_name, "batch_size": batch_size, "limit": limit, "baseline": baseline, "name": name,
              "reuse": not fresh, "rerun": rerun}

    def verdict(result: dict):
        summary = result.get("summary") or {}
        how = f" (re-scored {result['rescored_from']}, nothing generated)" if result.get("rescored_from") else ""
        how = f" (reused run {result['reused']}: same identity, nothing generated; --rerun)" if result.get("reused") else how
        return (f"run {result.get('run')}: score {summary.get('score', 0):.3f} "
                f"({summary.get('passed')}/{summary.get('cases')}){how}", result.get("status") == "complete")
    run_job("eval", params, as_json=as_json, follow=follow, verdict=verdict)


@command(app)
def runs(set_name: Annotated[Optional[str], typer.Option("--set", help="Only runs of this set.")] = None,
         as_json: JsonOpt = False) -> None:
    """List eval runs, newest first (B marks a baseline)."""
    found = list_runs(workspace(as_json), set_name)
    if as_json:
        print(json.dumps([{k: v for k, v in r.to_dict().items() if k != "environment"} for r in found],
                         indent=2, default=str))
        return
    if not found:
        print("no eval runs yet: weightgate eval run")
        return
    for r in found:
        summary = r.summary
        score = f"{summary['score']:.3f} {summary.get('passed')}/{summary.get('cases')}" if "score" in summary else "-"
        print(f"{r.id:<28} {'B' if r.baseline else ' '} {r.set:<7} {r.status:<8} "
              f"{r.config.get('kind', 'eval'):<10} {score:<14} {r.name}")


@command(app, "baseline")
def baseline_cmd(run_id: RunArg, as_json: JsonOpt = False) -> None:
    """Mark a run as the baseline for its model, precision and adapter."""
    ws = workspace(as_json)
    try:
        outcome = mark_baseline(ws, run_id)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(outcome, indent=2, default=str))
        return
    print(f"{outcome['run']} is the baseline")
    if outcome["mismatch"]:
        print(f"  not of today's workspace ({', '.join(outcome['mismatch'])} differ): eval.baseline not recorded")
    if outcome["finetuning_needed"] is not None:
        print("  fine-tuning " + ("needed: the baseline misses the quality threshold" if outcome["finetuning_needed"]
                                  else "not needed: the baseline meets the quality threshold"))


@command(app, "rescore")
def rescore_cmd(run_id: RunArg, name: Annotated[str, typer.Option("--name", help="A name for the new run.")] = "",
                as_json: JsonOpt = False) -> None:
    """Re-score a run's saved outputs with today's answers and scorers (no model)."""
    ws = workspace(as_json)
    try:
        before = read_run(ws, run_id)
        after = rescore(ws, before.id, name=name)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps({"run": after.id, "from": before.id, "summary": after.summary}, indent=2))
    else:
        changed = sum(1 for a, b in zip(before.cases, after.cases) if a.passed != b.passed)
        print(f"re-scored {before.id} -> {after.id}: score {before.summary.get('score', 0):.3f} -> "
              f"{after.summary['score']:.3f} ({changed} case(s) changed verdict)")


@command(app)
def compare(run_a: Annotated[Optional[str], typer.Argument(
                help="Run id, prefix, 'baseline' or 'latest' (default: baseline)")] = None,
            run_b: Annotated[Optional[str], typer.Argument(help="Default: the latest run")] = None,
            fail_on_regression: Annotated[bool, typer.Option(
                "--fail-on-regression", help="Exit 1 when any case went from pass to fail.")] = False,
            all_cases: Annotated[bool, typer.Option("--all", help="Also list unchanged cases.")] = False,
            as_json: JsonOpt = False) -> None:
    """Two eval runs side by side: regressions first, then by tag, with a paired test."""
    ws = workspace(as_json)
    try:
        text, code = compare_command(ws, run_a, run_b, as_json=as_json, fail_on_regression=fail_on_regression,
                                     show_unchanged=all_cases)
    except WeightgateError as exc:
        fail(exc, as_json)
    sys.stdout.write(text)
    raise typer.Exit(code)


@command(app)
def reviews() -> None:
    """Blind A/B reviews: progress, and the reveal of finished ones.

    Start one in the TUI with R on the Compare screen."""
    sys.stdout.write(render_reviews_text(workspace()))


@command(app)
def determinism(repeats: Annotated[int, typer.Option("--repeats", min=2, help="How many runs.")] = 3,
                batch_size: BatchSizeOpt = None, limit: LimitOpt = None, rerun: RerunOpt = False,
                follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """Repeat the task set at temperature 0 (a job): identical, or where it diverges."""
    _check_plan("task", batch_size, limit, as_json)

    def verdict(result: dict):
        reused = f" (reused run {result['reused']}; --rerun)" if result.get("reused") else ""
        if result.get("identical"):
            return f"{result['repeats']} repeats identical over {result['cases']} cases{reused}", True
        d = result.get("divergence") or {}
        return (f"repeat {d.get('repeat')} diverges at case {d.get('case')}, token {d.get('position')}: "
                f"{d.get('output_first')!r} vs {d.get('output_other')!r}"), False
    run_job("determinism", {"repeats": repeats, "batch_size": batch_size, "limit": limit, "rerun": rerun}, as_json=as_json,
            follow=follow, verdict=verdict)


@command(app)
def latency(batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated.")] = "1,2,4,8",
            requests: Annotated[Optional[int], typer.Option(
                "--requests", min=1, help="Exactly N requests per batch size (at least 2 batches); default: "
                                          "at least 20, until the p95's 95% interval is within 5% (30 s cap).")] = None,
            rerun: RerunOpt = False, follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """TTFT and tokens/s at several batch sizes (a job), against the ceilings."""
    try:
        sizes = [int(part) for part in batch_sizes.split(",") if part.strip()]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        fail(InputError(f"--batch-sizes {batch_sizes!r}: positive integers separated by commas"), as_json)
    _check_plan("task", 1, None, as_json)

    def verdict(result: dict):
        lines = [f"reused run {result['reused']}: same identity and environment, nothing measured (--rerun)"] \
            if result.get("reused") else []
        lines += [f"batch {r['batch_size']:>2}: ttft p50 {r['ttft_ms']['p50']:.0f} ms  latency p50 "
                 f"{r['latency_ms']['p50']:.0f} / p95 {r['latency_ms']['p95']:.0f} ms "
                 f"(95% CI {_interval(r)}, n={r['requests']})  "
                 f"{r['tokens_per_s']['p50']:.1f} tok/s per request  {r['throughput_tokens_per_s']:.1f} tok/s total"
                 for r in result.get("batch_sizes", [])]
        lines += [f"  over a ceiling: {v}" for v in result.get("violations", [])]
        if not result.get("within"):
            from weightgate.core.evaluation.latency import next_step  # lazy: the module loads the generator

            lines.append("  next: " + next_step(result.get("violations", []), result.get("missing_ceilings", [])))
        return "\n".join(lines), bool(result.get("within"))
    run_job("latency", {"batch_sizes": sizes, "requests": requests, "rerun": rerun}, as_json=as_json, follow=follow, verdict=verdict)


@command(app)
def benchmark(limit: Annotated[Optional[int], typer.Option(
                  "--limit", min=1, help="Only the first N cases (not recorded as evidence).")] = None,
              batch_size: BatchSizeOpt = None,
              show: Annotated[bool, typer.Option("--show", help="Print the latest table; run nothing.")] = False,
              rerun: RerunOpt = False, follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """Phase 1: every shortlisted candidate on the task set (a job).

    Score, latency, tokens/s, memory and cost per task (\\[settings] price_per_hour), against
    every requirement."""
    if show:
        report = latest_report(workspace(as_json), "benchmark")
        if report is None:
            print(json.dumps(None) if as_json else "no benchmark yet: weightgate eval benchmark")
            raise typer.Exit(EXIT_FAILED)
        print(json.dumps(report, indent=2, default=str) if as_json else render_table(report))
        return
    _check_plan("task", batch_size, limit, as_json)

    def verdict(result: dict):
        return render_table(result), not any(row.get("error") for row in result.get("rows", []))
    run_job("benchmark", {"limit": limit, "batch_size": batch_size, "rerun": rerun}, as_json=as_json, follow=follow, verdict=verdict)


@command(app)
def check(path: Annotated[Optional[Path], typer.Argument(help="Default: the task set.")] = None,
          as_json: JsonOpt = False) -> None:
    """Validate an eval set: every bad line with file:line and the fix."""
    if path is None:
        path = workspace(as_json).path_setting("eval_set", "evals/task.jsonl")
    try:
        evalset = load_evalset(path)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps({"path": str(path), "cases": len(evalset.cases), "tags": evalset.tag_counts(),
                          "problems": [p.to_dict() for p in evalset.problems]}, indent=2))
    else:
        for problem in evalset.problems:
            print(problem)
        tags = ", ".join(f"{k} {v}" for k, v in sorted(evalset.tag_counts().items()))
        print(f"{path}: {len(evalset.cases)} valid cases ({tags or 'no tags'}); {len(evalset.problems)} problems")
    raise typer.Exit(EXIT_USAGE if evalset.problems else EXIT_OK)
