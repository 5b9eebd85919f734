"""A one-line loading indicator with what is being waited for (a worker reading files, a job starting)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import LoadingIndicator, Static


class BusyLine(Horizontal):
    """A loading indicator and what is being waited for; hidden when idle."""

    DEFAULT_CSS = """
    BusyLine { height: 1; display: none; }
    BusyLine.-busy { display: block; }
    BusyLine LoadingIndicator { width: 6; height: 1; min-height: 1; background: transparent; }
    BusyLine Static { width: 1fr; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield LoadingIndicator()
        yield Static("", classes="busy-text")

    def show(self, text: str | None) -> None:
        self.text = text
        self.set_class(text is not None, "-busy")
        self.query_one(".busy-text", Static).update(text or "")
