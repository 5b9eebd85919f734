"""The Memory screen's panel: a stacked bar per precision against the device budget, the target
context and batch as inputs that re-estimate on every key press, and measured versus estimated.

The bars show the main precisions (the native dtype, fp32 for an fp32 model, int8, nf4);
`toggle_all` adds the rest (fp32 above a 16-bit native, the other 16-bit format, fp4), which
cost what their pair costs and are never chosen before it. The training estimate (off, LoRA,
QLoRA) covers the bases its method trains on: 32/16-bit and int8 for LoRA, 4-bit for QLoRA.

The model's layout is read once off the UI thread (`read_memory_inputs`: metadata of the locked
files, the budget from weightgate.toml or the device snapshot the header already polls); after
that `core.memory.precision.estimate_report` is pure arithmetic, so an edit re-draws the bars at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Label, Static

from weightgate.core.memory.checks import ERROR_SIGN
from weightgate.core.memory.views import MemoryInputs, memory_report
from weightgate.tui.widgets.units import home_relative, human_bytes

if TYPE_CHECKING:
    from weightgate.core.memory.precision import MemoryReport



@dataclass(frozen=True)
class Part:
    """One segment kind of a stacked bar. Each has its own glyph as well as its own colour, so
    the bar and its legend still tell the parts apart under NO_COLOR (Textual greys every colour)."""

    key: str     # core.memory.precision's breakdown key ("" for the headroom)
    name: str    # the legend's word
    glyph: str
    color: str


PARTS = (Part("weights", "weights", "█", "#4e79a7"), Part("kv_cache", "KV cache", "▓", "#b07aa1"),
         Part("activations", "activations", "▒", "#edc948"), Part("adapter", "adapter+grads", "▄", "#59a14f"),
         Part("optimizer", "AdamW", "▚", "#76b7b2"), Part("overhead", "overhead", "▪", "#9c9c9c"))
HEADROOM = Part("", "headroom", "░", "#6b6b6b")
BAR_WIDTH = 44
ROW_TEXT = 57          # mark, label, the totals and the verdict around a bar
TRAIN_MODES = (None, "lora", "qlora")


def _bar(estimate, scale: float, width: int) -> list[tuple[str, str]]:
    """Segments of one stacked bar: each part, the headroom, the budget marker."""
    cells: list[Part | None] = []
    used = 0.0
    for part in PARTS:
        used += estimate.breakdown.get(part.key, 0)
        cells += [part] * (round(used / scale) - len(cells))
    cells += [HEADROOM] * max(0, round(estimate.required / scale) - len(cells))
    cells = cells[:width] + [None] * (width - len(cells[:width]))
    marker = round(estimate.budget / scale) if estimate.budget else None
    segments = []
    for index, part in enumerate(cells):
        if marker is not None and index == min(marker, width - 1):
            segments.append(("┃", "bold $error" if not estimate.fits else "bold $success"))
        elif part is not None:
            segments.append((part.glyph, part.color))
        else:
            segments.append((" ", ""))
    return segments


def render_bars(report: MemoryReport, width: int = BAR_WIDTH) -> Content:
    """A line per precision (inference, then training): label, stacked bar, total, verdict."""
    method = {"lora": "LoRA ", "qlora": "QLoRA "}.get(report.train_setup.method if report.train_setup else "", "")
    rows = [("", e) for e in report.inference] + [(method, e) for e in report.training]
    if not rows:
        return Content("no estimate")
    biggest = max([e.required for _, e in rows] + [report.budget.bytes or 0])
    scale = max(biggest / (width - 1), 1.0)
    native = report.layout.native_precision
    lines = []
    for prefix, est in rows:
        suffix = ""
        if not prefix and est.precision == native:
            suffix = " native"
        elif not prefix and report.candidates and est.precision not in report.candidates:
            suffix = " upcast"       # fp32 above a 16-bit native dtype: shown, never chosen
        label = f"{prefix}{est.precision}{suffix}"
        fits = "fits" if est.fits else ("does not fit" if est.budget else "budget unknown")
        look = "$success" if est.fits else ("$error" if est.budget else "$text-muted")
        chosen = (report.training_choice if prefix else report.choice)
        mark = "▶ " if chosen is not None and chosen.precision == est.precision else "  "
        lines.append(Content.assemble((mark, "bold"), (f"{label:<13}", "bold"), *_bar(est, scale, width),
                                      f" {human_bytes(est.total):>9} +{report.headroom:.0%} = "
                                      f"{human_bytes(est.required):>9} ", (fits, look)))
    legend = [Content.assemble((part.glyph * 2, part.color), f" {part.name}  ") for part in PARTS
              if any(e.breakdown.get(part.key) for _, e in rows)]
    legend.append(Content.assemble((HEADROOM.glyph * 2, HEADROOM.color), f" {HEADROOM.name}  "))
    if report.budget.bytes:
        legend.append(Content.assemble(("┃", "bold"), f" budget {human_bytes(report.budget.bytes)} "
                                                      f"({report.budget.source})"))
    else:
        legend.append(Content("budget unknown: set [requirements.ceilings] memory_budget_gib"))
    lines.append(Content("").join(legend))
    choice = report.choice
    if choice is not None:
        lines.append(Content.assemble(("inference: ", "bold"), choice.reason))
    if report.training_choice is not None:
        lines.append(Content.assemble((f"{method.strip()} training: ", "bold"), report.training_choice.reason))
    for note in report.notes:
        lines.append(Content.assemble(("note: ", "$text-muted"), note))
    return Content("\n").join(lines)


def render_measured(values: dict | None, detail: str = "") -> Content:
    """memory.measured's comparison rows: what was estimated, what was measured, the error."""
    comparison = (values or {}).get("comparison") or {}
    rows = comparison.get("rows") or {}
    if not rows:
        return Content.assemble(("Not measured yet: ", "bold"),
                                ("m loads the model at the chosen precision and measures it", "$text-muted"))
    lines = [Content.assemble(("Measured vs estimated", "bold"), f" at {comparison.get('precision')} on "
                              f"{comparison.get('device')}: {detail}"),
             Content(f"  {'':<8} {'estimate':>10} {'measured':>10} {'error':>8}")]
    for name, row in rows.items():
        error = row.get("error")
        style = "$success" if error is not None and abs(error) <= 0.2 else "$error"
        lines.append(Content.assemble(f"  {name:<8} {human_bytes(row['estimate']):>10} "
                                      f"{human_bytes(row['measured']):>10} ",
                                      (f"{error:>+8.1%}" if error is not None else f"{'?':>8}", style)))
    lines.append(Content.styled(f"  {ERROR_SIGN}", "$text-muted"))
    return Content("\n").join(lines)


class MemoryPanel(Vertical):
    """Inputs, bars and the measured table. The screen gives it `MemoryInputs` once read."""

    DEFAULT_CSS = """
    MemoryPanel { height: auto; border: round $panel; border-title-color: $text-muted; padding: 0 1; }
    MemoryPanel #mem-inputs { height: 1; margin-bottom: 1; }
    MemoryPanel #mem-inputs Label { padding: 0 1 0 0; }
    MemoryPanel #mem-inputs Input { width: 12; }
    MemoryPanel #mem-train { padding: 0 0 0 2; color: $text-muted; width: auto; }
    MemoryPanel #mem-bars { height: auto; }
    MemoryPanel #mem-measured { height: auto; margin-top: 1; }
    """

    class Estimated(Message):
        """The bars were re-drawn for this context and batch."""

        def __init__(self, context: int, batch: int, train: str | None) -> None:
            super().__init__()
            self.context, self.batch, self.train = context, batch, train

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inputs: MemoryInputs | None = None
        self.report: MemoryReport | None = None
        self.train: str | None = None
        self.all_precisions = False
        self.border_title = "Memory per precision"

    def compose(self) -> ComposeResult:
        with Horizontal(id="mem-inputs"):
            yield Label("context")
            yield Input(placeholder="tokens", type="integer", id="mem-context", compact=True)
            yield Label(" batch")
            yield Input(placeholder="1", type="integer", id="mem-batch", compact=True)
            yield Static(self._modes_text(), id="mem-train")
        yield Static("reading the model's layout…", id="mem-bars")
        yield Static("", id="mem-measured")

    def show_inputs(self, inputs: MemoryInputs) -> None:
        """First read (or a re-read after the lock or the config changed)."""
        first = self.inputs is None
        self.inputs = inputs
        if inputs.error:
            self.query_one("#mem-bars", Static).update(Content(home_relative(inputs.error)))
            return
        self.border_subtitle = f"{inputs.source} · {inputs.device}"
        if first:
            with self.prevent(Input.Changed):
                self.query_one("#mem-context", Input).value = str(inputs.context or "")
                self.query_one("#mem-batch", Input).value = str(inputs.batch)
        self.estimate()

    def targets(self) -> tuple[int | None, int | None]:
        def number(selector: str) -> int | None:
            text = self.query_one(selector, Input).value.strip()
            return int(text) if text.isdigit() and int(text) > 0 else None
        return number("#mem-context"), number("#mem-batch")

    def estimate(self) -> None:
        if self.inputs is None or self.inputs.error:
            return
        context, batch = self.targets()
        bars = self.query_one("#mem-bars", Static)
        if context is None or batch is None:
            bars.update(Content.assemble(("context and batch are positive whole numbers", "$error")))
            return
        self.report = memory_report(self.inputs, context, batch, self.train, self.all_precisions)
        width = self.content_size.width or (BAR_WIDTH + ROW_TEXT)
        bars.update(render_bars(self.report, max(10, min(BAR_WIDTH, width - ROW_TEXT))))
        self.post_message(self.Estimated(context, batch, self.train))

    def _modes_text(self) -> str:
        train = {"lora": "LoRA", "qlora": "QLoRA"}.get(self.train or "", "off")
        return f"training: {train} (l) · precisions: {'all' if self.all_precisions else 'main'} (e)"

    def cycle_training(self) -> None:
        self.train = TRAIN_MODES[(TRAIN_MODES.index(self.train) + 1) % len(TRAIN_MODES)]
        self.query_one("#mem-train", Static).update(self._modes_text())
        self.estimate()

    def toggle_all(self) -> None:
        """Every precision (fp32, bf16, fp16, int8, nf4, fp4), or the main ones."""
        self.all_precisions = not self.all_precisions
        self.query_one("#mem-train", Static).update(self._modes_text())
        self.estimate()

    def show_measured(self, values: dict | None, detail: str = "") -> None:
        self.query_one("#mem-measured", Static).update(render_measured(values, detail))

    def on_resize(self) -> None:
        self.estimate()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.estimate()
