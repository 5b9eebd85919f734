"""Which precision to run (and train) at: estimates for a model source or the workspace's model,
the largest precision that fits, a plain-text report, and the recorded decision.

Torch-free: metadata only (safetensors headers and config.json; no weights are read).

    estimate_for_source(spec, context=, batch=, train=, ...)  -> MemoryReport   (`weightgate estimate`)
    render_estimate_text(report)                               -> str
    recommend(estimates)                                       -> Choice
    record_fit(ws, precision=None, ...)                        -> FitResult     (`weightgate fit`)

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

import tomlkit

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import record_result
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.lock import model_dir, read_lock
from weightgate.core.engine.training_config import read_training_config
from weightgate.core.engine.workspace import key_line
from weightgate.core.memory.devices import budget_bytes, snapshot
from weightgate.core.memory.estimate import (
    FOUR_BIT,
    SAFETENSORS_DTYPES,
    Estimate,
    GiB,
    Layout,
    MiB,
    TrainingSetup,
    candidate_precisions,
    canonical_precision,
    estimate,
    layout_from_config,
    layout_from_tensors,
    shown_precisions,
)
from weightgate.core.weights.safetensors_format import validate_safetensors
from weightgate.core.weights.sources import fetch_metadata

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
                   f"{_size(est.total)} + {est.headroom:.0%} headroom = {_size(est.required)} <= "
                   f"budget {_size(est.budget)}")
            if larger:
                why += f" ({', '.join(larger)} would not)"
            return Choice(est.precision, why, method, considered)
        larger.append(f"{est.precision} needs {_size(est.required)}")
    smallest = estimates[-1]
    return Choice(None, f"nothing fits the budget of {_size(smallest.budget)} for {what}: even "
                        f"{smallest.precision} needs {_size(smallest.required)} with {smallest.headroom:.0%} headroom; "
                        "shorten the context, lower the batch, pick a smaller model, or offload as a last resort",
                  method, considered)


def estimate_report(layout: Layout, source: str, *, context: int | None = None, batch: int = 1, device: str = "cpu",
                    budget: Budget | None = None, headroom: float = DEFAULT_HEADROOM, train: str | None = None,
                    train_setup: TrainingSetup | None = None, precisions: list[str] | None = None,
                    tokenizer_bytes: int = 0, model_context: int | None = None) -> MemoryReport:
    """Every precision's inference (and, with train, training) estimate and the choices. Pure:
    the TUI calls this on every key press with a layout it computed once.

    `precisions`: which to estimate (default: all six, fp32 bf16 fp16 int8 nf4 fp4). The choice
    is made among the candidates (`core.memory.estimate.candidate_precisions`: native first, 8-bit before
    4-bit); fp32 above a 16-bit model's native dtype is shown, never chosen. Training: LoRA is
    estimated on the 32/16-bit and int8 bases, QLoRA on the 4-bit ones (LoRA on a 4-bit base is
    QLoRA by definition, and `weightgate train` runs it as such), so the training choice is always
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
    candidates = [p for p in candidate_precisions(layout) if p in order]
    common = dict(device=device, budget=budget.bytes, headroom=headroom, tokenizer_bytes=tokenizer_bytes)
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
                f". QLoRA (LoRA on an nf4 base: --train qlora) needs {_size(qlora.required)} with "
                f"{report.headroom:.0%} headroom: " + ("it fits" if qlora.fits else "it does not fit either"))
    return report


def estimate_for_source(spec: str, *, context: int | None = None, batch: int = 1, train: str | None = None,
                        device: str | None = None, budget_gib: float | None = None,
                        headroom: float = DEFAULT_HEADROOM, precisions: list[str] | None = None,
                        metadata: Any = None, snapshot: Any = None, train_setup: TrainingSetup | None = None
                        ) -> MemoryReport:
    """`weightgate estimate MODEL`: from hub metadata (headers by range request, config.json: no
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
    it is (`training_setup` reads it the way `weightgate train` does). `config_path` (or its
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
    value is the same InputError `weightgate train` gives): r, target_modules ("auto" = every
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
    return TrainingSetup(method=train, r=cfg.r, targets=cfg.target_modules, batch=batch, seq=seq,
                         gradient_checkpointing=cfg.gradient_checkpointing, dropout=cfg.dropout, notes=notes)


def workspace_metadata(ws: Any) -> Any:
    """Metadata of the workspace's locked model (its local files; no network)."""

    lock = read_lock(ws)
    if lock is None:
        raise InputError("no model locked in this workspace", path=ws.lock_path,
                         hint="choose and fetch a model first: weightgate choose SOURCE; weightgate fetch")
    return fetch_metadata(str(model_dir(ws, lock)))


def estimate_for_workspace(ws: Any, *, context: int | None = None, batch: int | None = None, train: str | None = None,
                           device: str | None = None, snapshot: Any = None, metadata: Any = None) -> MemoryReport:
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
                           model_context=meta.context_length)


@dataclass
class FitResult:
    report: MemoryReport
    precision: str | None          # what [decisions] precision now says (None: nothing written)
    recommended: str | None
    reason: str
    evidence: dict[str, str]       # item -> status recorded
    training_precision: str | None = None   # [decisions] training_precision written (None: not asked / nothing fits)
    training_method: str = ""               # [decisions] training_method: the method asked for
    training_reason: str = ""


def _largest_reason(report: MemoryReport, chosen: str) -> tuple[str, str]:
    best = report.choice.precision if report.choice else None
    order = report.candidates or [e.precision for e in report.inference]
    if best is None:
        return "fail", report.choice.reason if report.choice else "nothing fits"
    if chosen == best:
        return "pass", f"{chosen} is the largest precision that fits"
    if chosen in order and best in order and order.index(chosen) > order.index(best):
        return "fail", (f"{chosen} chosen, but {best} fits too and comes first (native, 16-bit, 8-bit before 4-bit): "
                        "quantize only as far as needed")
    est = report.estimate_for(chosen)
    if chosen not in order and est is not None and est.fits:
        return "pass", (f"{chosen} chosen: above the native {report.layout.native_precision} (it adds memory, not "
                        "precision) and it fits")
    return "fail", f"{chosen} does not fit; the largest that fits is {best}"


def record_fit(ws: Any, precision: str | None = None, *, context: int | None = None, batch: int | None = None,
               train: str | None = None, device: str | None = None, snapshot: Any = None,
               metadata: Any = None) -> FitResult:
    """`weightgate fit`: estimate the workspace's model, choose the largest precision that fits
    (or take `precision` as the person's choice), write [decisions] precision and
    precision_reason, and record evidence for memory.weights, memory.kv_cache, memory.fits and
    memory.largest_precision (values: the breakdown). With `train` ("lora" | "qlora") the
    training choice is written too: [decisions] training_precision, training_method (the method
    asked for) and training_reason. Nothing is written for a choice when nothing fits (the
    earlier decision, if any, stays); the failing evidence / the result's reason says why.
    Writes go through tomlkit: comments and order survive."""

    report = estimate_for_workspace(ws, context=context, batch=batch, train=train, device=device,
                                    snapshot=snapshot, metadata=metadata)
    recommended = report.choice.precision if report.choice else None
    if precision is not None:
        chosen = canonical_precision(precision, report.layout.native_precision)
        if report.estimate_for(chosen) is None:
            report.inference.append(estimate(report.layout, chosen, batch=report.batch, seq=report.context,
                                             device=report.device, budget=report.budget.bytes,
                                             headroom=report.headroom))
        reason = f"chosen by hand; {report.choice.reason if report.choice else ''}".strip("; ")
    else:
        chosen = recommended
        reason = report.choice.reason if report.choice else "no estimate"
    training = report.training_choice
    train_precision = training.precision if training else None
    train_reason = training.reason if training else ""
    if report.train_setup is not None and train_precision is not None:
        s = report.train_setup
        train_reason = (f"{METHOD_NAMES[s.method]} r={s.r}, micro batch {s.batch} x {s.seq} tokens, gradient "
                        f"checkpointing {'on' if s.gradient_checkpointing else 'off'}: {train_reason}")
    if chosen is not None or train_precision is not None:
        def change(doc) -> None:
            if "decisions" not in doc:
                doc["decisions"] = tomlkit.table()
            decisions = doc["decisions"]
            if chosen is not None:
                decisions["precision"] = chosen
                decisions["precision_reason"] = reason
            if train_precision is not None:
                decisions["training_precision"] = train_precision
                decisions["training_method"] = training.method
                decisions["training_reason"] = train_reason
        ws.update_config(change)
    statuses = _record_memory_evidence(ws, report, chosen, record_result)
    return FitResult(report, chosen, recommended, reason, statuses, train_precision,
                     training.method if training else "", train_reason)


def _record_memory_evidence(ws: Any, report: MemoryReport, chosen: str | None, record_result) -> dict[str, str]:
    est = report.estimate_for(chosen) if chosen else None
    basis = {"source": report.source, "layout_source": report.layout.source, "device": report.device,
             "parameters": report.layout.parameter_count, "context": report.context, "batch": report.batch,
             "headroom": report.headroom, "budget": report.budget.bytes, "budget_source": report.budget.source}
    per_precision = {e.precision: {"breakdown": e.breakdown, "total": e.total, "required": e.required, "fits": e.fits}
                     for e in report.inference}
    statuses: dict[str, str] = {}
    weights = {e.precision: e.breakdown["weights"] for e in report.inference}
    record_result(ws, "memory.weights", "pass", {**basis, "weights": weights},
                  note=", ".join(f"{p} {_size(b)}" for p, b in weights.items()))
    statuses["memory.weights"] = "pass"
    shown = est or report.inference[-1]
    kv_note = (f"KV cache for {report.context} tokens x batch {report.batch} at {shown.precision}: "
               f"{_size(shown.breakdown['kv_cache'])}")
    record_result(ws, "memory.kv_cache", "pass", {**basis, "kv_cache": {e.precision: e.breakdown["kv_cache"]
                                                                         for e in report.inference}}, note=kv_note)
    statuses["memory.kv_cache"] = "pass"
    if est is None:
        why = report.choice.reason if report.choice else "no precision chosen"
        record_result(ws, "memory.fits", "fail", {**basis, "estimates": per_precision}, note=why)
        record_result(ws, "memory.largest_precision", "fail", {**basis, "estimates": per_precision}, note=why)
        return {**statuses, "memory.fits": "fail", "memory.largest_precision": "fail"}
    values = {**basis, "precision": chosen, "breakdown": est.breakdown, "total": est.total, "required": est.required,
              "estimates": per_precision}
    if report.training:
        values["training"] = {e.precision: {"breakdown": e.breakdown, "total": e.total, "fits": e.fits}
                              for e in report.training}
        values["training_choice"] = vars(report.training_choice) if report.training_choice else None
    fits = "pass" if est.fits else "fail"
    budget = _size(report.budget.bytes) if report.budget.bytes is not None else "unknown"
    record_result(ws, "memory.fits", fits, values,
                  note=f"{chosen}: {_size(est.total)} + {report.headroom:.0%} headroom = {_size(est.required)} "
                       f"{'<=' if est.fits else '>'} budget {budget} ({report.budget.source})")
    statuses["memory.fits"] = fits
    status, note = _largest_reason(report, chosen)
    record_result(ws, "memory.largest_precision", status, values, note=note)
    statuses["memory.largest_precision"] = status
    return statuses


# --- text -------------------------------------------------------------------------------------


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    if abs(value) >= GiB:
        return f"{value / GiB:.2f} GiB"
    return f"{value / MiB:.1f} MiB"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)).rstrip()
            for row in rows]


def render_estimate_text(report: MemoryReport) -> str:
    """The report as plain text (no colour, no markup): for the CLI and logs."""
    layout = report.layout
    exact = "exact, from the safetensors headers" if layout.source == "headers" else (
        "exact count from the headers; split from config.json" if layout.exact_parameters
        else "from config.json arithmetic")
    lines = [f"model    {report.source}",
             f"         {layout.parameter_count:,} parameters ({exact}); native {layout.native_precision}; "
             f"{layout.num_layers} layers, {layout.num_kv_heads} KV heads x {layout.head_dim}",
             f"target   context {report.context} x batch {report.batch} on {report.device}; "
             f"budget {_size(report.budget.bytes)} ({report.budget.detail or report.budget.source}); "
             f"headroom {report.headroom:.0%}", ""]
    native = layout.native_precision
    rows = [["inference", "weights", "KV cache", "activations", "overhead", "total", "+headroom", ""]]
    for e in report.inference:
        b = e.breakdown
        rows.append([_label(report, e.precision), _size(b["weights"]), _size(b["kv_cache"]), _size(b["activations"]),
                     _size(b["overhead"]), _size(e.total), _size(e.required), e.verdict])
    lines += _table(rows)
    if report.choice:
        lines += ["", f"choice   {report.choice.precision or 'none'}: {report.choice.reason}"]
    if report.candidates:
        above = [p for p in (e.precision for e in report.inference) if p not in report.candidates]
        lines.append("order    " + " > ".join(report.candidates) + " (native first, 8-bit before 4-bit; bf16/fp16 "
                     "and nf4/fp4 cost the same: the first of each is preferred)"
                     + (f"; {', '.join(above)} is above the native {native}: shown, never chosen" if above else ""))
    if report.training:
        s = report.train_setup
        targets = _targets_text(s.targets, s.method)
        base = ("a 4-bit base (LoRA on a 4-bit base is QLoRA)" if s.method == "qlora"
                else "a 32/16-bit or int8 base (a 4-bit base is QLoRA: --train qlora)")
        lines += ["", f"training {METHOD_NAMES[s.method]} on {base}: r={s.r} on {targets}; micro batch {s.batch} x "
                      f"{s.seq} tokens; gradient checkpointing {'on' if s.gradient_checkpointing else 'off'}; "
                      f"{report.training[0].training['lora_parameters']:,} adapter parameters"]
        rows = [[f"{METHOD_NAMES[s.method]} training", "weights", "adapter+grads", "AdamW", "activations", "overhead",
                 "total", "+headroom", ""]]
        for e in report.training:
            b = e.breakdown
            rows.append([_label(report, e.precision), _size(b["weights"]), _size(b["adapter"]), _size(b["optimizer"]),
                         _size(b["activations"]), _size(b["overhead"]), _size(e.total), _size(e.required), e.verdict])
        lines += _table(rows)
        if report.training_choice:
            lines += ["", f"training {report.training_choice.precision or 'none'} "
                          f"({METHOD_NAMES.get(report.training_choice.method, report.training_choice.method)}): "
                          f"{report.training_choice.reason}"]
    lines += [f"note     {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _label(report: MemoryReport, precision: str) -> str:
    native = report.layout.native_precision
    if precision == native:
        return f"{precision} (native)"
    if report.candidates and precision not in report.candidates:
        return f"{precision} (above native)"
    return precision


def _targets_text(targets: Any, method: str) -> str:
    if targets is None:
        return "all linear layers" if method == "qlora" else "attention"
    if targets == "auto":
        return "every attention and MLP projection"
    if targets == "all-linear":
        return "all linear layers"
    return ", ".join(targets) if isinstance(targets, list) else str(targets)
