"""The shortlist on the Selection screen: candidates smallest first, with what matters about each.

`read_shortlist(ws)` (a thread worker) reads weightgate.toml's [[candidates]], the cached
metadata of each (core.weights.metadata_cache: never the network) and the choice in [decisions]; it
says what is wrong with the shortlist as warnings (a large model without a smaller one, the
file's order not smallest first, metadata missing). CandidatesPanel shows it: a table sorted
smallest first (the file's order is what the check judges, the warning says so) and the
warnings under it. AddCandidateModal asks for a source and a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static, TabbedContent, TabPane

from weightgate.core.weights.sources import human_params
from weightgate.core.weights.views import Candidate, Shortlist
from weightgate.tui.widgets.busy_line import BusyLine
from weightgate.tui.widgets.fitted_table import Column, FittedTable, middle_ellipsis
from weightgate.tui.widgets.status import rich_style
from weightgate.tui.widgets.units import gib

if TYPE_CHECKING:
    pass


# --- the table --------------------------------------------------------------------------------


class CandidateTable(FittedTable):
    """One row per candidate, smallest first; the row key is the source spec."""

    COLUMNS = (
        Column("source", "Source"),
        Column("params", "Params", 6),
        Column("size", "Class", 6, drop=3),
        Column("bf16", "bf16 GiB", 8, drop=2),
        Column("license", "Licence", 12, drop=1),
        Column("remote", "Remote", 6),
        Column("chosen", "Choice", 8),
    )
    DEFAULT_CSS = """
    CandidateTable { height: auto; max-height: 8; min-height: 2; overflow-x: hidden; }
    """

    def cells(self, c: Candidate) -> dict[str, Text]:
        variables = self.app.theme_variables
        muted = rich_style("muted", variables)
        width = self.width_of("source")
        source = Text(middle_ellipsis(c.spec, width), no_wrap=True, overflow="ellipsis")
        if not c.has_metadata:
            source.append("  metadata missing — press i", style=rich_style("warning", variables))
        elif c.note and len(c.spec) + 6 < width:
            source.append(f"  {c.note}", style=muted)
        if c.remote_code is None:
            remote = Text("?", style=muted)
        else:
            remote = Text("yes", style=rich_style("warning", variables, bold=True)) if c.remote_code else Text("no")
        return {
            "source": source,
            "params": Text(human_params(c.parameters), justify="right",
                           style=rich_style("warning", variables) if not c.has_metadata else ""),
            "size": Text(c.size_class or "?"),
            "bf16": Text(gib(c.bf16_bytes), justify="right"),
            "license": Text(c.license or ("?" if not c.has_metadata else "not stated"), no_wrap=True,
                            overflow="ellipsis", style="" if c.license else muted),
            "remote": remote,
            "chosen": Text("✓ chosen", style=rich_style("success", variables, bold=True)) if c.chosen else Text(""),
        }

    @property
    def selected(self) -> Candidate | None:
        return self.data_of(self.selected_key)


class CandidatesPanel(Vertical):
    """The shortlist table, its warnings, and the busy line for add / inspect / fetch."""

    DEFAULT_CSS = """
    CandidatesPanel { height: auto; }
    CandidatesPanel #candidates-empty { height: auto; color: $text-muted; }
    CandidatesPanel #candidates-warnings { height: auto; color: $warning; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shortlist: Shortlist | None = None

    def compose(self) -> ComposeResult:
        yield CandidateTable(id="candidate-table")
        yield Static("", id="candidates-empty")
        yield Static("", id="candidates-warnings")
        yield BusyLine(id="candidates-busy")

    @property
    def table(self) -> CandidateTable:
        return self.query_one(CandidateTable)

    @property
    def selected(self) -> Candidate | None:
        return self.table.selected

    def show(self, shortlist: Shortlist) -> None:
        if shortlist == self.shortlist:
            return
        self.shortlist = shortlist
        self.table.show([(c.spec, c) for c in shortlist.candidates])
        self.table.display = bool(shortlist.candidates)
        empty = self.query_one("#candidates-empty", Static)
        if shortlist.error:
            empty.update(Content.assemble(("Cannot read the shortlist: ", "bold $error"), shortlist.error))
        elif not shortlist.candidates:
            empty.update(Content.assemble(
                "No candidates yet. Press ", ("+", "bold $accent"),
                " to add one: a hub repo (org/name[@revision]), a model directory or a .gguf file. "
                "Start with the smallest model that could plausibly do the task."))
        empty.display = bool(shortlist.error or not shortlist.candidates)
        warnings = self.query_one("#candidates-warnings", Static)
        warnings.update(Content("\n").join(Content.assemble(("⚠ ", "bold"), text) for text in shortlist.warnings))
        warnings.display = bool(shortlist.warnings)

    def show_busy(self, text: str | None) -> None:
        self.query_one(BusyLine).show(text)

    @property
    def warnings_text(self) -> str:
        return "\n".join(self.shortlist.warnings) if self.shortlist else ""


class CandidateTabs(Vertical):
    """Candidates | Requirements: one shown at a time (the Selection screen's panels).

    Composed here because a screen's compose_panels() is not a compose context for `with`."""

    DEFAULT_CSS = """
    CandidateTabs { height: auto; }
    CandidateTabs #selection-tabs { height: auto; margin-bottom: 1; }
    CandidateTabs ContentSwitcher { height: auto; }
    CandidateTabs TabPane { height: auto; padding: 0 1; }
    """

    def __init__(self, requirements: Widget, **kwargs) -> None:
        super().__init__(**kwargs)
        self.requirements = requirements

    def compose(self) -> ComposeResult:
        with TabbedContent(id="selection-tabs", initial="tab-candidates"):
            with TabPane("Candidates", id="tab-candidates"):
                yield CandidatesPanel(id="candidates")
            with TabPane("Requirements", id="tab-requirements"):
                yield self.requirements


# --- the add dialog ---------------------------------------------------------------------------


class AddCandidateModal(ModalScreen[tuple[str, str] | None]):
    """Ask for a source (org/name[@rev], a directory or a .gguf) and an optional note."""

    DEFAULT_CSS = """
    AddCandidateModal { align: center middle; }
    AddCandidateModal > Vertical {
        width: 84; max-width: 95%; height: auto; padding: 1 2;
        border: thick $primary 60%; background: $surface;
    }
    AddCandidateModal .title { text-style: bold; padding-bottom: 1; }
    AddCandidateModal .explain { color: $text-muted; padding-bottom: 1; }
    AddCandidateModal .label { padding-top: 1; }
    AddCandidateModal .problem { color: $error; height: auto; }
    AddCandidateModal Horizontal { height: auto; align-horizontal: right; padding-top: 1; }
    AddCandidateModal Button { margin-left: 2; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Add a candidate to the shortlist", classes="title")
            yield Static("weightgate reads its config, safetensors headers (parameter count by dtype), licence and "
                         "remote code; no weights are downloaded. Start with the smallest plausible model.",
                         classes="explain")
            yield Label("Source: org/name, org/name@revision, a model directory or a .gguf file")
            yield Input(placeholder="e.g. HuggingFaceTB/SmolLM2-360M-Instruct", id="source")
            yield Label("Note (optional): why it is a candidate", classes="label")
            yield Input(placeholder="e.g. smallest instruct model with a permissive licence", id="note")
            yield Static("", classes="problem", id="problem")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Add", id="submit", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#source", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "source" and event.value.strip():
            self.query_one("#note", Input).focus()
            return
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "submit":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        source = self.query_one("#source", Input).value.strip()
        if not source:
            self.query_one("#problem", Static).update("A source is required: org/name[@revision] or a path.")
            self.query_one("#source", Input).focus()
            return
        self.dismiss((source, self.query_one("#note", Input).value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass
class Summary:
    """What add / inspect tell the user about a candidate's metadata."""

    spec: str
    data: dict = field(default_factory=dict)

    def text(self) -> str:
        data = self.data
        parts = [f"{human_params(data.get('parameter_count'))} parameters"]
        if data.get("size_class"):
            parts[0] += f" ({data['size_class']})"
        parts.append(f"licence {data.get('license') or 'not stated'}")
        if data.get("remote_code"):
            parts.append("REMOTE CODE")
        if data.get("architecture"):
            parts.append(str(data["architecture"]))
        lines = [f"{self.spec}: " + ", ".join(parts)]
        lines.extend(f"⚠ {warning}" for warning in data.get("warnings") or [])
        return "\n".join(lines)
