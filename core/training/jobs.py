"""Phase 5's job kinds: `train` (a LoRA / QLoRA run, SFT or DPO, detached, resumable), `data_check` (the
training-data checks, for the TUI: the tokenizer load stays out of its process), `fewshot` (the
few-shot variant of the task eval, for tune.prompting_first) and `tune_gate` (the keep-or-reject
gate of an adapter, tune.gate).

params of data_check: fix (false: report and record only; true: also write the prepared copy)
params of fewshot: shots (3), batch_size (default: the zero-shot baseline's)
params of tune_gate: adapter (an id under .weightgate/adapters/ or a directory; default: the newest)

params of train:
    train_file, val_file, dataset_digest   the canonical split from core.training.data.prepare.prepare_dataset
    steps       stop after N optimizer steps (smoke runs); default: every epoch
    nproc       processes (torchrun: gloo on the CPU, nccl and cuda:<LOCAL_RANK> each on GPUs);
                default 1 (in this process)
    resume      a run id, or "last": continue that run from its last checkpoint
    overrides   [training] values for this run only (tests, the bench)
    throttle_s  pause after each step (demos; the disconnect tests)
    device      auto (default: a GPU when torch.cuda.is_available()), cpu, cuda or cuda:N; the
                device trained on is recorded in run.json and a resumed run keeps it

The journal carries one `metric` event per step (step, epoch, loss, lr, grad_norm, tokens_per_s,
memory_bytes, eta_s), `metric` events with val_loss, `artifact` events for checkpoints
(path, step, val_loss, is_best) and `progress` at most once a second. SIGTERM saves a
checkpoint at the next step boundary and ends the job `cancelled`; `weightgate train resume`
continues it. A DPO run ([training] method = "dpo", core.training.preference.trainer) journals
the same events, its per-step metrics with rewards/margins and rewards/accuracies besides.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from weightgate.core.engine.errors import WeightgateError
from weightgate.core.engine.job_process import JobCancelled, JobContext
from weightgate.core.engine.timers import TRAINING, timed
from weightgate.core.training import runs
from weightgate.core.training.dataset import check_training_data
from weightgate.core.training.keep_or_reject import run_gate as gate
from weightgate.core.training.preference.trainer import execute_dpo
from weightgate.core.training.prompting import DEFAULT_SHOTS
from weightgate.core.training.prompting import run_fewshot as fewshot
from weightgate.core.training.session import check_resumable, execute, prepare_run
from weightgate.core.training.worker import finished_marker


class TrainingStopped(WeightgateError):
    """The run stopped on its own: diverged, or the restore check failed."""


STARTING_STOP_GRACE_S = 120.0
MAX_STOP_GRACE_S = 3600.0


class _StepTimer:
    """The journal's emit, which also keeps the job's declared stop grace at 3 steps + 30 s (the
    step in flight, a validation pass, the checkpoint) as step times become known."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx, self.clock = ctx, time.monotonic
        self.last = self.clock()
        self.declared = STARTING_STOP_GRACE_S
        self.slowest = 0.0

    def __call__(self, kind, payload=None, **fields):
        event = self.ctx.emit(kind, payload, **fields)
        values = (payload or {}).get("values") if isinstance(payload, dict) else None
        if kind == "metric" and isinstance(values, dict) and "loss" in values:
            now = self.clock()
            self.slowest = max(self.slowest, now - self.last)
            self.last = now
            wanted = min(MAX_STOP_GRACE_S, 30.0 + 3.0 * self.slowest)
            if wanted > self.declared * 1.25 or (wanted < self.declared * 0.5 and wanted >= 60.0):
                self.declared = wanted
                self.ctx.declare_stop_grace(wanted)
        return event


def run_train(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    params = ctx.params
    resume = bool(params.get("resume"))
    if resume:
        directory = runs.resolve_resume(ws, str(params["resume"]))
        spec = check_resumable(ws, directory)
        runs.update_run(directory, job_ids=list(spec.get("job_ids") or []) + [ctx.job_id])
    else:
        ctx.progress(0, None, message="preparing: data, memory estimate, batch plan")
        directory = prepare_run(ws, params, job_id=ctx.job_id)
    spec = runs.read_run(directory)
    ctx.artifact(directory, label="run")
    # A SIGTERM is honoured at the next step boundary, then a checkpoint is written: cancel must
    # wait that long. Until steps are timed, assume a slow first step (model load, warm-up).
    ctx.declare_stop_grace(STARTING_STOP_GRACE_S)
    try:
        if spec["nproc"] > 1:
            outcome = _torchrun(ctx, ws.root, directory, resume, spec["nproc"], float(params.get("throttle_s") or 0.0))
        else:
            # Shielded: SIGTERM only sets the flag the loop polls between steps, so the
            # checkpoint is taken at a step boundary; the cancel is raised when the block ends.
            with ctx.shielded():
                train = execute_dpo if spec.get("objective") == "dpo" else execute
                outcome = train(ws.root, directory, resume=resume, emit=_StepTimer(ctx), should_stop=lambda: ctx.cancelled,
                                throttle_s=float(params.get("throttle_s") or 0.0)).to_dict()
    except BaseException as exc:
        if not isinstance(exc, JobCancelled):
            runs.update_run(directory, status="failed",
                            outcome={**(runs.read_run(directory).get("outcome") or {}), "status": "failed",
                                     "message": f"{type(exc).__name__}: {exc}"})
        raise
    summary = {"run": spec["run_id"], "dir": str(directory), **outcome}
    if outcome["status"] == "stopped":
        ctx.log(outcome["message"], level="warning")
        raise JobCancelled(outcome["message"])
    if outcome["status"] in ("diverged", "restore_failed"):
        raise TrainingStopped(outcome["message"])
    ctx.artifact(directory / "best", label="adapter")
    ctx.log(f"{outcome['message']}; use it with [decisions] adapter = \"{spec['run_id']}\"")
    return summary


@timed(TRAINING)
def _torchrun(ctx: JobContext, ws_root, directory, resume: bool, nproc: int, throttle_s: float) -> dict:
    """Run the workers under torchrun and wait; rank 0 writes the journal meanwhile."""

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "weightgate.core.training.worker", str(ws_root), str(directory), str(ctx.job_dir), "1" if resume else "0",
               str(throttle_s)]
    runs.update_run(directory, outcome=None)   # a stale outcome must not pass for this launch's
    for rank in range(nproc):
        finished_marker(ctx.job_dir, rank).unlink(missing_ok=True)
    ctx.log(f"launching {nproc} processes: torchrun --standalone --nproc-per-node={nproc} -m weightgate.core.training.worker")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)   # stdout/stderr: the job's log files
    try:
        code = process.wait()
    except JobCancelled:
        # `weightgate cancel` signals the whole process group, workers included; forward it
        # anyway (a SIGTERM sent to this pid alone) and wait for their checkpoint.
        with ctx.shielded():
            process.send_signal(signal.SIGTERM)
            process.wait()
            ctx.journal.resync()
        raise
    ctx.journal.resync()   # rank 0 appended events: continue after them
    outcome = runs.read_run(directory).get("outcome")
    finished = all(finished_marker(ctx.job_dir, rank).exists() for rank in range(nproc))
    if code != 0 and outcome and finished:
        # Every rank reported its end and rank 0 wrote the outcome: the failure was in the
        # process teardown after the work (gloo can abort there), not in the training.
        ctx.log(f"torchrun exited with {code} after every rank finished; the run is complete", level="warning")
        return outcome
    if code != 0 or not outcome:
        raise RuntimeError(f"torchrun exited with {code} (see the job's stderr.log)")
    return outcome


def _progress(ctx: JobContext):
    def progress(event: dict) -> None:
        ctx.progress(event["done"], event["total"], unit="case", eta_s=event["eta_s"],
                     message=f"score {event['score']:.3f} so far")
        ctx.check_cancel()
    return progress


def run_data_check(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    ctx.log("checking the training data")
    check = check_training_data(ws, fix=bool(ctx.params.get("fix")))
    for item, status in check.items.items():
        ctx.log(f"{item}: {status}", level="info" if status == "pass" else "warning")
    prepared = check.prepared
    if prepared is not None:
        ctx.artifact(prepared.train_path.parent / "report.json", label="prepared data")
    return {"items": check.items, "blocking": check.report.blocking, "digest": prepared.digest if prepared else None,
            "counts": prepared.counts if prepared else None}


def run_fewshot(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    outcome = fewshot(ws, shots=int(ctx.params.get("shots") or DEFAULT_SHOTS), batch_size=ctx.params.get("batch_size"),
                      progress=_progress(ctx), log=ctx.log)
    zero = outcome["baseline_score"]
    ctx.log(f"few-shot {outcome['score']:.3f} (run {outcome['run']})"
            + (f" vs zero-shot {zero:.3f} (run {outcome['baseline']})" if zero is not None else ""))
    return outcome


def run_gate(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    return gate(ws, ctx.params.get("adapter"), progress=_progress(ctx), log=ctx.log)
