"""Benchmark: the demo model over 50 eval cases, batched and one at a time, in the same run.

    .venv/bin/python tests/bench/eval_batching.py                   # batch 32 vs 1 (the must-show)
    .venv/bin/python tests/bench/eval_batching.py --batch-size 16 --repeat 2

On a quiet 2-core machine (2026-11-22): batch 32 3.46x, batch 16 2.83x; outputs identical.

The cases: the demo's 30 date-rewriting cases plus 20 deterministic variants (seeded dates in the
same formats). A temporary workspace holds them, with the demo model (SmolLM2-135M-Instruct,
converted once to safetensors in ~/.cache/weightgate: core.demo.model.ensure_demo_model) locked
and verified like any model, and loaded once.

Timing: the engine's own batches (core.evaluation.generation.generate_all sorts the prompts by length and
cuts them into batches of --batch-size) are generated batched and, interleaved with them, the
same prompts one at a time; the order alternates from batch to batch, so a neighbour's burst of
CPU lands on both contenders alike. Same rendered prompts, same generation config as an eval run.
Then one real eval run (core.evaluation.runner.execute at the batch size: render, generate, score, run
files) checks that the engine gives the same outputs. Prints the speed-up (target >= 3x),
whether every case's output tokens are identical (they must be: the batch size must not change a
score), and how much CPU other processes took meanwhile (on a shared 2-core machine they can
distort the ratio: one-at-a-time decoding suffers most from a neighbour).

Not a pytest test: it takes minutes and wants a quiet machine.
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

from weightgate.core.demo.evalsets import DATE_CASES, INSTRUCTION  # noqa: E402

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
    from weightgate.core.engine.workspace import init_workspace
    from weightgate.core.weights.local_source import lock_local_source

    ws = init_workspace(root)
    lines = [json.dumps({"_set": {"max_new_tokens": max_new_tokens}})] + [json.dumps(row) for row in cases()]
    (ws.evals_dir / "task.jsonl").write_text("\n".join(lines) + "\n")
    lock_local_source(ws, str(model_dir))
    return ws


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) so far."""
    import psutil

    machine = psutil.cpu_times()
    ours = psutil.Process().cpu_times()
    busy = machine.user + machine.system + getattr(machine, "nice", 0.0) + getattr(machine, "irq", 0.0) + \
        getattr(machine, "softirq", 0.0)
    return busy, ours.user + ours.system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1, help="timed passes over the set; the sums count")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="an ISO date is ~10 tokens + EOS")
    args = parser.parse_args()

    import os

    import torch

    from weightgate.core.demo.model import ensure_demo_model
    from weightgate.core.evaluation.generation import generate_batch, render
    from weightgate.core.evaluation.plan import plan_eval, workspace_target
    from weightgate.core.evaluation.runner import execute, load_target

    demo = ensure_demo_model(log=lambda message: print(f"  {message}", flush=True))
    with tempfile.TemporaryDirectory(prefix="wg-bench-eval-") as tmp:
        ws = make_workspace(Path(tmp) / "ws", demo.path, args.max_new_tokens)
        began = time.perf_counter()
        loaded = load_target(ws, workspace_target(ws), "cpu")   # the locked model, verified first
        print(f"model     {demo.path} ({loaded.precision['name']}, {loaded.footprint_bytes / 2**20:.0f} MiB), "
              f"loaded in {time.perf_counter() - began:.1f} s", flush=True)
        print(f"machine   {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
        plan = plan_eval(ws, "task", batch_size=args.batch_size, device="cpu")
        prompts = [render(loaded.tokenizer, plan.messages(case)) for case in plan.cases]
        settings = plan.settings
        generate_batch(loaded, prompts[:args.batch_size], dict(settings, max_new_tokens=2))   # warm-up
        generate_batch(loaded, prompts[:1], dict(settings, max_new_tokens=2))
        print(f"cases     {len(prompts)} (30 demo + {VARIANTS} variants), max_new_tokens {args.max_new_tokens}")

        # The engine's batches: longest prompts first (as generate_all cuts them).
        lengths = [len(loaded.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (-lengths[i], i))
        batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
        seconds = {"batched": 0.0, "single": 0.0}
        tokens: dict[str, dict[int, list[int]]] = {"batched": {}, "single": {}}
        texts: dict[int, str] = {}
        mismatches = []
        busy0, ours0 = cpu_seconds()
        wall0 = time.perf_counter()
        for repeat in range(args.repeat):
            for index, batch in enumerate(batches):
                modes = ("batched", "single") if (index + repeat) % 2 == 0 else ("single", "batched")
                for mode in modes:
                    began = time.perf_counter()
                    if mode == "batched":
                        results = generate_batch(loaded, [prompts[i] for i in batch], settings)
                    else:
                        results = [generate_batch(loaded, [prompts[i]], settings)[0] for i in batch]
                    seconds[mode] += time.perf_counter() - began
                    for i, result in zip(batch, results):
                        if i in tokens[mode] and tokens[mode][i] != result.token_ids:
                            mismatches.append((mode, plan.cases[i].id))
                        tokens[mode][i] = result.token_ids
                        texts[i] = result.text
                print(f"  pass {repeat + 1} batch {index + 1}/{len(batches)} ({len(batch)} cases): "
                      f"batched {seconds['batched']:6.1f} s, one at a time {seconds['single']:6.1f} s so far",
                      flush=True)
        wall = time.perf_counter() - wall0
        busy1, ours1 = cpu_seconds()
        neighbours = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (wall * (os.cpu_count() or 1))
        for i in range(len(prompts)):
            if tokens["batched"][i] != tokens["single"][i]:
                mismatches.append(("batched vs one at a time", plan.cases[i].id))

        run = execute(plan, loaded=loaded, name=f"bench batch {args.batch_size}")   # the real engine path
        for i, case in enumerate(run.cases):
            if case.tokens_out != len(tokens["single"][i]) or case.output != texts[i]:
                mismatches.append(("eval run", case.id))

        speedup = seconds["single"] / seconds["batched"]
        out_tokens = sum(len(t) for t in tokens["single"].values())
        print()
        print(f"one at a time   {seconds['single']:7.2f} s  {args.repeat * len(prompts) / seconds['single']:6.2f} cases/s"
              f"  {args.repeat * out_tokens / seconds['single']:7.1f} tokens/s")
        print(f"batch {args.batch_size:<9} {seconds['batched']:7.2f} s  "
              f"{args.repeat * len(prompts) / seconds['batched']:6.2f} cases/s  "
              f"{args.repeat * out_tokens / seconds['batched']:7.1f} tokens/s")
        print(f"speed-up        {speedup:.2f}x (target >= {TARGET_SPEEDUP:g}x)")
        print(f"outputs         {'identical' if not mismatches else f'{len(mismatches)} DIFFER'} "
              f"({len(prompts)} cases: every output token batched = one at a time = the eval run's)")
        for where, case_id in mismatches[:5]:
            print(f"  differs: {where} {case_id}")
        print(f"neighbours      other processes used {100 * neighbours:.0f}% of the machine's CPUs meanwhile")
        print(f"eval run        {run.id}: score {run.summary['score']:.3f} ({run.summary['passed']}/{len(prompts)}), "
              f"{run.summary['seconds']:.1f} s at batch {args.batch_size}")
        print(json.dumps({"cases": len(prompts), "batch_size": args.batch_size, "repeat": args.repeat,
                          "seconds_one": round(seconds["single"], 3), "seconds_batched": round(seconds["batched"], 3),
                          "speedup": round(speedup, 2), "identical": not mismatches, "tokens_out": out_tokens,
                          "neighbour_cpu_share": round(neighbours, 3)}))
        return 0 if not mismatches and speedup >= TARGET_SPEEDUP else 1

if __name__ == "__main__":
    sys.exit(main())
