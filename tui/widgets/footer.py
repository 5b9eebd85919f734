"""A footer that always shows every key of the screen: one row when they fit, otherwise the
compact form (less padding), and when even that does not fit, as many rows as it takes.

Textual's Footer lays its keys out in one row and cuts off whatever does not fit (at 160 columns
the Fine-tuning screen lost Resume, F1, t and q). This one composes the same FooterKey widgets
(a click still presses the key; a disabled key stays dimmed) but packs them into rows by their
width, and packs again when the terminal is resized.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import groupby

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.containers import HorizontalGroup
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey, FooterLabel, KeyGroup


@dataclass
class FooterEntry:
    """One unit the packer keeps together: a key with its description, or a group of keys with
    its label ("1 2 3 4 5 6 Phase")."""
    keys: list[tuple[str, str, str, str, bool, str]]  # key, display, description, action, enabled, tooltip
    label: str = ""
    grouped: bool = False
    widths: dict[bool, int] = field(default_factory=dict)

    def width(self, compact: bool) -> int:
        """Cells taken on screen, margins included (the footer's CSS below fixes them)."""
        if self.grouped:
            keys = sum(cell_len(display) for _, display, *_ in self.keys) + len(self.keys) - 1
            return 1 + keys + 1 + cell_len(self.label) + 1
        _, display, description, *_ = self.keys[0]
        if compact:
            return cell_len(display) + (1 + cell_len(description) if description else 0) + 1
        return 1 + cell_len(display) + 1 + (cell_len(description) + 1 if description else 0)


def pack_rows(entries: list[FooterEntry], width: int, compact: bool) -> list[list[FooterEntry]]:
    """Greedy rows of entries no wider than `width` (an entry wider than a row gets its own)."""
    rows: list[list[FooterEntry]] = [[]]
    used = 0
    for entry in entries:
        size = entry.width(compact)
        if rows[-1] and used + size > width:
            rows.append([])
            used = 0
        rows[-1].append(entry)
        used += size
    return [row for row in rows if row]


class WrappingFooter(Footer):
    """Every shown binding of the screen, wrapped onto more rows when one is not enough."""

    DEFAULT_CSS = """
    WrappingFooter {
        layout: vertical;
        height: auto;
        max-height: 4;
    }
    WrappingFooter > .footer-row { width: 1fr; height: 1; }
    WrappingFooter FooterKey { margin: 0; }
    WrappingFooter.-compact FooterKey { margin: 0 1 0 0; }
    WrappingFooter FooterKey.-grouped { margin: 0 1 0 0; }
    WrappingFooter KeyGroup { margin: 0; padding-left: 1; }
    WrappingFooter FooterLabel, WrappingFooter.-compact FooterLabel { margin: 0 1 0 0; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows_shown = 1
        self._packed_for: int | None = None

    def entries(self) -> list[FooterEntry]:
        """The screen's shown bindings in footer order, one entry per action (or per group)."""
        by_action: defaultdict[str, list] = defaultdict(list)
        for _node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if binding.show:
                by_action[binding.action].append((binding, enabled, tooltip))
        entries: list[FooterEntry] = []
        for group, members in groupby(by_action.values(), lambda bindings: bindings[0][0].group):
            members = list(members)
            keys = [(b.key, self.app.get_key_display(b), b.description, b.action, enabled, tooltip)
                    for b, enabled, tooltip in (m[0] for m in members)]
            if group is not None and len(members) > 1:
                entries.append(FooterEntry(keys, label=group.description, grouped=True))
            else:
                entries.extend(FooterEntry([key]) for key in keys)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            found = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _node, binding, enabled, tooltip = found
                entries.append(FooterEntry([(binding.key, self.app.get_key_display(binding), binding.description,
                                             binding.action, enabled, binding.tooltip or binding.description)]))
        return entries

    def _available_width(self) -> int:
        return self.size.width or self.app.size.width

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        entries = self.entries()
        width = self._available_width()
        self._packed_for = width
        compact = sum(entry.width(False) for entry in entries) > width
        self.set_class(compact, "-compact")
        rows = pack_rows(entries, width, compact)
        self.rows_shown = len(rows)
        for row in rows:
            with HorizontalGroup(classes="footer-row"):
                for entry in row:
                    yield from self._entry_widgets(entry)

    def _entry_widgets(self, entry: FooterEntry) -> list[Widget]:
        if entry.grouped:
            group = KeyGroup(*(FooterKey(key, display, "", action, disabled=not enabled,
                                         tooltip=tooltip or description, classes="-grouped")
                               for key, display, description, action, enabled, tooltip in entry.keys))
            return [group, FooterLabel(entry.label)]
        key, display, description, action, enabled, tooltip = entry.keys[0]
        compact = self.has_class("-compact")
        footer_key = FooterKey(key, display, description, action, disabled=not enabled, tooltip=tooltip,
                               classes="-compact" if compact else "")
        footer_key.set_reactive(FooterKey.compact, compact)
        return [footer_key]

    def on_resize(self) -> None:
        if self._bindings_ready and self.size.width != self._packed_for:
            self.call_after_refresh(self.recompose)

    def visible_keys(self) -> list[str]:
        """The keys shown, as their display text (for tests and screen readers)."""
        return [key.key_display for key in self.query(FooterKey)]
