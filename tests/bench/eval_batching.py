"""Benchmark: the demo model over 50 eval cases, batched and one at a time, in the same run.

    .venv/bin/python tests/bench/eval_batching.py                   # batch 16 vs 1 (the must-show)
    .venv/bin/python tests/bench/eval_batching.py --repeat 3        # best of 3 each, alternating

The cases: the demo's 30 date-rewriting cases plus 20 deterministic variants (seeded dates in the
same formats). A temporary workspace holds them, with the demo model (SmolLM2-135M-Instruct,
converted once to safetensors in ~/.cache/weightgate: core.demo_model.ensure_demo_model) locked
and verified like any model. The model is loaded once; both contenders are real eval runs through
core.evaluation (render with the chat template, left-padded greedy generation, scoring, run files)
that differ only in the batch size. Timed: generation + scoring (a run's summary.seconds), not
loading. Prints the speed-up (target >= 3x) and whether every case's output and output-token
count are identical (they must be: the batch size must not change a score).

Not a pytest test: it takes a minute or more and wants a quiet machine. With --repeat, the two
contenders alternate and the best time of each counts, so a neighbour's burst of CPU hurts less.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.demo import DATE_CASES, INSTRUCTION  # noqa: E402

TARGET_SPEEDUP = 3.0
VARIANTS = 20
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


FORMATS = [
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3]}. {d.day}, {d.year}",
    lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year} (US format)",
    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year} (UK format)",
    lambda d: f"{d.strftime('%A')}, {d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}",
]


def cases() -> list[dict]:
    """The demo's 30 cases + 20 seeded variants: the same 50 every time."""
    rows = [{"id": case_id, "input": INSTRUCTION + written, "expected": answer, "scorer": "normalized",
             "tags": tags} for case_id, written, answer, tags in DATE_CASES]
    rng = random.Random(20240611)
    for index in range(VARIANTS):
        day = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(80 * 365))
        written = FORMATS[index % len(FORMATS)](day)
        rows.append({"id": f"var-{index + 1:03d}", "input": INSTRUCTION + written, "expected": day.isoformat(),
                     "scorer": "normalized", "tags": ["variant"]})
    return rows


def make_workspace(root: Path, model_dir: Path, max_new_tokens: int):
    from core.local_source import lock_local_source
    from core.workspace import init_workspace

    ws = init_workspace(root)
    lines = [json.dumps({"_set": {"max_new_tokens": max_new_tokens}})] + [json.dumps(row) for row in cases()]
    (ws.evals_dir / "task.jsonl").write_text("\n".join(lines) + "\n")
    lock_local_source(ws, str(model_dir))
    return ws


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender; the best time counts")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="an ISO date is ~10 tokens + EOS")
    args = parser.parse_args()

    import torch

    from core.demo_model import ensure_demo_model
    from core.evaluation import execute, load_target, plan_eval, workspace_target
    from core.generation import generate_batch, render

    demo = ensure_demo_model(log=lambda message: print(f"  {message}"))
    with tempfile.TemporaryDirectory(prefix="wg-bench-eval-") as tmp:
        ws = make_workspace(Path(tmp) / "ws", demo.path, args.max_new_tokens)
        began = time.perf_counter()
        loaded = load_target(ws, workspace_target(ws), "cpu")   # the locked model, verified first
        print(f"model     {demo.path} ({loaded.precision['name']}, {loaded.footprint_bytes / 2**20:.0f} MiB), "
              f"loaded in {time.perf_counter() - began:.1f} s")
        print(f"machine   {torch.get_num_threads()} torch threads, torch {torch.__version__}")
        plans = {size: plan_eval(ws, "task", batch_size=size, device="cpu") for size in (args.batch_size, 1)}
        prompts = [render(loaded.tokenizer, plans[1].messages(case)) for case in plans[1].cases]
        generate_batch(loaded, prompts[:args.batch_size], dict(plans[1].settings, max_new_tokens=2))   # warm-up
        print(f"cases     {len(prompts)} (30 demo + {VARIANTS} variants), max_new_tokens {args.max_new_tokens}")

        runs: dict[int, list] = {args.batch_size: [], 1: []}
        for repeat in range(args.repeat):
            order = (args.batch_size, 1) if repeat % 2 == 0 else (1, args.batch_size)
            for size in order:
                run = execute(plans[size], loaded=loaded, name=f"bench batch {size} #{repeat + 1}")
                runs[size].append(run)
                print(f"  batch {size:>2} run {repeat + 1}: {run.summary['seconds']:7.2f} s  "
                      f"{run.summary['tokens_out']} tokens out  score {run.summary['score']:.3f}")

        reference = runs[1][0]
        mismatches = []
        for run in runs[args.batch_size] + runs[1][1:]:
            for a, b in zip(reference.cases, run.cases):
                if (a.output, a.tokens_out) != (b.output, b.tokens_out):
                    mismatches.append((run.config["batch_size"], a.id, a.output, b.output))
        best = {size: min(run.summary["seconds"] for run in group) for size, group in runs.items()}
        speedup = best[1] / best[args.batch_size]
        tokens = reference.summary["tokens_out"]
        print()
        print(f"one at a time   {best[1]:7.2f} s  {len(prompts) / best[1]:6.2f} cases/s  {tokens / best[1]:7.1f} tokens/s")
        print(f"batch {args.batch_size:<9} {best[args.batch_size]:7.2f} s  {len(prompts) / best[args.batch_size]:6.2f} "
              f"cases/s  {tokens / best[args.batch_size]:7.1f} tokens/s")
        print(f"speed-up        {speedup:.2f}x (target >= {TARGET_SPEEDUP:g}x)")
        print(f"outputs         {'identical' if not mismatches else f'{len(mismatches)} DIFFER'} "
              f"({len(prompts)} cases x {sum(len(g) for g in runs.values())} runs; text and output-token counts)")
        for size, case_id, one, other in mismatches[:5]:
            print(f"  batch {size} {case_id}: {one!r} != {other!r}")
        print(f"score           {reference.summary['score']:.3f} ({reference.summary['passed']}/{len(prompts)})")
        print(json.dumps({"cases": len(prompts), "batch_size": args.batch_size, "seconds_one": round(best[1], 3),
                          "seconds_batched": round(best[args.batch_size], 3), "speedup": round(speedup, 2),
                          "identical": not mismatches, "tokens_out": tokens}))
        return 0 if not mismatches and speedup >= TARGET_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
