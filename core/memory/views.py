"""What the Memory screen shows: the locked model's layout and the workspace's targets, read
once (a thread worker), then a memory report per keystroke: pure arithmetic, so the bars
re-draw at once when the context, batch or training mode changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightgate.core.engine.fingerprints import plain
from weightgate.core.memory.estimate import candidate_precisions
from weightgate.core.memory.precision import (
    MemoryReport,
    estimate_report,
    layout_for,
    resolve_budget,
    resolve_device,
    tokenizer_bytes,
    training_setup,
    workspace_metadata,
    workspace_targets,
)


@dataclass
class MemoryInputs:
    """What the estimate needs, read once: the layout and everything around it."""

    source: str = ""
    layout: Any = None
    device: str = "cpu"
    budget: Any = None
    headroom: float = 0.3
    context: int | None = None
    batch: int = 1
    model_context: int | None = None
    tokenizer_bytes: int = 0
    targets: dict = field(default_factory=dict)
    error: str | None = None


def read_memory_inputs(ws, devices: Any = None) -> MemoryInputs:
    """The locked model's layout and the workspace's targets (thread worker: reads files)."""

    meta = workspace_metadata(ws)
    targets = workspace_targets(plain(ws.config()), config_path=ws.config_path)
    where, snap = resolve_device(None, devices)
    budget = resolve_budget(where, snap, budget_gib=targets["budget_gib"])
    return MemoryInputs(str(meta.source), layout_for(meta), where, budget, targets["headroom"],
                        targets["context"] or meta.context_length, targets["batch"], meta.context_length,
                        tokenizer_bytes(meta), targets)


def main_precisions(layout) -> list[str]:
    """The candidates without the second of each same-size pair (fp16 or bf16, whichever is not
    native; fp4): what the bars show unless every precision is asked for."""

    native = layout.native_precision
    second16 = "bf16" if native == "fp16" else "fp16"
    return [p for p in candidate_precisions(layout) if p not in (second16, "fp4")]


def memory_report(inputs: MemoryInputs, context: int, batch: int, train: str | None,
                 all_precisions: bool = False) -> MemoryReport:
    setup = training_setup(train, inputs.targets, context) if train else None
    return estimate_report(inputs.layout, inputs.source, context=context, batch=batch, device=inputs.device,
                           budget=inputs.budget, headroom=inputs.headroom, train_setup=setup,
                           precisions=None if all_precisions else main_precisions(inputs.layout),
                           tokenizer_bytes=inputs.tokenizer_bytes, model_context=inputs.model_context)
