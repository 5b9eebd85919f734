"""`selftest`: a fake training run that exercises every part of the job machinery.

params:
    seconds (5)          how long it runs
    interval (0.2)       seconds between steps; each step emits a metric and a progress event
    fail_at (none)       raise at this step, to exercise the failure path
    ignore_sigterm (no)  ignore SIGTERM, to exercise the SIGKILL after cancel's grace period
    stop_grace (none)    declare that a clean stop may take this many seconds (as training does)
    stop_delay (0)       seconds the checkpoint takes after SIGTERM (a slow step boundary)
"""

from __future__ import annotations

import json
import math
import signal
import time

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.job_process import JobCancelled, JobContext

CHECKPOINT_FILE = "checkpoint.json"


def run_selftest(ctx: JobContext) -> dict:
    seconds = float(ctx.params.get("seconds", 5))
    interval = float(ctx.params.get("interval", 0.2))
    fail_at = ctx.params.get("fail_at")
    if ctx.params.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # plays a job stuck in native code
    if ctx.params.get("stop_grace") is not None:
        ctx.declare_stop_grace(float(ctx.params["stop_grace"]))
    steps = max(1, round(seconds / interval))
    ctx.log(f"selftest: {steps} steps of {interval:g} s")
    began = time.monotonic()
    done = 0
    loss = _fake_loss(0, steps)
    try:
        for step in range(1, steps + 1):
            if fail_at is not None and step == int(fail_at):
                raise RuntimeError(f"selftest failure injected at step {step}")
            time.sleep(interval)
            loss = _fake_loss(step, steps)
            elapsed = time.monotonic() - began
            ctx.metric({"loss": loss, "tokens_per_s": 1000.0 + 10.0 * step}, step=step)
            done = step
            ctx.progress(step, steps, unit="step", eta_s=elapsed / step * (steps - step))
    except JobCancelled:
        with ctx.shielded():
            time.sleep(float(ctx.params.get("stop_delay", 0)))
            checkpoint = ctx.job_dir / CHECKPOINT_FILE
            write_atomic(checkpoint, json.dumps({"step": done, "loss": loss}) + "\n")
            ctx.log(f"checkpoint saved at step {done}")
            ctx.artifact(checkpoint, label="checkpoint")
        raise
    return {"steps": steps, "final_loss": loss}


def _fake_loss(step: int, steps: int) -> float:
    return 0.3 + 2.2 * math.exp(-3.0 * step / steps)
