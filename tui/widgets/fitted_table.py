"""A DataTable that fits its width: one flexible column takes what is left, and the least
important columns are dropped when the terminal is narrow, so it never scrolls sideways.

Subclasses declare COLUMNS and turn a row's data into cells in `cells()`; `show()` takes
(key, data) pairs, updates cells in place while the keys stay the same (the cursor never
jumps) and rebuilds otherwise. Cells are re-rendered on a theme switch (Rich styles carry the
theme's colours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from rich.text import Text
from textual.widgets import DataTable

from weightgate.tui.widgets.status import on_theme_change


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None = None  # None: the flexible column (exactly one)
    drop: int = 0             # 0: always shown; otherwise the highest number is dropped first


def middle_ellipsis(text: str, width: int) -> str:
    """Shorten in the middle, keeping more of the end: shard numbers and suffixes tell files
    apart ("model-00…-of-00004.safetensors"), model names tell repos apart ("Hugg…/SmolLM2-135M")."""
    if width <= 0 or len(text) <= width:
        return text
    if width < 4:
        return text[:width]
    head = (width - 1) * 2 // 5
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail:]


class FittedTable(DataTable):
    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    MIN_FLEX: ClassVar[int] = 16

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        super().__init__(**kwargs)
        self._row_data: dict[str, Any] = {}
        self._cells: dict[str, dict[str, Text]] = {}
        self._column_layout: tuple[tuple[str, int], ...] = ()

    def on_mount(self) -> None:
        self._relayout()
        on_theme_change(self, self._repaint)

    def on_resize(self) -> None:
        self._relayout()

    # --- columns ----------------------------------------------------------------------------

    def fit(self, width: int) -> tuple[tuple[str, int], ...]:
        """(key, width) of the columns shown at `width` cells."""
        columns = list(self.COLUMNS)
        while True:
            fixed = sum(c.width or 0 for c in columns) + 2 * len(columns)  # cell padding
            flex = width - fixed - 1  # the vertical scrollbar
            droppable = [c for c in columns if c.drop]
            if flex >= self.MIN_FLEX or not droppable:
                break
            columns.remove(max(droppable, key=lambda c: c.drop))
        flex = max(self.MIN_FLEX // 2, flex)
        return tuple((c.key, c.width if c.width is not None else flex) for c in columns)

    def width_of(self, key: str) -> int:
        """The width column `key` is shown at (0 if dropped)."""
        return dict(self._column_layout).get(key, 0)

    @property
    def shown_columns(self) -> list[str]:
        return [key for key, _ in self._column_layout]

    def _relayout(self) -> None:
        width = self.size.width
        if not width:
            if self._column_layout:
                return
            width = 100  # not laid out yet: a guess, corrected on the first resize
        layout = self.fit(width)
        if layout == self._column_layout:
            return
        keep = self.selected_key
        self._column_layout = layout
        labels = {c.key: c.label for c in self.COLUMNS}
        self.clear(columns=True)
        for key, column_width in layout:
            self.add_column(labels[key], key=key, width=column_width)
        self._rebuild(keep)

    # --- rows ---------------------------------------------------------------------------------

    def cells(self, data: Any) -> dict[str, Text]:
        raise NotImplementedError

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - cursor outside the rows
            return None

    def select_key(self, key: str) -> bool:
        try:
            self.move_cursor(row=self.get_row_index(key))
        except Exception:  # noqa: BLE001 - no such row
            return False
        return True

    def data_of(self, key: str | None) -> Any:
        return self._row_data.get(key) if key is not None else None

    def show(self, rows: Sequence[tuple[str, Any]]) -> None:
        keep = self.selected_key
        keys = [key for key, _ in rows]
        self._row_data = dict(rows)
        if keys != list(self._cells):
            self._rebuild(keep)
            return
        for key, data in rows:
            new = self.cells(data)
            old = self._cells[key]
            for column in self.shown_columns:
                if old.get(column) != new.get(column):
                    self.update_cell(key, column, new.get(column, Text("")))
            self._cells[key] = new

    def _rebuild(self, keep: str | None) -> None:
        self.clear()
        self._cells = {}
        for key, data in self._row_data.items():
            cells = self.cells(data)
            self._cells[key] = cells
            self.add_row(*(cells.get(column, Text("")) for column in self.shown_columns), key=key)
        if keep in self._cells:
            self.select_key(keep)

    def _repaint(self) -> None:
        self._cells = {key: {} for key in self._cells}
        self.show(list(self._row_data.items()))

    def row_text(self, key: str) -> str:
        """The plain text of a row as shown (tests, copy)."""
        cells = self._cells.get(key) or {}
        return "  ".join(cells[column].plain for column in self.shown_columns if column in cells)

    @property
    def plain(self) -> str:
        return "\n".join(self.row_text(key) for key in self._cells)
