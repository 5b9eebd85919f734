"""The tiny-model journey on a GPU in a few minutes: NVML readout, the capability and the half
dtype it decides, loads at bf16/fp16 and nf4 measured against the estimate, a batched eval, 20
QLoRA steps (paged 8-bit AdamW) stopped by SIGTERM and resumed against an uninterrupted run,
the keep-or-reject gate, ship and a health probe. One table of pass/fail with the figures;
exit 0 when every row passes. Without CUDA: "no CUDA", exit 0, nothing run.

`--device cpu` runs the same journey on the CPU (for working on this script without a GPU).
The tiny model and workspace helpers come from tests/support (this script runs from a checkout).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "support"), str(REPO / "tests")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="weightgate's GPU smoke test (tiny model, < 5 min)")
    parser.add_argument("--device", default="cuda:0", help="cuda:N (default cuda:0), or cpu to try the script")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = parser.parse_args(argv)
    import torch  # lazy: the no-CUDA answer must not wait for more than torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA: torch sees no CUDA device here (CPU build, no driver, or CUDA_VISIBLE_DEVICES empty); "
              "nothing was run")
        return 0
    root = Path(tempfile.mkdtemp(prefix="wg-gpu-smoke-"))
    rows = journey(root, args.device)
    width = max(len(r[0]) for r in rows)
    print(f"\nweightgate GPU smoke test on {args.device} ({root})")
    for name, ok, seconds, figures in rows:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<{width}}  {seconds:6.1f} s  {figures}")
    total = sum(r[2] for r in rows)
    failed = [r[0] for r in rows if not r[1]]
    print(f"{len(rows) - len(failed)}/{len(rows)} passed in {total:.0f} s" + (f"; failed: {', '.join(failed)}"
                                                                               if failed else ""))
    if not args.keep and not failed:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


def journey(root: Path, device: str) -> list[tuple[str, bool, float, str]]:
    rows: list[tuple[str, bool, float, str]] = []
    context: dict = {}

    def step(name: str, body) -> None:
        began = time.perf_counter()
        try:
            ok, figures = body()
        except Exception as exc:   # a failed row is reported, and the journey goes on where it can
            ok, figures = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''}"
        rows.append((name, ok, time.perf_counter() - began, figures))

    step("NVML readout", lambda: nvml_readout(device))
    step("capability -> half dtype", lambda: capability_row(device, context))
    step("workspace + tiny model", lambda: setup(root, context))
    for precision in (context.get("half", "fp16"), "nf4"):
        step(f"load {precision}: measured vs estimate", lambda p=precision: load_row(device, p, context))
    step("batched eval (task set)", lambda: eval_row(context))
    step("20 QLoRA steps, SIGTERM, resume", lambda: train_row(device, context))
    step("keep-or-reject gate", lambda: gate_row(context))
    step("ship + health", lambda: ship_row(context))
    return rows


def nvml_readout(device: str) -> tuple[bool, str]:
    from weightgate.core.memory.devices import snapshot

    snap = snapshot()
    return snap.has_gpu or not device.startswith("cuda"), snap.summary()


def capability_row(device: str, context: dict) -> tuple[bool, str]:
    from weightgate.core.memory.capability import capability_for, half_choice

    cap = capability_for(device)
    dtype, reason = half_choice(cap)
    context.update(capability=cap, half={"bfloat16": "bf16", "float16": "fp16"}.get(dtype, "fp16"))
    return True, f"{dtype}: {reason}"


def setup(root: Path, context: dict) -> tuple[bool, str]:
    from helpers import write_cases
    from tiny_model import build_tiny_model
    from training_helpers import make_workspace

    model = build_tiny_model(root / "tiny-model")
    ws, split = make_workspace(root / "ws", model)
    write_cases(ws.evals_dir / "general.jsonl", 24)   # the gate checks the general set holds

    def qlora(doc) -> None:   # decided before the eval: the gate and ship compare with this baseline
        doc["decisions"]["precision"] = "nf4"
        doc["training"] = {"optimizer": "paged_adamw_8bit"}
    ws.update_config(qlora)
    context.update(ws=ws, split=split, model=model)
    return True, f"{model.name} locked in {ws.root}; nf4 decided, paged 8-bit AdamW"


def load_row(device: str, precision: str, context: dict) -> tuple[bool, str]:
    import torch

    from weightgate.core.memory.estimate import weights
    from weightgate.core.memory.loading import load_model
    from weightgate.core.memory.precision import layout_for, workspace_metadata

    layout = layout_for(workspace_metadata(context["ws"]))
    cuda = device.startswith("cuda")
    before = torch.cuda.memory_allocated(device) if cuda else 0
    loaded = load_model(context["model"], precision, device=device)
    measured = (torch.cuda.memory_allocated(device) - before) if cuda else loaded.footprint_bytes
    estimated = weights(layout, precision, "cuda" if cuda else "cpu", capability=context.get("capability")).total
    error = (estimated - measured) / measured
    dtype = loaded.precision["dtype"]
    del loaded
    if cuda:
        torch.cuda.empty_cache()
    return abs(error) <= 0.25, (f"{dtype}: weights measured {measured / 1024:.0f} KiB, estimated "
                                f"{estimated / 1024:.0f} KiB ({error:+.1%})")


def eval_row(context: dict) -> tuple[bool, str]:
    from weightgate.core.demo.journey import _run_line, run_job

    result = run_job(context["ws"], "eval", {"set": "task"}, lambda line: None)
    general = run_job(context["ws"], "eval", {"set": "general"}, lambda line: None)
    return bool(result and general), _run_line("task set", result) + "; " + _run_line("general set", general)


def train_row(device: str, context: dict) -> tuple[bool, str]:
    import torch
    from training_helpers import checkpoint_at_least, params_for, wait_for

    from weightgate.core.engine.events import read_events
    from weightgate.core.engine.jobs import cancel_job, events_path, start_job
    from weightgate.core.training import runs
    from helpers import wait_terminal

    ws, split = context["ws"], context["split"]
    params = {**params_for(split, 20), "device": device}

    def run_of(job) -> Path:
        found = wait_for(job.job_dir, lambda e: e.kind == "artifact" and e.payload.get("label") == "run")
        return Path(found.payload["path"])

    # The uninterrupted reference runs as a job too: the same process setup as the resumed run.
    reference_job = start_job(ws.jobs_dir, "train", params, workspace=ws.root)
    reference = run_of(reference_job)
    wait_terminal(reference_job.job_dir, timeout=240)
    first = start_job(ws.jobs_dir, "train", {**params, "throttle_s": 0.05}, workspace=ws.root)
    wait_for(first.job_dir, checkpoint_at_least(3), timeout=180)
    cancel_job(first.job_dir, grace_s=60)
    directory = run_of(first)
    stopped_at = runs.read_run(directory)["outcome"]["step"]
    second = start_job(ws.jobs_dir, "train", {"resume": directory.name}, workspace=ws.root)
    state = wait_terminal(second.job_dir, timeout=240).state
    final = runs.read_run(directory)
    a = _tensors(directory / "checkpoints" / "step-000020" / "adapter.safetensors")
    b = _tensors(reference / "checkpoints" / "step-000020" / "adapter.safetensors")
    identical = a.keys() == b.keys() and all(torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)) for k in a)
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    events, _ = read_events(events_path(second.job_dir), 0)
    rates = [e.payload["values"].get("tokens_per_s") for e in events if e.kind == "metric"]
    rates = [r for r in rates if r]
    plan = final.get("precision_plan") or {}
    context["adapter_run"] = directory
    return (state == "succeeded" and identical,
            f"stopped at step {stopped_at}, resumed to {final['outcome']['step']}; resume identical: "
            f"{'yes' if identical else f'no (max diff {diff:.3g})'}; {plan.get('compute_dtype')} compute, "
            f"scaler {'on' if plan.get('scaler') else 'off'}, {plan.get('optimizer')}, "
            f"{plan.get('attn_implementation')}; {sorted(rates)[len(rates) // 2] if rates else '?'} tokens/s (median)")


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def gate_row(context: dict) -> tuple[bool, str]:
    from weightgate.core.demo.journey import run_job

    gate = run_job(context["ws"], "tune_gate", {}, lambda line: None)
    # A random tiny model's adapter may well be rejected: the row checks that the gate decides.
    return "kept" in gate, f"{'kept' if gate.get('kept') else 'rejected'}: {gate.get('note')}"


def ship_row(context: dict) -> tuple[bool, str]:
    from weightgate.core.demo.journey import run_job
    from weightgate.core.registry.store import resolve
    from weightgate.core.release.health import health

    ws = context["ws"]
    shipped = run_job(ws, "ship", {"override": "GPU smoke test: a random tiny model, not a release"},
                      lambda line: None)
    if not shipped.get("ok"):
        return False, f"not shipped: {shipped.get('refused') or shipped.get('message') or shipped}"
    ref = resolve(ws, shipped["version"], shipped["name"])
    probe = health(ws, ref, timeout=120.0)
    return bool(probe.ready), (f"{ref.label} ({shipped.get('relation')}): health {probe.status}, cold start "
                               f"{probe.cold_start_s or 0:.1f} s, first request {probe.first_request_ms or 0:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
