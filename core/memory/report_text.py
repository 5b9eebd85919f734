"""The memory report as plain text: what `weightgate memory estimate` and `weightgate memory fit` print."""

from __future__ import annotations

from typing import Any

from weightgate.core.memory.estimate import size_text
from weightgate.core.memory.precision import METHOD_NAMES, MemoryReport


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
             f"budget {size_text(report.budget.bytes)} ({report.budget.detail or report.budget.source}); "
             f"headroom {report.headroom:.0%}", ""]
    native = layout.native_precision
    rows = [["inference", "weights", "KV cache", "activations", "overhead", "total", "+headroom", ""]]
    for e in report.inference:
        b = e.breakdown
        rows.append([_label(report, e.precision), size_text(b["weights"]), size_text(b["kv_cache"]), size_text(b["activations"]),
                     size_text(b["overhead"]), size_text(e.total), size_text(e.required), e.verdict])
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
            rows.append([_label(report, e.precision), size_text(b["weights"]), size_text(b["adapter"]), size_text(b["optimizer"]),
                         size_text(b["activations"]), size_text(b["overhead"]), size_text(e.total), size_text(e.required), e.verdict])
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
