"""Phase 3 · Memory & precision: what each precision costs, what fits, what was measured.

Above the items: the memory panel (tui.widgets.memory_panel): a stacked bar per precision
(weights, KV cache, activations, adapter and optimizer when training, overhead, then the
headroom) against the budget marker; the target context and batch re-estimate on every key
press; l cycles the training estimate (off, LoRA on the 32/16-bit and int8 bases, QLoRA on the
4-bit ones); e shows every precision (fp32 bf16 fp16 int8 nf4 fp4) instead of the main ones; the
measured-versus-estimated table comes from memory.measured's evidence. Keys: f records the
choice for the context and batch shown (`weightgate memory fit`; with the training estimate shown, the
training choice too: [decisions] training_precision / training_method), m measures the loaded
model (a job), k runs the quantized-quality check (a job). The header's meter shows the
device's live memory on every screen.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message

from weightgate.core.memory.checks import record_fit
from weightgate.core.memory.views import MemoryInputs, read_memory_inputs
from weightgate.screens.memory.memory_panel import MemoryPanel
from weightgate.tui.widgets.base_screen import PhaseScreen
from weightgate.tui.widgets.weights_actions import error_text


class InputsRead(Message):
    def __init__(self, inputs) -> None:
        super().__init__()
        self.inputs = inputs


class FitDone(Message):
    def __init__(self, text: str, ok: bool) -> None:
        super().__init__()
        self.text, self.ok = text, ok


class MemoryScreen(PhaseScreen):
    TARGET = "phase-3"
    PHASE = 3
    HELP = ("Memory & precision: a bar per precision against the budget; edit context and batch to re-estimate; "
            "f records the largest precision that fits, m measures the loaded model, k checks quantized quality "
            "on hard and edge cases, l adds the LoRA / QLoRA training estimate (f then records the training "
            "choice too), e shows every precision (fp16 and fp4 too).")

    BINDINGS = [
        Binding("f", "fit", "Fit", tooltip="Record the largest precision that fits this context and batch"),
        Binding("m", "measure", "Measure", tooltip="Load the model at the chosen precision and measure it (a job)"),
        Binding("k", "quant_check", "Quant check",
                tooltip="Task set at the reference and the quantized precision, compared (a job)"),
        Binding("l", "training", "Training est.", tooltip="Cycle the training estimate: off, LoRA, QLoRA"),
        Binding("e", "all_precisions", "All precisions",
                tooltip="Show every precision (fp32 bf16 fp16 int8 nf4 fp4), or the main ones"),
    ]
    STATEFUL_ACTIONS = (*PhaseScreen.STATEFUL_ACTIONS, "fit", "measure", "quant_check", "training", "all_precisions")

    def compose_panels(self) -> ComposeResult:
        yield MemoryPanel(id="memory")

    @property
    def panel(self):
        return self.query_one("#memory")

    def on_mount(self) -> None:
        super().on_mount()
        self._fitting = False
        self.watch(self.app, "report", self._show_measured)
        self.read_inputs()

    def on_screen_resume(self) -> None:
        self.read_inputs()

    # --- reading --------------------------------------------------------------------------------

    def read_inputs(self) -> None:
        workspace = getattr(self.app, "workspace", None)
        if workspace is None:
            return
        devices = getattr(self.app, "devices", None)
        self.run_worker(lambda: self._read(workspace, devices), thread=True, group="memory-inputs",
                        exclusive=True, exit_on_error=False)

    def _read(self, workspace, devices) -> None:
        try:
            inputs = read_memory_inputs(workspace, devices)
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            inputs = MemoryInputs(error=error_text(exc))
        self.post_message(InputsRead(inputs))

    def on_inputs_read(self, message: InputsRead) -> None:
        self.panel.show_inputs(message.inputs)
        self._show_measured(self.report)
        self.update_bindings()

    def _show_measured(self, report) -> None:
        try:
            panel = self.panel
        except NoMatches:
            return
        status = None
        if report is not None:
            try:
                status = report.item("memory.measured")
            except KeyError:
                status = None
        panel.show_measured(status.values if status else None,
                            f"{status.status}: {status.detail}" if status else "")

    # --- keys -----------------------------------------------------------------------------------

    def _ready(self) -> bool:
        try:
            inputs = self.panel.inputs
        except NoMatches:
            return False
        return inputs is not None and not inputs.error

    def _decided(self) -> bool:
        workspace = getattr(self.app, "workspace", None)
        if workspace is None:
            return False
        try:
            return bool((workspace.config().get("decisions") or {}).get("precision"))
        except Exception:  # noqa: BLE001 - a broken config is shown by the banner
            return False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("fit", "training", "all_precisions"):
            return True if self._ready() and not getattr(self, "_fitting", False) else None
        if action in ("measure", "quant_check"):
            return True if self._ready() and self._decided() else None
        return super().check_action(action, parameters)

    def action_training(self) -> None:
        self.panel.cycle_training()

    def action_all_precisions(self) -> None:
        self.panel.toggle_all()

    def action_fit(self) -> None:
        context, batch = self.panel.targets()
        if context is None or batch is None:
            self.notify("Context and batch must be positive whole numbers.", severity="warning")
            return
        workspace = self.app.workspace
        self._fitting = True
        self.update_bindings()
        train = self.panel.train
        self.run_worker(lambda: self._fit(workspace, context, batch, train), thread=True, group="memory-fit",
                        exit_on_error=False)

    def _fit(self, workspace, context: int, batch: int, train) -> None:
        try:
            result = record_fit(workspace, context=context, batch=batch, train=train)
        except Exception as exc:  # noqa: BLE001 - notified
            self.post_message(FitDone(error_text(exc), False))
            return
        ok = result.precision is not None and all(s == "pass" for s in result.evidence.values())
        text = (f"[decisions] precision = {result.precision} for context {context} x batch {batch}\n{result.reason}"
                if result.precision else f"nothing written: {result.reason}")
        if train and result.training_precision:
            text += (f"\n[decisions] training_precision = {result.training_precision}, "
                     f"training_method = {result.training_method}")
        elif train:
            choice = result.report.training_choice
            text += f"\ntraining: nothing written: {choice.reason if choice else 'no estimate'}"
            ok = False
        self.post_message(FitDone(text, ok))

    def on_fit_done(self, message: FitDone) -> None:
        self._fitting = False
        # markup off: "[decisions]" is a TOML table name, not a style tag
        self.notify(message.text, title="Fit" if message.ok else "Fit: an item fails",
                    severity="information" if message.ok else "warning", timeout=10, markup=False)
        self.app.refresh_report()
        self.read_inputs()         # the budget and targets may have changed
        self.update_bindings()

    def action_measure(self) -> None:
        self.app.start_job("memory_measure", {"device": "auto"})

    def action_quant_check(self) -> None:
        self.app.start_job("quant_quality", {"device": "auto"})
