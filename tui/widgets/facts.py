"""A compact panel of a phase's key facts: one line per item, its status and its full detail.

The item table truncates details to fit; a phase screen lists the few items whose values the
user wants at a glance (the requirements, the eval sets) in a FactsPanel above the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.content import Content
from textual.widgets import Static

from weightgate.tui.widgets.status import item_look

if TYPE_CHECKING:
    from weightgate.core.engine.status import Report


class FactsPanel(Static):
    """`facts`: (label, item id) pairs; `source` says where the user edits them."""

    DEFAULT_CSS = """
    FactsPanel {
        height: auto; margin: 0 0 1 0; padding: 0 1;
        border: round $panel; border-title-color: $text-muted; border-subtitle-color: $text-muted;
    }
    """

    def __init__(self, title: str, facts: list[tuple[str, str]], *, source: str = "", **kwargs) -> None:
        super().__init__("", **kwargs)
        self.facts = facts
        self.border_title = title
        self.border_subtitle = source

    def on_mount(self) -> None:
        self.watch(self.app, "report", self._show)

    def text(self, report: Report | None) -> Content:
        width = max(len(label) for label, _ in self.facts) + 2
        lines = []
        for label, item_id in self.facts:
            try:
                status = report.item(item_id) if report is not None else None
            except KeyError:
                status = None
            if status is None:
                lines.append(Content.assemble((f"{label:<{width}}", "bold"), ("…", "$text-muted")))
                continue
            look = item_look(status.status)
            detail = status.detail if status.status == "pass" else f"{look.word}: {status.detail}"
            lines.append(Content.assemble((f"{label:<{width}}", "bold"), (f"{look.icon} ", f"${look.color}"
                                          if look.color != "muted" else "$text-muted"), detail))
        return Content("\n").join(lines)

    def _show(self, report: Report | None) -> None:
        content = self.text(report)
        if content != getattr(self, "_content", None):
            self._content = content
            self.update(content)

    @property
    def plain(self) -> str:
        content = getattr(self, "_content", None)
        return content.plain if content is not None else ""
