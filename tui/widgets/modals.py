"""Small dialogs: a note/reason prompt (attest, waive, revoke) and a yes/no confirmation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class NoteModal(ModalScreen[str | None]):
    """Ask for a note (attest), a reason (waive) or an optional note (revoke).

    Dismisses with the text (stripped) or None when cancelled. A required note cannot be
    submitted empty: the input says so instead of bouncing the request off the engine.
    """

    DEFAULT_CSS = """
    NoteModal { align: center middle; }
    NoteModal > Vertical {
        width: 80; max-width: 95%; height: auto; padding: 1 2;
        border: thick $primary 60%; background: $surface;
    }
    NoteModal .title { text-style: bold; padding-bottom: 1; }
    NoteModal .explain { color: $text-muted; padding-bottom: 1; }
    NoteModal .problem { color: $error; height: auto; }
    NoteModal Horizontal { height: auto; align-horizontal: right; padding-top: 1; }
    NoteModal Button { margin-left: 2; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, explain: str, *, placeholder: str = "", submit_label: str = "Submit",
                 required: bool = True, missing: str = "A note is required: say what you checked or why.") -> None:
        super().__init__()
        self.title_text = title
        # Plain text, not markup: "[decisions]" or an item's "[C]" would vanish as a markup tag.
        self.explain = Content(explain) if isinstance(explain, str) else explain
        self.missing = missing
        self.placeholder = placeholder
        self.submit_label = submit_label
        self.required = required

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Content(self.title_text), classes="title")
            yield Static(self.explain, classes="explain")
            yield Input(placeholder=self.placeholder, id="note")
            yield Static("", classes="problem", id="problem")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button(self.submit_label, id="submit", variant="primary")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "submit":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        text = self.query_one(Input).value.strip()
        if self.required and not text:
            self.query_one("#problem", Static).update(self.missing)
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question; y / enter confirms, n / escape declines."""

    DEFAULT_CSS = """
    ConfirmModal { align: center middle; }
    ConfirmModal > Vertical {
        width: 70; max-width: 95%; height: auto; padding: 1 2;
        border: thick $warning 60%; background: $surface;
    }
    ConfirmModal .question { padding-bottom: 1; }
    ConfirmModal Horizontal { height: auto; align-horizontal: right; }
    ConfirmModal Button { margin-left: 2; }
    """

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str | Content, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, classes="question")
            with Horizontal():
                yield Button(f"{self.no} (n)", id="no")
                yield Button(f"{self.yes} (y)", id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
