"""Which precision to run (and train) at: estimates for a model source or the workspace's model,
the largest precision that fits, a plain-text report, and the recorded decision.

Torch-free: metadata only (safetensors headers and config.json; no weights are read).

    estimate_for_source(spec, context=, batch=, train=, ...)  -> MemoryReport   (`weightgate estimate`)
    render_estimate_text(report)                               -> str
    recommend(estimates)                                       -> Choice
    record_fit(ws, precision=None, ...)                        -> FitResult     (`weightgate fit`)

The order of preference follows the seeds: the native dtype if it fits, then 16-bit, then 8-bit
(LLM.int8) before 4-bit (NF4); never the smallest available when a larger one fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.memory import (GiB, MiB, QUANTIZED, Estimate, Layout, TrainingSetup, candidate_precisions, estimate,
                         layout_from_config, layout_from_tensors, text_config)

DEFAULT_HEADROOM = 0.3
DEFAULT_TRAIN_SEQ = 2048
TRAIN_METHODS = ("lora", "qlora")


# --- inputs -------------------------------------------------------------------------------------


def layout_for(meta: Any) -> Layout:
    """The model's layout from its metadata: exact from the safetensors headers of a local model,
    else the config's arithmetic reconciled with the exact parameter count from the headers."""
    config = dict(meta.config or {}) or _config_from_fields(meta)
    if meta.source.kind == "local" and meta.weight_format == "safetensors" and meta.weight_files:
        from core.safetensors_check import validate_safetensors

        root = Path(meta.source.path)
        tensors = [(t.name, t.shape, t.dtype) for file in meta.weight_files
                   for t in validate_safetensors(root / file).tensors]
        return layout_from_tensors(tensors, config)
    exact = meta.parameter_count if meta.weight_format == "safetensors" and meta.parameters else None
    layout = layout_from_config(config, exact)
    if meta.parameters and meta.weight_format == "safetensors":
        from core.memory import SAFETENSORS_DTYPES

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
    from core.devices import snapshot

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
    from core.devices import budget_bytes

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
    method: str = ""               # training only: "lora" | "qlora"


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

    def estimate_for(self, precision: str) -> Estimate | None:
        return next((e for e in self.inference if e.precision == precision), None)

    def to_dict(self) -> dict:
        return {"source": self.source, "layout": self.layout.to_dict(), "device": self.device, "context": self.context,
                "batch": self.batch, "budget": vars(self.budget), "headroom": self.headroom,
                "inference": [e.to_dict() for e in self.inference],
                "training": [e.to_dict() for e in self.training],
                "train_setup": self.train_setup.to_dict() if self.train_setup else None,
                "choice": vars(self.choice) if self.choice else None,
                "training_choice": vars(self.training_choice) if self.training_choice else None,
                "notes": self.notes}


def recommend(estimates: list[Estimate], *, training: bool = False) -> Choice:
    """The first (largest) precision of `estimates` that fits with the headroom."""
    if not estimates:
        return Choice(None, "nothing to choose from")
    if estimates[0].budget is None:
        return Choice(None, "the memory budget is unknown: set [requirements.ceilings] memory_budget_gib")
    what = "training" if training else "inference"
    larger: list[str] = []
    for est in estimates:
        if est.fits:
            method = ("qlora" if est.precision in ("nf4", "fp4") else "lora") if training else ""
            why = (f"{est.precision} is the largest precision whose {what} estimate fits: "
                   f"{_size(est.total)} + {est.headroom:.0%} headroom = {_size(est.required)} <= "
                   f"budget {_size(est.budget)}")
            if larger:
                why += f" ({', '.join(larger)} would not)"
            return Choice(est.precision, why, method)
        larger.append(f"{est.precision} needs {_size(est.required)}")
    smallest = estimates[-1]
    return Choice(None, f"nothing fits the budget of {_size(smallest.budget)} for {what}: even "
                        f"{smallest.precision} needs {_size(smallest.required)} with {smallest.headroom:.0%} headroom; "
                        "shorten the context, lower the batch, pick a smaller model, or offload as a last resort")


def estimate_report(layout: Layout, source: str, *, context: int | None = None, batch: int = 1, device: str = "cpu",
                    budget: Budget | None = None, headroom: float = DEFAULT_HEADROOM, train: str | None = None,
                    train_setup: TrainingSetup | None = None, precisions: list[str] | None = None,
                    tokenizer_bytes: int = 0, model_context: int | None = None) -> MemoryReport:
    """Every precision's inference (and, with train, training) estimate and the choices. Pure:
    the TUI calls this on every key press with a layout it computed once."""
    notes = list(layout.warnings)
    if not context:
        context = model_context or 4096
        notes.append(f"no target context set: using {'the model maximum' if model_context else 'a default of'} "
                     f"{context} (set [requirements] context_length)")
    if model_context and context > model_context:
        notes.append(f"the target context {context} exceeds the model's {model_context}")
    budget = budget or Budget(None, "unknown")
    order = precisions or candidate_precisions(layout)
    common = dict(device=device, budget=budget.bytes, headroom=headroom, tokenizer_bytes=tokenizer_bytes)
    inference = [estimate(layout, p, batch=batch, seq=context, **common) for p in order]
    report = MemoryReport(source, layout, device, context, batch, budget, headroom, inference, notes=notes)
    report.choice = recommend(inference)
    if train or train_setup:
        setup = train_setup or TrainingSetup(method=train, batch=batch, seq=min(context, DEFAULT_TRAIN_SEQ))
        if setup.method not in TRAIN_METHODS:
            raise InputError(f"unknown training method {setup.method!r}", hint="lora or qlora")
        train_order = [p for p in order if p in ("nf4", "fp4")] if setup.method == "qlora" else order
        report.train_setup = setup
        report.training = [estimate(layout, p, training=setup, **common) for p in train_order]
        report.training_choice = recommend(report.training, training=True)
    return report


def estimate_for_source(spec: str, *, context: int | None = None, batch: int = 1, train: str | None = None,
                        device: str | None = None, budget_gib: float | None = None,
                        headroom: float = DEFAULT_HEADROOM, precisions: list[str] | None = None,
                        metadata: Any = None, snapshot: Any = None, train_setup: TrainingSetup | None = None
                        ) -> MemoryReport:
    """`weightgate estimate MODEL`: from hub metadata (headers by range request, config.json: no
    weights downloaded), a local directory, or a GGUF file."""
    from core.sources import fetch_metadata

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


def workspace_targets(config: dict) -> dict:
    """Context, batch, headroom, budget and training settings from weightgate.toml:
    [requirements] context_length / batch_size (or [settings]), [settings] headroom,
    [requirements.ceilings] memory_budget_gib, [training] r / targets / batch_size /
    max_seq_length / gradient_checkpointing / method."""
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

    headroom = _number(settings.get("headroom"))
    if headroom is None or not 0 <= headroom < 1:
        headroom = DEFAULT_HEADROOM
    return {"context": pick("context_length"), "batch": pick("batch_size") or 1, "headroom": headroom,
            "budget_gib": _number(ceilings.get("memory_budget_gib")) or None, "training": dict(training)}


def training_setup(train: str, targets: dict, context: int) -> TrainingSetup:
    settings = targets.get("training") or {}
    r = int(_number(settings.get("r")) or 16)
    seq = int(_number(settings.get("max_seq_length")) or min(context, DEFAULT_TRAIN_SEQ))
    batch = int(_number(settings.get("batch_size")) or targets.get("batch") or 1)
    return TrainingSetup(method=train, r=r, targets=settings.get("targets") or None, batch=batch, seq=seq,
                         gradient_checkpointing=(bool(settings["gradient_checkpointing"])
                                                 if "gradient_checkpointing" in settings else None),
                         dropout=float(_number(settings.get("dropout")) if settings.get("dropout") is not None else 0.05))


def workspace_metadata(ws: Any) -> Any:
    """Metadata of the workspace's locked model (its local files; no network)."""
    from core.lock import read_lock
    from core.sources import fetch_metadata
    from core.verify import snapshot_dir

    lock = read_lock(ws)
    if lock is None:
        raise InputError("no model locked in this workspace", path=ws.lock_path,
                         hint="choose and fetch a model first: weightgate choose SOURCE; weightgate fetch")
    return fetch_metadata(str(snapshot_dir(ws, lock)))


def estimate_for_workspace(ws: Any, *, context: int | None = None, batch: int | None = None, train: str | None = None,
                           device: str | None = None, snapshot: Any = None, metadata: Any = None) -> MemoryReport:
    from core.fingerprints import plain

    config = plain(ws.config())
    targets = workspace_targets(config)
    meta = metadata if metadata is not None else workspace_metadata(ws)
    context = context or targets["context"] or meta.context_length
    batch = batch or targets["batch"]
    method = train or (str(targets["training"].get("method")) if targets["training"].get("method") else None)
    setup = training_setup(method, targets, context or DEFAULT_TRAIN_SEQ) if method else None
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


def _largest_reason(report: MemoryReport, chosen: str) -> tuple[str, str]:
    best = report.choice.precision if report.choice else None
    order = [e.precision for e in report.inference]
    if best is None:
        return "fail", report.choice.reason if report.choice else "nothing fits"
    if chosen == best:
        return "pass", f"{chosen} is the largest precision that fits"
    if chosen in order and best in order and order.index(chosen) > order.index(best):
        return "fail", f"{chosen} chosen, but {best} fits too: quantize only as far as needed"
    return "fail", f"{chosen} does not fit; the largest that fits is {best}"


def record_fit(ws: Any, precision: str | None = None, *, context: int | None = None, batch: int | None = None,
               train: str | None = None, device: str | None = None, snapshot: Any = None,
               metadata: Any = None) -> FitResult:
    """`weightgate fit`: estimate the workspace's model, choose the largest precision that fits
    (or take `precision` as the person's choice), write [decisions] precision and
    precision_reason, and record evidence for memory.weights, memory.kv_cache, memory.fits and
    memory.largest_precision (values: the breakdown). Nothing is written to [decisions] when
    nothing fits; the failing evidence says why."""
    from core.evidence import record_result
    from core.memory import canonical_precision

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
    if chosen is not None:
        def change(doc) -> None:
            import tomlkit

            if "decisions" not in doc:
                doc["decisions"] = tomlkit.table()
            doc["decisions"]["precision"] = chosen
            doc["decisions"]["precision_reason"] = reason
        ws.update_config(change)
    statuses = _record_memory_evidence(ws, report, chosen, record_result)
    return FitResult(report, chosen, recommended, reason, statuses)


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
        label = e.precision + (" (native)" if e.precision == native else "")
        rows.append([label, _size(b["weights"]), _size(b["kv_cache"]), _size(b["activations"]), _size(b["overhead"]),
                     _size(e.total), _size(e.required), e.verdict])
    lines += _table(rows)
    if report.choice:
        lines += ["", f"choice   {report.choice.precision or 'none'}: {report.choice.reason}"]
    if report.training:
        s = report.train_setup
        targets = s.targets or ("all linear" if s.method == "qlora" else "attention")
        lines += ["", f"training {s.method} r={s.r} on {targets}; batch {s.batch} x {s.seq} tokens; gradient "
                      f"checkpointing {'on' if s.gradient_checkpointing else 'off'}; "
                      f"{report.training[0].training['lora_parameters']:,} adapter parameters"]
        rows = [["training", "weights", "adapter+grads", "AdamW", "activations", "overhead", "total", "+headroom", ""]]
        for e in report.training:
            b = e.breakdown
            rows.append([e.precision + (" (QLoRA)" if e.precision in QUANTIZED[1:] else ""), _size(b["weights"]),
                         _size(b["adapter"]), _size(b["optimizer"]), _size(b["activations"]), _size(b["overhead"]),
                         _size(e.total), _size(e.required), e.verdict])
        lines += _table(rows)
        if report.training_choice:
            lines += ["", f"training {report.training_choice.precision or 'none'}"
                          f"{' (' + report.training_choice.method + ')' if report.training_choice.method else ''}: "
                          f"{report.training_choice.reason}"]
    lines += [f"note     {note}" for note in report.notes]
    return "\n".join(lines) + "\n"
