"""The main area of every screen: scrolls when its panels do not fit (80x24 over SSH), so
nothing is ever below the fold out of reach.

It takes the focus (tab) only while it has something to scroll; then ↑ ↓, page up / down, home
and end move it. A widget inside that takes the focus is scrolled into view as usual.
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
