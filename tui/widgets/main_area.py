"""The main area of every screen: scrolls when its panels do not fit (80x24 over SSH), so
nothing is ever below the fold out of reach.

It takes the focus (tab) only while it has something to scroll; then ↑ ↓, page up / down, home
and end move it. A widget inside that takes the focus is scrolled into view as usual, and kept
in view when the panels above it grow.
"""

from __future__ import annotations

from textual.containers import VerticalScroll


class MainArea(VerticalScroll):
    DEFAULT_CSS = """
    MainArea { overflow-x: hidden; }
    MainArea:focus { background-tint: $primary 4%; }
    """

    def allow_focus(self) -> bool:
        return self.max_scroll_y > 0

    def watch_virtual_size(self) -> None:
        """Panels above the focused widget grew (a report, a shortlist arrived): keep it in view,
        so a phase screen on a short terminal opens with its item table showing."""
        focused = self.screen.focused if self.is_attached else None
        if focused is not None and focused is not self and self in focused.ancestors:
            self.call_after_refresh(focused.scroll_visible, animate=False)
