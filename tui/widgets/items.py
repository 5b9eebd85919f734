"""The checklist items of one phase: a table (status, severity, title, detail) and a detail pane.

Both take core.engine.status.ItemStatus objects and know nothing about screens. The table updates
cells in place when the rows stay the same, so the cursor never jumps on a refresh.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Static

from weightgate.tui.widgets.status import item_look, on_theme_change, rich_style, severity_look

if TYPE_CHECKING:
    from weightgate.core.engine.status import ItemStatus

COLUMNS = (("status", "Status", 12), ("severity", "Severity", 11), ("title", "Item", 40), ("detail", "Detail", None))
FIXED_WIDTH = sum(width or 0 for _, _, width in COLUMNS) + 2 * len(COLUMNS)  # cell padding: 1 each side
MIN_DETAIL_WIDTH = 12


class ItemTable(DataTable):
    """One row per item; the row key is the item id."""

    DEFAULT_CSS = """
    ItemTable { height: auto; max-height: 60%; min-height: 5; overflow-x: hidden; }
    """

    class ItemSelected(Message):
        """The highlighted item changed (cursor moved or rows replaced)."""

        def __init__(self, item_id: str | None) -> None:
            super().__init__()
            self.item_id = item_id

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._statuses: dict[str, ItemStatus] = {}
        self._cells: dict[str, tuple] = {}
        self._detail_width = 0

    def on_mount(self) -> None:
        self._add_columns()
        on_theme_change(self, self._repaint)

    def _add_columns(self) -> None:
        # The detail column takes the rest of the width, so the table never scrolls sideways.
        self._detail_width = max(MIN_DETAIL_WIDTH, self.size.width - FIXED_WIDTH - 1)
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width or self._detail_width)

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> bool:
        """Re-lay the columns if the width changed; True if the rows were rebuilt."""
        if not self.size.width or max(MIN_DETAIL_WIDTH, self.size.width - FIXED_WIDTH - 1) == self._detail_width:
            return False
        keep = self.selected_id
        self.clear(columns=True)
        self._add_columns()
        self._rebuild(list(self._statuses), keep)
        return True

    @property
    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - cursor outside the rows
            return None

    def status_of(self, item_id: str) -> ItemStatus | None:
        return self._statuses.get(item_id)

    def select_item(self, item_id: str) -> bool:
        try:
            self.move_cursor(row=self.get_row_index(item_id))
        except Exception:  # noqa: BLE001 - no such row
            return False
        return True

    def show(self, statuses: list[ItemStatus]) -> None:
        keep = self.selected_id
        ids = [status.item.id for status in statuses]
        self._statuses = {status.item.id: status for status in statuses}
        if self._fit_columns():
            pass
        elif ids == list(self._cells):
            self._update_in_place()
        else:
            self._rebuild(ids, keep)

    def _row(self, status: ItemStatus) -> tuple:
        variables = self.app.theme_variables
        item = status.item
        severity = severity_look(item.severity.value)
        title = Text(item.title, no_wrap=True, overflow="ellipsis")
        if item.mode.value == "attest":
            title.append("  (attest)", style=rich_style("muted", variables))
        return (
            item_look(status.status).text(variables, bold=status.holds_gate),
            Text(severity.word, style=rich_style(severity.color, variables), no_wrap=True),
            title,
            Text(status.detail.replace("\n", " "), no_wrap=True, overflow="ellipsis",
                 style=rich_style("muted", variables) if status.status in ("pass", "not-needed") else ""),
        )

    def _rebuild(self, ids: list[str], keep: str | None) -> None:
        self.clear()
        self._cells = {}
        for item_id in ids:
            row = self._row(self._statuses[item_id])
            self._cells[item_id] = row
            self.add_row(*row, key=item_id)
        if keep in self._cells:
            self.select_item(keep)

    def _update_in_place(self) -> None:
        columns = [key for key, _, _ in COLUMNS]
        for item_id, status in self._statuses.items():
            row = self._row(status)
            old = self._cells.get(item_id)
            for index, (column, value) in enumerate(zip(columns, row)):
                if not old or old[index] != value:
                    self.update_cell(item_id, column, value)
            self._cells[item_id] = row

    def _repaint(self) -> None:
        self._cells = {item_id: () for item_id in self._cells}
        self._update_in_place()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.ItemSelected(event.row_key.value if event.row_key else None))


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch)) if epoch else "?"


def item_detail(status: ItemStatus | None) -> Content:
    """Everything about one item: why, what was measured or what to do, evidence, inputs."""
    if status is None:
        return Content.styled("Select an item to see why it matters and what it needs.", "$text-muted")
    item = status.item
    look = item_look(status.status)
    severity = severity_look(item.severity.value)

    def row(label: str, value: Content | str) -> Content:
        return Content.assemble((f"{label:<10}", "bold $text-muted"), value)

    lines: list[Content] = [
        Content.assemble((item.title, "bold"), ("   " + item.id, "$text-muted")),
        row("Status", Content.assemble(look.content(bold=True),
                                       "   holds the gate" if status.holds_gate else "")),
        row("Severity", Content.assemble(severity.content(), f" · decided {_mode_words(item.mode.value)}")),
        row("Why", item.why),
        row("Detail", status.detail or "—"),
    ]
    evidence = status.evidence
    if evidence is not None:
        note = f": {evidence.note}" if evidence.note else ""
        lines.append(row("Evidence", f"{evidence.kind} · {evidence.status} · {evidence.by or '?'} · "
                                     f"{_when(evidence.time)}{note}"))
    else:
        lines.append(row("Evidence", Content.styled("none recorded yet", "$text-muted")))
    if status.values:
        lines.append(row("Values", values_text(status.values)))
    if status.stale_inputs:
        lines.append(row("Stale", Content.styled("changed since the evidence: " + ", ".join(status.stale_inputs),
                                                 "$warning")))
    if item.needs and status.status in ("todo", "stale", "fail") and item.needs not in (status.detail or ""):
        lines.append(row("Needs", item.needs))
    if item.inputs:
        lines.append(row("Inputs", ", ".join(item.inputs)))
    lines.append(row("Actions", _actions_hint(status)))
    return Content("\n").join(lines)


def values_text(values: dict) -> str:
    """An item's measured values in words: its `summary` when the check wrote one (eval.latency's
    per-batch lines), else the plain values; nested tables are counted, not dumped."""
    summary = values.get("summary")
    if isinstance(summary, list) and summary:
        return "\n          ".join(str(line) for line in summary)
    if isinstance(summary, str) and summary:
        return summary
    parts = []
    for key, value in list(values.items())[:8]:
        if isinstance(value, (dict, list)) and any(isinstance(v, (dict, list)) for v in
                                                   (value.values() if isinstance(value, dict) else value)):
            value = f"({len(value)} entries)"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _mode_words(mode: str) -> str:
    return "by a person (attest with a note)" if mode == "attest" else "automatically (a check measures it)"


def _actions_hint(status: ItemStatus) -> Content:
    item = status.item
    hints: list[str] = []
    if item.mode.value == "attest":
        hints.append("a attest")
    if item.severity.value == "recommended":
        hints.append("w waive")
    if status.evidence is not None and status.evidence.kind in ("attest", "waive"):
        hints.append("r revoke")
    if not hints:
        return Content.styled("none here: a check decides it", "$text-muted")
    return Content("  ·  ".join(hints))


class ItemDetail(VerticalScroll):
    """The detail pane under the table."""

    DEFAULT_CSS = """
    ItemDetail { height: 1fr; min-height: 6; border-top: hkey $panel; padding: 0 1; }
    ItemDetail > Static { width: 1fr; }
    """

    can_focus = False

    def compose(self):
        yield Static(item_detail(None), id="detail-text")

    def show(self, status: ItemStatus | None) -> None:
        content = item_detail(status)
        if content != getattr(self, "_content", None):
            self._content = content
            self.query_one("#detail-text", Static).update(content)

    @property
    def plain(self) -> str:
        return getattr(self, "_content", item_detail(None)).plain
