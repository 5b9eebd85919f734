"""Benchmark: `weightgate train start` (the detached job) against a plain transformers Trainer + peft
script, and the job with a reader attached to its journal against none, in the same run.

    .venv/bin/python tests/bench/train_throughput.py                 # demo model, 10 steps, 2 rounds
    .venv/bin/python tests/bench/train_throughput.py --model tiny --steps 24 --rounds 3
    .venv/bin/python tests/bench/train_throughput.py --steps 8 --rounds 1 --batch 4   # ~10 min here

Same model (SmolLM2-135M-Instruct from ~/.cache/weightgate by default, fp32 on the CPU), same
data (64 date-rewriting chat examples, loss on the answers; --steps beyond 3 epochs of them are
not run by the job, which stops at 3 epochs), same hyperparameters (r 16, alpha
32, dropout 0.05, lr 2e-4, warm-up 3 %, micro batch 4 x accumulation 2, AdamW, grad clip 1.0,
all attention + MLP projections). The Trainer logs every step (as the job journals every step)
and neither saves checkpoints during the timed steps. Both run on the CPU (the job is started
with device "cpu", the Trainer with use_cpu), and both flush subnormal floats to zero in every
intra-op thread (torch.set_flush_denormal through core.memory.loading.flushed_subnormals): the
job does it for every CPU run (core/training/session.py), so the Trainer baseline gets the
same setting, and the ratio measures the loop, not the flag. The output says which way each
ran (the probe reports whether this CPU flushes at all).

Timing: tokens/s of the steady state, per optimizer step, from the end of one step to the end
of the next: the job's per-step journal events (their timestamps and token counts), the
Trainer's on_step_end callback and the non-padding tokens its collator produced for that step.
The first two steps (warm-up of the allocator; the job's step-1 checkpoint-restore check) and
any step that evaluated or checkpointed are left out. Rounds interleave the three contenders
(job, Trainer, job + reader), so a neighbour's burst of CPU lands on all of them; the medians
of the rounds are compared. Targets: job / Trainer >= 1.0x, job + reader / job >= 0.98x.

Not a pytest test: it takes minutes and wants a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
HYPER = {"r": 16, "alpha": 32, "dropout": 0.05, "lr": 2e-4, "warmup_ratio": 0.03, "effective_batch": 8,
         "micro_batch": 4, "seed": 42, "max_grad_norm": 1.0, "weight_decay": 0.0}
SKIP_FIRST = 2


def records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        m, d, y = rng.randrange(12), rng.randrange(1, 28), rng.randrange(1950, 2030)
        rows.append({"id": f"r{seed}-{i}", "messages": [
            {"role": "system", "content": "You rewrite dates. Answer with the date only, as YYYY-MM-DD."},
            {"role": "user", "content": f"Rewrite the date as YYYY-MM-DD: {MONTHS[m]} {d}, {y}"},
            {"role": "assistant", "content": f"{y}-{m + 1:02d}-{d:02d}"}]})
    return rows


def make_workspace(root: Path, model_dir: Path, steps: int):
    from helpers import phase1_ready

    from weightgate.core.weights.local_source import lock_local_source

    ws = phase1_ready(root)
    lock_local_source(ws, str(model_dir))
    prepared = ws.root / "prepared"
    prepared.mkdir()
    (prepared / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(64, 1)))
    (prepared / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(8, 2)))
    # Evaluate only after the last step: the timed steps are training steps.
    ws.update_config(lambda doc: doc.__setitem__("training", {**HYPER, "eval_every": steps + 1}))
    return ws, prepared


def job_rates(ws, prepared: Path, steps: int, reader: bool) -> tuple[list[float], dict]:
    """Tokens/s of each steady-state step of a real `train` job; with a reader following it."""
    from weightgate.core.engine.events import read_events
    from weightgate.core.engine.jobs import events_path, follow_job, read_status, start_job

    params = {"train_file": str(prepared / "train.jsonl"), "val_file": str(prepared / "val.jsonl"), "steps": steps,
              "device": "cpu"}   # as the Trainer baseline (use_cpu): a GPU box must not put only the job on it
    handle = start_job(ws.jobs_dir, "train", params, workspace=ws.root)
    seen = {"events": 0}
    follower = None
    if reader:
        def follow() -> None:   # what `weightgate attach` and the TUI do: tail the file by offset
            for _ in follow_job(handle.job_dir, poll_s=0.1):
                seen["events"] += 1
        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
    while not read_status(handle.job_dir).is_terminal:
        time.sleep(0.2)
    if follower:
        follower.join(timeout=30)
    status = read_status(handle.job_dir)
    if status.state != "succeeded":
        raise SystemExit(f"train job {handle.job_id} {status.state}: {status.error}\n"
                         f"{(handle.job_dir / 'stderr.log').read_text()[-2000:]}")
    events, _ = read_events(events_path(handle.job_dir))
    steps_ev = [e for e in events if e.kind == "metric" and "loss" in e.payload["values"]]
    rates = []
    for before, after in zip(steps_ev, steps_ev[1:]):
        step = after.payload["values"]["step"]
        if step <= SKIP_FIRST or step == steps:   # warm-up, restore check; the last one evaluates
            continue
        rates.append(after.payload["values"]["tokens"] / (after.time - before.time))
    flushed = [e.payload["message"] for e in events if e.kind == "log" and "subnormal floats" in e.payload["message"]]
    flush = bool(flushed) and "subnormal floats flushed to zero" in flushed[0]
    return rates, {"job": handle.job_id, "reader_events": seen["events"], "flush_denormal": flush}


def trainer_rates(model_dir: Path, prepared: Path, steps: int) -> tuple[list[float], dict]:
    """The same training with transformers' Trainer + peft, timed per step by a callback, with
    subnormals flushed exactly as the job flushes them on the CPU."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from weightgate.core.memory.loading import flushed_subnormals, subnormals_flush_everywhere
    from weightgate.core.training.batches import load_examples
    from weightgate.core.training.model import detect_targets

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = load_examples(prepared / "train.jsonl", tokenizer, max_seq=None)
    dataset = [{"input_ids": e.input_ids, "attention_mask": [1] * e.length, "labels": e.labels} for e in examples]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=HYPER["r"], lora_alpha=HYPER["alpha"], lora_dropout=HYPER["dropout"],
                                             target_modules=detect_targets(model), task_type="CAUSAL_LM"))
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    tokens_seen = []

    def counting(features):
        batch = collator(features)
        tokens_seen.append(int(batch["attention_mask"].sum()))
        return batch

    marks = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), len(tokens_seen)))

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=HYPER["micro_batch"],
            gradient_accumulation_steps=HYPER["effective_batch"] // HYPER["micro_batch"],
            learning_rate=HYPER["lr"], warmup_steps=math.ceil(HYPER["warmup_ratio"] * steps),
            lr_scheduler_type="linear", max_steps=steps, max_grad_norm=HYPER["max_grad_norm"],
            weight_decay=HYPER["weight_decay"], optim="adamw_torch", logging_strategy="steps", logging_steps=1,
            save_strategy="no", eval_strategy="no", report_to=[], seed=HYPER["seed"], use_cpu=True,
            dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=counting,
                          callbacks=[StepClock()])
        # What core.training.session.execute does around the job's loop on the CPU.
        flush = subnormals_flush_everywhere(torch)
        with flushed_subnormals(torch, flush):
            trainer.train()
    rates = []
    for index in range(1, len(marks)):
        step = index + 1
        if step <= SKIP_FIRST or step == steps:
            continue
        (t0, n0), (t1, n1) = marks[index - 1], marks[index]
        rates.append(sum(tokens_seen[n0:n1]) / (t1 - t0))
    return rates, {"flush_denormal": flush}


def _cpu_flushes() -> bool:
    """Whether flushing works in every intra-op thread of this CPU (core.memory.loading's probe: the
    job and the baseline turn it on only then)."""
    import torch

    from weightgate.core.memory.loading import subnormals_flush_everywhere

    return subnormals_flush_everywhere(torch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["demo", "tiny"], default="demo")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="effective batch (micro batch = half of it)")
    args = parser.parse_args()
    HYPER.update(effective_batch=args.batch, micro_batch=max(1, args.batch // 2))
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "demo":
            from weightgate.core.demo.model import ensure_demo_model

            model_dir = ensure_demo_model().path
        else:
            from tiny_model import build_tiny_model

            model_dir = build_tiny_model(Path(tmp) / "tiny")
        ws, prepared = make_workspace(Path(tmp) / "ws", model_dir, args.steps)
        print(f"model {args.model} ({model_dir}), {args.steps} steps of {HYPER['effective_batch']} examples "
              f"({HYPER['micro_batch']} x {HYPER['effective_batch'] // HYPER['micro_batch']}), {args.rounds} rounds; "
              f"steady-state steps {SKIP_FIRST + 1}..{args.steps - 1}")
        results = {"job": [], "trainer": [], "job+reader": []}
        flushes: dict[str, bool] = {}
        print("subnormal floats: the job flushes them to zero on the CPU (torch.set_flush_denormal, every "
              f"intra-op thread; this CPU {'does' if _cpu_flushes() else 'does NOT'}), and so does the Trainer "
              "baseline here: the ratio measures the loop, not the flag")
        for round_ in range(args.rounds):
            order = ["job", "trainer", "job+reader"] if round_ % 2 == 0 else ["job+reader", "trainer", "job"]
            for name in order:
                began = time.perf_counter()
                if name == "trainer":
                    rates, info = trainer_rates(model_dir, prepared, args.steps)
                    flushes["trainer"] = info["flush_denormal"]
                else:
                    rates, info = job_rates(ws, prepared, args.steps, reader=name == "job+reader")
                    flushes[name] = info["flush_denormal"]
                median = statistics.median(rates)
                results[name].append(median)
                print(f"  round {round_ + 1} {name:<11} {median:8.1f} tokens/s (median of {len(rates)} steps, "
                      f"{time.perf_counter() - began:.0f} s wall) {info}")
    job, trainer, reader = (statistics.median(results[k]) for k in ("job", "trainer", "job+reader"))
    same = len(set(flushes.values())) == 1
    print("flush denormal        " + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in flushes.items())
          + ("" if same else "  (DIFFERENT: the ratio is not comparable)"))
    print(f"weightgate train start      {job:8.1f} tokens/s")
    print(f"Trainer + peft        {trainer:8.1f} tokens/s")
    print(f"train + reader        {reader:8.1f} tokens/s")
    print(f"train / Trainer       {job / trainer:6.3f}x  (target >= 1.0)")
    print(f"reader / no reader    {reader / job:6.3f}x  (target >= 0.98)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
