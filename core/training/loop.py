"""The training loop: our own, not transformers' Trainer (nor TRL's SFTTrainer, a Trainer
subclass), for three guarantees of phase 5 that the Trainer does not give (transformers 5.x):

1. Bitwise resume. Here the examples of optimizer step s are a pure function of (seed, epoch, s)
   (epoch_order, step_examples), the learning rate a pure function of s (plan.lr_at), and
   dropout is reseeded from (seed, s, rank) at every step; so a checkpoint is the step, the
   adapter, AdamW's state and the RNG, and a run resumed from it (after SIGTERM or SIGKILL)
   ends with the same adapter bit for bit on the CPU (tests/test_training.py checks it). The
   Trainer finds its place on resume by iterating the epoch's sampler again and skipping the
   batches already seen (accelerate's skip_first_batches), then reloading RNG states saved
   with the checkpoint: the data order is the sampler's state, not a function of the step, and
   an exact continuation is not something it promises or tests.
2. SIGTERM only at optimizer-step boundaries, on every rank at once. `weightgate cancel` sends
   SIGTERM; here it sets a flag polled between optimizer steps (never mid-accumulation), the
   ranks agree on it with an all-reduce, and a checkpoint is saved before the run stops. The
   Trainer installs no handler by default (SIGTERM kills it mid-step; it saves only every
   save_steps); its opt-in enable_jit_checkpoint acts after a fixed 3 s timer at whichever
   callback comes next, on_pre_optimizer_step included (gradients accumulated, not applied),
   and each rank decides on its own.
3. Rank 0 writes one JSONL journal. Every step's loss, lr, grad norm, tokens/s, memory and ETA,
   each validation loss and each checkpoint go from rank 0 straight to the job's events.jsonl,
   which the TUI, `weightgate attach` and tests tail by offset (a reader that joins late replays
   it all). The Trainer reports through its callback chain at logging_steps to its
   integrations; the journal would be a callback of ours anyway.

Besides: the divergence guard stops before a bad step is checkpointed, and the step-1 restore
check compares a restored checkpoint with the live state bit for bit. The Trainer could be
bent to parts of this with a custom sampler and callbacks; the loop below is short and does
only what is needed. tests/bench/train_throughput.py measures it against a plain Trainer + peft
script on the same model, data and settings (it must not be slower).

Loss normalisation: every micro-batch's summed token loss is divided by the number of label
tokens of the whole optimizer step (all micro-batches, all ranks), and gradients are summed
across ranks once per step (a gloo/nccl all-reduce of the trainable tensors: what DDP does on
the last micro-batch, without requiring every rank to have the same number of micro-batches).
So one process and N processes compute the same quantity, up to float summation order. Every
all-reduced tensor (the gradients, the loss totals, the stop and agree flags) lives on the run's
device: nccl reduces CUDA tensors only; on the CPU the backend is gloo.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from weightgate.core.engine.timers import TRAINING, timed
from weightgate.core.training.batches import Example, collate
from weightgate.core.training.checkpoint import (
    check_restore,
    check_scaler_restore,
    load_checkpoint,
    save_best,
    save_checkpoint,
)
from weightgate.core.training.plan import lr_at

FINISHED, STOPPED, DIVERGED, RESTORE_FAILED = "finished", "stopped", "diverged", "restore_failed"
DIVERGENCE_FLOOR_SHARE = 0.1   # the running minimum counts as at least 10% of the first loss
# The guard watches the loss smoothed over a few steps (an exponential moving average): one
# batch of long replay answers among short dates can be 4x the minimum (0.71 after 0.17, the demo
# at step 19) and is no explosion; an explosion stays up and the average crosses within steps.
DIVERGENCE_SMOOTHING = 0.3
# fp16 with a gradient scaler: a step whose gradients overflow is skipped and the scale halved.
# A few in a row is the scaler finding its level; this many means no scale helps: diverged.
MAX_CONSECUTIVE_SKIPS = 20
PROGRESS_EVERY_S = 1.0


@dataclass
class LoopSetup:
    model: Any
    optimizer: Any
    train: list[Example]
    val: list[Example]
    pad_id: int
    seed: int
    lr: float
    max_grad_norm: float
    divergence_factor: float
    micro_batch: int
    effective_batch: int
    total_steps: int
    warmup_steps: int
    eval_every: int
    run_dir: Path
    device: str = "cpu"
    rank: int = 0
    world: int = 1
    emit: Callable[[str, dict], None] = lambda kind, payload: None
    should_stop: Callable[[], bool] = lambda: False
    build_fresh: Callable[[], tuple[Any, Any]] | None = None     # for the restore check after step 1
    on_restore_check: Callable[[dict], None] | None = None
    on_best: Callable[[int, float], None] | None = None
    throttle_s: float = 0.0            # pause after each step (demos, and the disconnect tests)
    loss_transform: Callable[[int, Any], Any] | None = None   # fault injection in tests: (step, loss) -> loss
    autocast: str | None = None        # "float16" | "bfloat16": the forward runs under torch.autocast
    make_scaler: Callable[[], Any] | None = None   # a torch.amp.GradScaler for fp16 compute (None: no scaler)
    scaler: Any = None                 # set by run_loop from make_scaler
    params: list = field(default_factory=list)   # the trainable tensors (set by run_loop)
    current_step: int = 0                        # optimizer steps taken before the one in progress

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.effective_batch)


@dataclass
class Outcome:
    status: str
    step: int
    best_step: int | None
    best_val_loss: float | None
    last_checkpoint: str | None
    message: str
    last_train_loss: float | None = None
    restore_check: dict | None = None
    skipped_steps: list[int] = field(default_factory=list)   # steps the gradient scaler skipped (fp16)
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "history"}


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    import torch  # lazy: torch only where it runs, never at import

    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def step_examples(setup: LoopSetup, step: int, cache: dict) -> tuple[int, list[int]]:
    """(epoch, example indices) of optimizer step `step` (0-based): a pure function of it."""
    epoch, index = divmod(step, setup.steps_per_epoch)
    if cache.get("epoch") != epoch:
        cache["epoch"], cache["order"] = epoch, epoch_order(len(setup.train), setup.seed, epoch)
    order = cache["order"]
    return epoch, order[index * setup.effective_batch:(index + 1) * setup.effective_batch]


def _all_reduce(tensor: Any, world: int) -> Any:
    if world > 1:
        import torch.distributed as dist  # lazy: torch only where it runs, never at import

        dist.all_reduce(tensor)
    return tensor


def fork_devices(device: str) -> list[int]:
    """The devices torch.random.fork_rng must save besides the CPU: this process's GPU on CUDA."""
    if not str(device).startswith("cuda"):
        return []
    import torch  # lazy: torch only where it runs, never at import

    index = torch.device(device).index
    return [index if index is not None else torch.cuda.current_device()]


def _memory_bytes(device: str) -> int:
    if device.startswith("cuda"):
        import torch  # lazy: torch only where it runs, never at import

        return int(torch.cuda.max_memory_allocated(device))

    return int(psutil.Process().memory_info().rss)


def _autocast(setup: LoopSetup) -> Any:
    import torch  # lazy: torch only where it runs, never at import

    if not setup.autocast:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if setup.device.startswith("cuda") else "cpu", dtype=getattr(torch, setup.autocast))


def train_step(setup: LoopSetup, indices: list[int]) -> tuple[float, float, int, bool]:
    """One optimizer step over the examples `indices` (this rank takes every world-th one).
    Returns (mean train loss over the step's label tokens, grad norm, input tokens, skipped):
    skipped when the gradient scaler found inf/nan gradients and left the weights as they were."""
    import torch  # lazy: torch only where it runs, never at import

    model, params = setup.model, setup.params
    # Dropout draws from a stream seeded by (seed, step, rank): a resumed step draws exactly what
    # the uninterrupted one did, and ranks do not share masks.
    torch.manual_seed((setup.seed * 1_000_003 + setup.current_step) * 131 + setup.rank)
    examples = [setup.train[i] for i in indices]
    label_tokens = sum(e.label_tokens for e in examples)
    mine = examples[setup.rank::setup.world]
    # On the device: nccl all-reduces only device tensors, and no per-micro-batch copy to the host.
    total = torch.zeros(1, dtype=torch.float64, device=setup.device)
    model.train()
    for start in range(0, len(mine), setup.micro_batch):
        batch = {k: v.to(setup.device) for k, v in collate(mine[start:start + setup.micro_batch], setup.pad_id).items()}
        with _autocast(setup):
            out = model(**batch, num_items_in_batch=torch.tensor(label_tokens, device=setup.device))
        loss = out.loss
        if setup.loss_transform is not None:
            loss = setup.loss_transform(setup.current_step, loss)
        (setup.scaler.scale(loss) if setup.scaler is not None else loss).backward()
        total += loss.detach().double()
    if setup.world > 1:
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        _all_reduce(flat, setup.world)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n
        _all_reduce(total, setup.world)
    scaler = setup.scaler
    if scaler is not None:
        # Every rank unscales the same all-reduced gradients: they agree on a skip.
        scaler.unscale_(setup.optimizer)
    norm = torch.nn.utils.clip_grad_norm_(params, setup.max_grad_norm if setup.max_grad_norm > 0 else float("inf"))
    for group in setup.optimizer.param_groups:
        group["lr"] = lr_at(setup.current_step, lr=setup.lr, warmup=setup.warmup_steps, total=setup.total_steps)
    skipped = False
    if scaler is not None:
        scale = scaler.get_scale()
        scaler.step(setup.optimizer)   # skips optimizer.step() when the gradients hold inf/nan
        scaler.update()
        skipped = scaler.get_scale() < scale   # the scale backs off exactly when the step was skipped
    else:
        setup.optimizer.step()
    setup.optimizer.zero_grad(set_to_none=True)
    return float(total.item()), float(norm), sum(e.length for e in examples), skipped


def validation_loss(setup: LoopSetup) -> float:
    """Mean token loss over the validation split (shared across ranks)."""
    import torch  # lazy: torch only where it runs, never at import

    model = setup.model
    model.eval()
    tokens = sum(e.label_tokens for e in setup.val)
    mine = setup.val[setup.rank::setup.world]
    total = torch.zeros(1, dtype=torch.float64, device=setup.device)
    with torch.no_grad():
        for start in range(0, len(mine), setup.micro_batch):
            batch = {k: v.to(setup.device) for k, v in collate(mine[start:start + setup.micro_batch], setup.pad_id).items()}
            out = model(**batch, num_items_in_batch=torch.tensor(tokens, device=setup.device))
            total += out.loss.detach().double()
    _all_reduce(total, setup.world)
    return float(total.item())


def _kept(state: dict) -> str:
    if state["best_step"] is None:
        return "No checkpoint had been evaluated yet, so there is no adapter to keep."
    return f"The best checkpoint (step {state['best_step']}, val loss {state['best_val_loss']:.4g}) is kept."


@timed(TRAINING)
def run_loop(setup: LoopSetup, *, resume_from: Path | None = None) -> Outcome:
    import torch  # lazy: torch only where it runs, never at import

    setup.params = [p for p in setup.model.parameters() if p.requires_grad]
    setup.scaler = setup.make_scaler() if setup.make_scaler is not None else None
    state = {"best_val_loss": None, "best_step": None, "running_min": None, "restore_checked": False,
             "last_val_loss": None, "skipped_steps": [], "consecutive_skips": 0}
    step = 0
    if resume_from is not None:
        state.update(load_checkpoint(resume_from, setup.model, setup.optimizer, scaler=setup.scaler))
        step = int(state.pop("step"))
        setup.emit("log", {"message": f"resumed from {resume_from.name} (step {step} of {setup.total_steps})"})
    else:
        torch.manual_seed(setup.seed)
    lead = setup.rank == 0
    cache: dict = {}
    last_ckpt = str(resume_from) if resume_from else None
    restore_result = None
    began = time.perf_counter()
    first_step = step
    last_progress = 0.0
    last_loss = None

    def save(at: int) -> str:
        if lead:
            path = save_checkpoint(setup.checkpoints, at, setup.model, setup.optimizer, state, scaler=setup.scaler)
            return str(path)
        return last_ckpt

    def outcome(status: str, message: str) -> Outcome:
        return Outcome(status, step, state["best_step"], state["best_val_loss"], last_ckpt, message,
                       last_train_loss=last_loss, restore_check=restore_result,
                       skipped_steps=list(state["skipped_steps"]))

    while step < setup.total_steps:
        if _stop_everywhere(setup):
            last_ckpt = save(step)
            setup.emit("artifact", {"path": last_ckpt, "label": "checkpoint", "step": step, "reason": "stopped"})
            return outcome(STOPPED, f"stopped at step {step} of {setup.total_steps}; checkpoint saved, "
                                    "resume with `weightgate train resume`")
        setup.current_step = step
        epoch, indices = step_examples(setup, step, cache)
        t0 = time.perf_counter()
        loss, norm, tokens, skipped = train_step(setup, indices)
        elapsed = time.perf_counter() - t0
        step += 1
        last_loss = loss
        state["consecutive_skips"] = state["consecutive_skips"] + 1 if skipped else 0
        if skipped and math.isfinite(loss):
            state["skipped_steps"].append(step)
            setup.emit("log", {"message": f"step {step} skipped by the gradient scaler: inf/nan gradients at scale "
                                          f"{setup.scaler.get_scale() * 2:g}; the scale is now "
                                          f"{setup.scaler.get_scale():g}", "level": "warning"})
            if state["consecutive_skips"] >= MAX_CONSECUTIVE_SKIPS:
                message = (f"training diverged at step {step}: the gradient scaler skipped {MAX_CONSECUTIVE_SKIPS} "
                           f"steps in a row (inf/nan gradients at every scale); stopped. {_kept(state)} Lower "
                           "[training] lr, or train at bf16 or fp32 where the device has them")
                setup.emit("log", {"message": message, "level": "error"})
                return outcome(DIVERGED, message)
            if step % setup.eval_every != 0 and step != setup.total_steps:
                # The weights did not change: no guard, no restore check; journaled, and on to the next step.
                setup.emit("metric", {"step": step, "values": {"step": step, "loss": loss, "skipped": True,
                                                               "grad_scale": setup.scaler.get_scale()}})
                continue
        if not math.isfinite(loss) or (not skipped and not math.isfinite(norm)):
            message = (f"training diverged at step {step}: loss {loss}, grad norm {norm}; stopped. {_kept(state)} "
                       "Lower [training] lr (the seeds say 2e-4 or less) and start a new run")
            setup.emit("log", {"message": message, "level": "error"})
            return outcome(DIVERGED, message)
        if state.get("first_loss") is None:
            state["first_loss"] = loss
        previous = state.get("loss_average")
        average = loss if previous is None else (1 - DIVERGENCE_SMOOTHING) * previous + DIVERGENCE_SMOOTHING * loss
        state["loss_average"] = average
        running_min = state["running_min"]
        # Near zero a few batches can be many times the minimum (0.037 after 0.004) without
        # anything going wrong; an explosion also climbs back towards where the run began.
        floor = DIVERGENCE_FLOOR_SHARE * state["first_loss"]
        if (step > setup.warmup_steps and running_min is not None
                and average > setup.divergence_factor * max(running_min, floor)):
            message = (f"training diverged at step {step}: the loss (averaged over the last steps) {average:.4g} is "
                       f"more than {setup.divergence_factor:g}x its running minimum {running_min:.4g} (and over "
                       f"{setup.divergence_factor * floor:.4g}, {setup.divergence_factor * DIVERGENCE_FLOOR_SHARE:.0%} "
                       f"of the first step's loss); stopped. {_kept(state)} Lower [training] lr and start a new run")
            setup.emit("log", {"message": message, "level": "error"})
            return outcome(DIVERGED, message)
        state["running_min"] = average if running_min is None else min(running_min, average)
        if lead:
            done = step - first_step
            rate = (time.perf_counter() - began) / done
            eta = rate * (setup.total_steps - step)
            setup.emit("metric", {"step": step, "values": {
                "step": step, "epoch": round(epoch + (step - epoch * setup.steps_per_epoch) / setup.steps_per_epoch, 4),
                "loss": loss, "lr": setup.optimizer.param_groups[0]["lr"], "grad_norm": norm,
                "tokens": tokens, "tokens_per_s": round(tokens / elapsed, 1) if elapsed > 0 else None,
                "memory_bytes": _memory_bytes(setup.device), "eta_s": round(eta, 1),
                **({"grad_scale": setup.scaler.get_scale(), "skipped": skipped} if setup.scaler is not None else {})}})
            now = time.perf_counter()
            if now - last_progress >= PROGRESS_EVERY_S or step == setup.total_steps:
                last_progress = now
                setup.emit("progress", {"done": step, "total": setup.total_steps, "unit": "step",
                                        "eta_s": round(eta, 1), "message": f"loss {loss:.4f}"})
        if not state["restore_checked"] and setup.build_fresh is not None:
            state["restore_checked"] = True
            last_ckpt = save(step)
            if lead:
                with torch.random.fork_rng(devices=fork_devices(setup.device)):   # the check must not move the run's RNG
                    restore_result = check_restore(Path(last_ckpt), setup.model, setup.optimizer, setup.build_fresh)
                    if setup.scaler is not None:
                        restore_result = check_scaler_restore(Path(last_ckpt), setup.scaler, setup.make_scaler,
                                                              restore_result)
                if setup.on_restore_check:
                    setup.on_restore_check(restore_result)
            ok = _agree(restore_result["ok"] if lead else True, setup.world, setup.device)
            if not ok:
                message = ("checkpoint restore check failed: " + "; ".join(restore_result["differences"][:3])
                           + ". A run that cannot be resumed exactly is not started")
                setup.emit("log", {"message": message, "level": "error"})
                return outcome(RESTORE_FAILED, message)
            if lead:
                setup.emit("log", {"message": f"checkpoint restore verified at step {step}: "
                                              f"{restore_result['adapter_tensors']} adapter tensors and "
                                              f"{restore_result['optimizer_tensors']} optimizer tensors bit-identical"})
        if step % setup.eval_every == 0 or step == setup.total_steps:
            val = validation_loss(setup)
            state["last_val_loss"] = val
            is_best = state["best_val_loss"] is None or val < state["best_val_loss"]
            if is_best:
                state["best_val_loss"], state["best_step"] = val, step
                if lead:
                    save_best(setup.run_dir, setup.model)
                    if setup.on_best:
                        setup.on_best(step, val)
            if lead:
                setup.emit("metric", {"step": step, "values": {"step": step, "val_loss": val}})
            last_ckpt = save(step)
            if lead:
                setup.emit("artifact", {"path": last_ckpt, "label": "checkpoint", "step": step, "val_loss": val,
                                        "is_best": is_best, "best_path": str(setup.run_dir / "best")})
        if setup.throttle_s:
            time.sleep(setup.throttle_s)
    return outcome(FINISHED, f"finished {step} steps; best val loss {state['best_val_loss']:.4f} "
                             f"at step {state['best_step']}")


def _stop_everywhere(setup: LoopSetup) -> bool:
    """Every rank stops at the same step if any was asked to (else collectives would hang)."""
    local = bool(setup.should_stop())
    if setup.world == 1:
        return local
    import torch  # lazy: torch only where it runs, never at import

    flag = torch.tensor([1.0 if local else 0.0], device=setup.device)   # nccl: a device tensor
    _all_reduce(flag, setup.world)
    return bool(flag.item() > 0)


def _agree(ok: bool, world: int, device: str = "cpu") -> bool:
    """True on every rank only if it is true on every rank."""
    if world == 1:
        return ok
    import torch  # lazy: torch only where it runs, never at import

    flag = torch.tensor([0.0 if ok else 1.0], device=device)
    _all_reduce(flag, world)
    return flag.item() == 0
