"""Which precision to run (and train) at: estimates for a model source or the workspace's model,
the largest precision that fits, a plain-text report, and the recorded decision.

Torch-free: metadata only (safetensors headers and config.json; no weights are read).

    estimate_for_source(spec, context=, batch=, train=, ...)  -> MemoryReport   (`weightgate memory estimate`)
    render_estimate_text(report)                               -> str
    recommend(estimates)                                       -> Choice
    record_fit(ws, precision=None, ...)                        -> FitResult     (`weightgate memory fit`)

The order of preference follows the seeds: the native dtype if it fits, then 16-bit, then 8-bit
(LLM.int8) before 4-bit (NF4, then FP4); never the smallest available when a larger one fits.
Every precision (fp32, bf16, fp16, int8, nf4, fp4) is estimated and reported; fp32 above a
16-bit model's native dtype is shown but never chosen. Training: `--train lora` is LoRA on the
32/16-bit and int8 bases, `--train qlora` LoRA on the 4-bit ones (which is what QLoRA is); the
training choice is written as [decisions] training_precision / training_method / training_reason.
[settings] headroom must be 0.2-0.4; anything else is an InputError at its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.lock import model_dir, read_lock
from weightgate.core.engine.training_config import read_training_config
from weightgate.core.engine.workspace import key_line
from weightgate.core.memory.capability import capability_for, half_choice
from weightgate.core.memory.devices import budget_bytes, snapshot
from weightgate.core.memory.estimate import (
    FOUR_BIT,
    Estimate,
    GiB,
    TrainingSetup,
    candidate_precisions,
    estimate,
    shown_precisions,
    size_text,
)
from weightgate.core.memory.layout import SAFETENSORS_DTYPES, Layout, layout_from_config, layout_from_tensors
from weightgate.core.weights.metadata import fetch_metadata
from weightgate.core.weights.safetensors_format import validate_safetensors

DEFAULT_HEADROOM = 0.3
HEADROOM_RANGE = (0.2, 0.4)      # DESIGN and the seeds: budget 20-40% headroom over the estimate
DEFAULT_TRAIN_SEQ = 2048
TRAIN_METHODS = ("lora", "qlora")
METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA"}


# --- inputs -------------------------------------------------------------------------------------


def layout_for(meta: Any) -> Layout:
    """The model's layout from its metadata: exact from the safetensors headers of a local model,
    else the config's arithmetic reconciled with the exact parameter count from the headers."""
    config = dict(meta.config or {}) or _config_from_fields(meta)
    if meta.source.kind == "local" and meta.weight_format == "safetensors" and meta.weight_files:
        root = Path(meta.source.path)
        tensors = [(t.name, t.shape, t.dtype) for file in meta.weight_files
                   for t in validate_safetensors(root / file).tensors]
        return layout_from_tensors(tensors, config)
    exact = meta.parameter_count if meta.weight_format == "safetensors" and meta.parameters else None
    layout = layout_from_config(config, exact)
    if meta.parameters and meta.weight_format == "safetensors":
        dominant = max(meta.parameters, key=meta.parameters.get)
        layout.native_dtype = SAFETENSORS_DTYPES.get(dominant, layout.native_dtype)
    if meta.weight_format == "gguf":
        layout.warnings.append("a GGUF source: the estimate is for loading it into transformers at each precision")
    return layout


def _config_from_fields(meta: Any) -> dict:
    return {k: v for k, v in {
        "model_type": meta.model_type, "hidden_size": meta.hidden_size, "num_hidden_layers": meta.num_layers,
        "num_attention_heads": meta.num_attention_heads, "num_key_value_heads": meta.num_kv_heads,
        "head_dim": meta.head_dim, "vocab_size": meta.vocab_size, "sliding_window": meta.sliding_window,
        "max_position_embeddings": meta.context_length}.items() if v is not None}


def tokenizer_bytes(meta: Any) -> int:
    info = meta.file("tokenizer.json") if hasattr(meta, "file") else None
    return int(info.size or 0) if info is not None else 0


@dataclass
class Budget:
    bytes: int | None
    source: str                    # "requirements" | "device" | "given" | "unknown"
    detail: str = ""


def resolve_device(device: str | None, snap: Any = None) -> tuple[str, Any]:
    """("cuda" | "cpu", the device snapshot). auto: a GPU if NVML reports one."""

    snap = snap if snap is not None else snapshot()
    spec = (device or "auto").strip().lower()
    if spec == "auto":
        usable = [g for g in snap.gpus if g.usable and g.memory_total]
        return ("cuda" if usable else "cpu"), snap
    if spec.startswith(("cuda", "gpu")):
        return "cuda", snap
    if spec == "cpu":
        return "cpu", snap
    raise InputError(f"unknown device {device!r}", hint="auto, cpu, cuda or cuda:N")


def resolve_budget(device: str, snap: Any, *, budget_gib: float | None = None, device_spec: str | None = None) -> Budget:
    """[requirements.ceilings] memory_budget_gib when set (> 0), else the device's free memory."""

    if budget_gib and budget_gib > 0:
        return Budget(int(budget_gib * GiB), "requirements", f"memory_budget_gib = {budget_gib:g}")
    spec = device_spec if device_spec and device_spec != "auto" else ("cuda" if device == "cuda" else "cpu")
    try:
        free = budget_bytes(snap, spec)
    except ValueError:
        free = budget_bytes(snap, "auto")
    if free is None:
        return Budget(None, "unknown", "no memory_budget_gib and the device reports no free memory")
    where = "free GPU memory" if device == "cuda" else "available host RAM"
    return Budget(int(free), "device", f"{where} now")


# --- the report -------------------------------------------------------------------------------


@dataclass
class Choice:
    precision: str | None          # the largest that fits (None: nothing fits / budget unknown)
    reason: str
    method: str = ""               # training only: "lora" | "qlora", always the method asked for
    considered: list[dict] = field(default_factory=list)   # every candidate, in order: required, fits


@dataclass
class MemoryReport:
    source: str
    layout: Layout
    device: str
    context: int
    batch: int
    budget: Budget
    headroom: float
    inference: list[Estimate]
    training: list[Estimate] = field(default_factory=list)
    train_setup: TrainingSetup | None = None
    choice: Choice | None = None
    training_choice: Choice | None = None
    notes: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)   # the order of preference (the rest: shown only)

    def estimate_for(self, precision: str) -> Estimate | None:
        return next((e for e in self.inference if e.precision == precision), None)

    def training_estimate_for(self, precision: str) -> Estimate | None:
        return next((e for e in self.training if e.precision == precision), None)

    def to_dict(self) -> dict:
        return {"source": self.source, "layout": self.layout.to_dict(), "device": self.device, "context": self.context,
                "batch": self.batch, "budget": vars(self.budget), "headroom": self.headroom,
                "inference": [e.to_dict() for e in self.inference],
                "training": [e.to_dict() for e in self.training],
                "train_setup": self.train_setup.to_dict() if self.train_setup else None,
                "choice": vars(self.choice) if self.choice else None,
                "training_choice": vars(self.training_choice) if self.training_choice else None,
                "candidates": self.candidates, "notes": self.notes}


def recommend(estimates: list[Estimate], *, training: bool = False, method: str = "") -> Choice:
    """The first (largest) precision of `estimates` (candidates in order of preference) that fits
    with the headroom. `method`: the training method asked for; the choice keeps it (LoRA is
    never silently turned into QLoRA: the caller offers only the bases that method trains on)."""
    considered = [{"precision": e.precision, "total": e.total, "required": e.required, "fits": e.fits}
                  for e in estimates]
    if not estimates:
        return Choice(None, "nothing to choose from", method)
    if estimates[0].budget is None:
        return Choice(None, "the memory budget is unknown: set [requirements.ceilings] memory_budget_gib",
                      method, considered)
    what = f"{METHOD_NAMES.get(method, method)} training" if training else "inference"
    larger: list[str] = []
    for est in estimates:
        if est.fits:
            why = (f"{est.precision} is the largest precision whose {what} estimate fits: "
                   f"{size_text(est.total)} + {est.headroom:.0%} headroom = {size_text(est.required)} <= "
                   f"budget {size_text(est.budget)}")
            if larger:
                why += f" ({', '.join(larger)} would not)"
            return Choice(est.precision, why, method, considered)
        larger.append(f"{est.precision} needs {size_text(est.required)}")
    smallest = estimates[-1]
    return Choice(None, f"nothing fits the budget of {size_text(smallest.budget)} for {what}: even "
                        f"{smallest.precision} needs {size_text(smallest.required)} with {smallest.headroom:.0%} headroom; "
                        "shorten the context, lower the batch, pick a smaller model, or offload as a last resort",
                  method, considered)


def estimate_report(layout: Layout, source: str, *, context: int | None = None, batch: int = 1, device: str = "cpu",
                    budget: Budget | None = None, headroom: float = DEFAULT_HEADROOM, train: str | None = None,
                    train_setup: TrainingSetup | None = None, precisions: list[str] | None = None,
                    tokenizer_bytes: int = 0, model_context: int | None = None,
                    capability: Any = None) -> MemoryReport:
    """Every precision's inference (and, with train, training) estimate and the choices. Pure:
    the TUI calls this on every key press with a layout it computed once.

    `precisions`: which to estimate (default: all six, fp32 bf16 fp16 int8 nf4 fp4). The choice
    is made among the candidates (`core.memory.estimate.candidate_precisions`: native first, 8-bit before
    4-bit); fp32 above a 16-bit model's native dtype is shown, never chosen. Training: LoRA is
    estimated on the 32/16-bit and int8 bases, QLoRA on the 4-bit ones (LoRA on a 4-bit base is
    QLoRA by definition, and `weightgate train start` runs it as such), so the training choice is always
    the method asked for; when LoRA fits nowhere, the reason says what QLoRA would need."""
    notes = list(layout.warnings)
    if not context:
        context = model_context or 4096
        notes.append(f"no target context set: using {'the model maximum' if model_context else 'a default of'} "
                     f"{context} (set [requirements] context_length)")
    if model_context and context > model_context:
        notes.append(f"the target context {context} exceeds the model's {model_context}")
    budget = budget or Budget(None, "unknown")
    order = list(precisions or shown_precisions(layout))
    cap = capability_for(device, capability)
    bf16 = cap.kind != "cuda" or cap.bf16
    if not bf16:
        notes.append(half_choice(cap)[1] + ": bf16 is shown, not chosen")
    candidates = [p for p in candidate_precisions(layout, bf16=bf16) if p in order]
    common = dict(device=device, budget=budget.bytes, headroom=headroom, tokenizer_bytes=tokenizer_bytes,
                  capability=capability)
    inference = [estimate(layout, p, batch=batch, seq=context, **common) for p in order]
    report = MemoryReport(source, layout, device, context, batch, budget, headroom, inference, notes=notes,
                          candidates=candidates)
    report.choice = recommend([e for p in candidates for e in inference if e.precision == p])
    if train or train_setup:
        setup = train_setup or TrainingSetup(method=train, batch=batch, seq=min(context, DEFAULT_TRAIN_SEQ))
        if setup.method not in TRAIN_METHODS:
            raise InputError(f"unknown training method {setup.method!r}", hint="lora or qlora")
        report.train_setup = setup
        notes += setup.notes
        if isinstance(setup.targets, list):
            roles = {lin.role for lin in layout.linears}
            missing = [t for t in setup.targets if t not in roles]
            if missing:
                notes.append(f"[training] target_modules: the model has no Linear named {', '.join(missing)} "
                             f"(its Linear modules: {', '.join(sorted(roles))})")
        four_bit = setup.method == "qlora"
        train_order = [p for p in order if (p in FOUR_BIT) == four_bit]
        report.training = [estimate(layout, p, training=setup, **common) for p in train_order]
        report.training_choice = recommend([e for p in candidates for e in report.training if e.precision == p],
                                           training=True, method=setup.method)
        if not four_bit and report.training_choice.precision is None and budget.bytes is not None:
            # What --train qlora would estimate: the workspace's [training] settings apply to both
            # methods alike; without them, QLoRA's own defaults (all linear, checkpointing on).
            other = (replace(setup, method="qlora", notes=[]) if train_setup is not None
                     else TrainingSetup(method="qlora", batch=setup.batch, seq=setup.seq))
            qlora = estimate(layout, "nf4", training=other, **common)
            report.training_choice.reason += (
                f". QLoRA (LoRA on an nf4 base: --train qlora) needs {size_text(qlora.required)} with "
                f"{report.headroom:.0%} headroom: " + ("it fits" if qlora.fits else "it does not fit either"))
    return report


def estimate_for_source(spec: str, *, context: int | None = None, batch: int = 1, train: str | None = None,
                        device: str | None = None, budget_gib: float | None = None,
                        headroom: float = DEFAULT_HEADROOM, precisions: list[str] | None = None,
                        metadata: Any = None, snapshot: Any = None, train_setup: TrainingSetup | None = None
                        ) -> MemoryReport:
    """`weightgate memory estimate MODEL`: from hub metadata (headers by range request, config.json: no
    weights downloaded), a local directory, or a GGUF file."""

    meta = metadata if metadata is not None else fetch_metadata(spec)
    layout = layout_for(meta)
    where, snap = resolve_device(device, snapshot)
    budget = resolve_budget(where, snap, budget_gib=budget_gib, device_spec=device)
    return estimate_report(layout, str(meta.source), context=context, batch=batch, device=where, budget=budget,
                           headroom=headroom, train=train, train_setup=train_setup, precisions=precisions,
                           tokenizer_bytes=tokenizer_bytes(meta), model_context=meta.context_length)


# --- the workspace ----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _config_text(config_path: Path | None, text: str | None) -> str | None:
    if text is None and config_path is not None:
        try:
            text = Path(config_path).read_text(encoding="utf-8")
        except OSError:
            return None
    return text


def check_headroom(value: Any, *, config_path: Path | None = None, text: str | None = None) -> float:
    """[settings] headroom: absent -> the default (0.3); else a fraction from 0.2 to 0.4 (DESIGN and
    the seeds: budget 20-40% headroom). Anything else is an InputError naming weightgate.toml, the
    line and the key: a headroom is never replaced silently."""
    if value is None:
        return DEFAULT_HEADROOM
    number = _number(value)
    low, high = HEADROOM_RANGE
    if number is not None and low <= number <= high:
        return number

    text = _config_text(config_path, text)
    line = key_line(text, "settings", "headroom") if text else None
    if number is not None and low * 100 <= number <= high * 100:
        hint = f"a fraction, not a percentage: headroom = {number / 100:g} for {number:g}%"
    else:
        hint = (f"headroom = {DEFAULT_HEADROOM} budgets 30%: the estimate x {1 + DEFAULT_HEADROOM:g} must fit the "
                "memory budget; use 0.2 for a well-measured setup, 0.4 for a noisy one")
    raise InputError(f"[settings] headroom = {value!r}: must be a number from {low} to {high} "
                     f"({low:.0%}-{high:.0%} of the estimate kept free)",
                     path=Path(config_path) if config_path else Path("weightgate.toml"), line=line, hint=hint)


def workspace_targets(config: dict, *, config_path: Path | None = None, text: str | None = None) -> dict:
    """Context, batch, headroom, budget and training settings from weightgate.toml:
    [requirements] context_length / batch_size (or [settings]), [settings] headroom (checked:
    see check_headroom), [requirements.ceilings] memory_budget_gib, and the [training] table as
    it is (`training_setup` reads it the way `weightgate train start` does). `config_path` (or its
    `text`) lets a bad value be reported at its line."""
    req = config.get("requirements") if isinstance(config.get("requirements"), dict) else {}
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    ceilings = req.get("ceilings") if isinstance(req.get("ceilings"), dict) else {}
    training = config.get("training") if isinstance(config.get("training"), dict) else {}

    def pick(key: str) -> int | None:
        for table in (req, settings):
            value = _number(table.get(key))
            if value and value > 0:
                return int(value)
        return None

    headroom = check_headroom(settings.get("headroom"), config_path=config_path, text=text)
    return {"context": pick("context_length"), "batch": pick("batch_size") or 1, "headroom": headroom,
            "budget_gib": _number(ceilings.get("memory_budget_gib")) or None, "training": dict(training),
            "config_path": str(config_path) if config_path else None}


def training_setup(train: str, targets: dict, context: int) -> TrainingSetup:
    """The training estimate's setup from the [training] table, read by the trainer's own parser
    (core.engine.training_config.read_training_config: the same keys, defaults and checks, so a bad
    value is the same InputError `weightgate train start` gives): r, target_modules ("auto" = every
    attention and MLP projection, as the trainer resolves it), dropout, gradient_checkpointing,
    max_seq (the longest example the trainer accepts; "auto": the trainer uses the longest
    example, estimated here at min(target context, 2048)), micro_batch ("auto": the trainer picks
    the largest that fits; estimated here at 1, the least a run needs)."""

    path = targets.get("config_path")
    table = targets.get("training") or {}
    try:    # no file read on the happy path: the TUI calls this on every key press
        cfg = read_training_config(table, text="")
    except InputError:
        cfg = read_training_config(table, config_path=Path(path) if path else None)   # again, for the line
    notes = []
    if cfg.max_seq == "auto":
        seq = min(context, DEFAULT_TRAIN_SEQ)
        notes.append(f"[training] max_seq = \"auto\": the trainer uses the longest example; estimated at {seq} tokens")
    else:
        seq = int(cfg.max_seq)
    if cfg.micro_batch == "auto":
        batch = 1
        notes.append("[training] micro_batch = \"auto\": the trainer picks the largest that fits; estimated at 1")
    else:
        batch = int(cfg.micro_batch)
    attention = cfg.attn_implementation if cfg.attn_implementation != "auto" else "sdpa"   # flash: same memory
    return TrainingSetup(method=train, r=cfg.r, targets=cfg.target_modules, batch=batch, seq=seq,
                         gradient_checkpointing=cfg.gradient_checkpointing, dropout=cfg.dropout, notes=notes,
                         optimizer=cfg.optimizer, attn_implementation=attention)


def workspace_metadata(ws: Any) -> Any:
    """Metadata of the workspace's locked model (its local files; no network)."""

    lock = read_lock(ws)
    if lock is None:
        raise InputError("no model locked in this workspace", path=ws.lock_path,
                         hint="choose and fetch a model first: weightgate weights choose SOURCE; weightgate weights fetch")
    return fetch_metadata(str(model_dir(ws, lock)))


def estimate_for_workspace(ws: Any, *, context: int | None = None, batch: int | None = None, train: str | None = None,
                           device: str | None = None, snapshot: Any = None, metadata: Any = None,
                           capability: Any = None) -> MemoryReport:
    config = plain(ws.config())
    targets = workspace_targets(config, config_path=ws.config_path)
    meta = metadata if metadata is not None else workspace_metadata(ws)
    context = context or targets["context"] or meta.context_length
    batch = batch or targets["batch"]
    if train is not None and train not in TRAIN_METHODS:
        raise InputError(f"unknown training method {train!r}", hint="lora or qlora")
    setup = training_setup(train, targets, context or DEFAULT_TRAIN_SEQ) if train else None
    layout = layout_for(meta)
    where, snap = resolve_device(device, snapshot)
    budget = resolve_budget(where, snap, budget_gib=targets["budget_gib"], device_spec=device)
    return estimate_report(layout, str(meta.source), context=context, batch=batch, device=where, budget=budget,
                           headroom=targets["headroom"], train_setup=setup, tokenizer_bytes=tokenizer_bytes(meta),
                           model_context=meta.context_length, capability=capability)


# --- text -------------------------------------------------------------------------------------
