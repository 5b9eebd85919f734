"""F1: every key, per screen, read from the bindings themselves (so it can never go stale)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static


@dataclass(frozen=True)
class HelpSection:
    title: str
    about: str
    bindings: tuple[Binding, ...]
    extra: tuple[tuple[str, str], ...] = ()  # (keys, what) pairs for keys that are not bindings


def _bindings(raw: Iterable) -> list[Binding]:
    return [b for b in Binding.make_bindings(raw) if b.description]


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 116; max-width: 98%; height: auto; max-height: 96%; padding: 0 1;
        border: thick $primary 60%; background: $surface;
    }
    HelpScreen #help-title { padding: 0 1 1 1; }
    HelpScreen Horizontal { height: auto; }
    HelpScreen Vertical { width: 1fr; height: auto; padding: 0 1; }
    HelpScreen .help-section { width: 1fr; padding-bottom: 1; }
    """

    BINDINGS = [Binding("escape,f1,q,question_mark", "dismiss_help", "Close help")]

    def __init__(self, sections: list[HelpSection]) -> None:
        super().__init__()
        self.sections = sections

    TITLE = Content.assemble(("weightgate · keys", "bold $primary"),
                             ("   escape closes this · ctrl+p opens the command palette anywhere", "$text-muted"))

    def compose(self) -> ComposeResult:
        # Two columns: the first section (keys that work everywhere) on the left, the rest right.
        first, rest = self.sections[:1], self.sections[1:]
        with VerticalScroll():
            yield Static(self.TITLE, id="help-title")
            with Horizontal():
                for column in (first, rest):
                    with Vertical():
                        for section in column:
                            yield Static(self.section_text(section), classes="help-section")

    def section_text(self, section: HelpSection) -> Content:
        lines = [Content.styled(section.title, "bold underline")]
        if section.about:
            lines.append(Content.styled(section.about, "$text-muted"))
        rows = self._rows(section.bindings)
        rows.extend(section.extra)
        for keys, what in rows:
            lines.append(Content.assemble((f"  {keys:<16}", "bold $accent"), what))
        return Content("\n").join(lines)

    def help_text(self) -> Content:
        return Content("\n\n").join([self.TITLE, *(self.section_text(section) for section in self.sections)])

    def _rows(self, bindings: Iterable) -> list[tuple[str, str]]:
        """(keys, what): keys of one action share a row; a binding group shares one row."""
        order: list[str] = []
        keys: dict[str, list[str]] = {}
        what: dict[str, str] = {}
        for binding in _bindings(bindings):
            if binding.group is not None:
                label, about = binding.group.description, f"Go to that {binding.group.description.lower()}"
            else:
                label, about = f"{binding.action}|{binding.description}", binding.description
            if label not in keys:
                order.append(label)
                keys[label], what[label] = [], about
            shown = self.app.get_key_display(binding)
            if shown not in keys[label]:
                keys[label].append(shown)
        return [(", ".join(keys[label]) if len(keys[label]) < 4 else f"{keys[label][0]}-{keys[label][-1]}",
                 what[label]) for label in order]

    @property
    def plain(self) -> str:
        return self.help_text().plain

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
