"""Micro batch x gradient accumulation x processes from the target effective batch and the
memory estimate; step counts and the warm-up.

The micro batch is the largest divisor of (effective batch / processes) whose LoRA/QLoRA
training estimate (core.memory.estimate) at the longest example's length, plus the workspace's headroom,
fits the device budget (core.memory.precision: [requirements.ceilings] memory_budget_gib, else the
device's free memory); accumulation makes up the rest, so micro x accumulation x processes is
exactly the effective batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from weightgate.core.engine.errors import InputError


@dataclass
class BatchPlan:
    micro_batch: int
    accumulation: int
    processes: int
    effective_batch: int
    seq: int
    estimate_bytes: int | None        # the chosen micro batch's training estimate (total)
    required_bytes: int | None        # with headroom
    budget_bytes: int | None
    budget_source: str
    fits: bool | None
    method: str
    tried: list[dict]
    budget_detail: str = ""           # where the budget comes from, in words (core.memory.precision.Budget.detail)
    auto: bool = True                 # the micro batch was chosen ([training] micro_batch = "auto")

    def to_dict(self) -> dict:
        return asdict(self)

    def require_fit(self) -> None:
        """An InputError when the chosen micro batch does not fit: what it needs (with headroom),
        the budget and where it comes from, and what to change."""
        if self.fits is not False:
            return
        mib = 1 << 20
        budget = f"{self.budget_bytes / mib:,.0f} MiB" if self.budget_bytes else "unknown"
        source = self.budget_detail or self.budget_source
        which = f"even micro batch {self.micro_batch}" if self.auto else \
            f"[training] micro_batch {self.micro_batch}"
        needs = f"{self.required_bytes / mib:,.0f} MiB with headroom" if self.required_bytes else "more"
        estimate = f" (estimate {self.estimate_bytes / mib:,.0f} MiB)" if self.estimate_bytes else ""
        changes = []
        if not self.auto:
            changes.append('set [training] micro_batch = "auto" (accumulation makes up the effective batch)')
        if self.method != "qlora":
            changes.append('decide a 4-bit precision for QLoRA ([decisions] precision = "nf4")')
        changes += ["set [training] gradient_checkpointing = true",
                    f"shorten or split the longest examples (the plan is sized for {self.seq} tokens)"]
        if self.budget_source == "requirements":
            changes.append("raise [requirements.ceilings] memory_budget_gib if the device really has more")
        elif self.budget_source == "device":
            changes.append("free memory on the device")
        raise InputError(f"training does not fit: {which} at {self.seq} tokens ({self.method}, "
                         f"{self.processes} process{'es' if self.processes != 1 else ''}) needs {needs}{estimate}, "
                         f"the budget is {budget} ({source})", hint="; or ".join(changes))


def divisors_desc(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def plan_batches(*, effective_batch: int, processes: int, micro_batch: int | str, estimate_at: Any,
                 budget_bytes: int | None, budget_source: str, seq: int, method: str,
                 budget_detail: str = "") -> BatchPlan:
    """`estimate_at(micro)` returns a core.memory.estimate Estimate for one process at that micro batch
    (.total, .required with headroom, .fits: None when the budget is unknown). The plan says
    fits=False when nothing fits; BatchPlan.require_fit turns that into the error."""
    if effective_batch % processes:
        raise InputError(f"effective batch {effective_batch} is not divisible by {processes} processes",
                         hint=f"set [training] effective_batch to a multiple of {processes}")
    per_process = effective_batch // processes
    candidates = divisors_desc(per_process)
    if micro_batch != "auto":
        if per_process % int(micro_batch):
            raise InputError(f"micro_batch {micro_batch} does not divide the effective batch per process "
                             f"({per_process})", hint=f"pick one of {', '.join(map(str, candidates))}, or \"auto\"")
        candidates = [int(micro_batch)]
    tried = []
    chosen = None
    for micro in candidates:
        est = estimate_at(micro)
        tried.append({"micro_batch": micro, "total": est.total, "required": est.required, "fits": est.fits})
        if est.fits is not False:
            chosen = (micro, est)
            break
    if chosen is None:
        micro, est = candidates[-1], est   # the smallest tried (1 when auto), the last estimate
        fits = False
    else:
        micro, est = chosen
        fits = est.fits
    return BatchPlan(micro_batch=micro, accumulation=per_process // micro, processes=processes,
                     effective_batch=effective_batch, seq=seq, estimate_bytes=est.total, required_bytes=est.required,
                     budget_bytes=budget_bytes, budget_source=budget_source, fits=fits, method=method, tried=tried,
                     budget_detail=budget_detail, auto=micro_batch == "auto")


def steps_per_epoch(examples: int, effective_batch: int) -> int:
    return math.ceil(examples / effective_batch)


def total_steps(examples: int, effective_batch: int, epochs: int, max_steps: int | None = None) -> int:
    full = steps_per_epoch(examples, effective_batch) * epochs
    return min(full, max_steps) if max_steps else full


def warmup_steps(total: int, ratio: float) -> int:
    return math.ceil(total * ratio) if ratio > 0 else 0


def lr_at(step: int, *, lr: float, warmup: int, total: int) -> float:
    """Linear warm-up from 0, then linear decay to 0: transformers' `linear` schedule, step for
    step (step = optimizer steps already taken), so a Trainer baseline sees the same rates."""
    if step < warmup:
        return lr * step / max(1, warmup)
    return lr * max(0.0, (total - step) / max(1, total - warmup))
