"""Overview: the current phase's gate and items, and what holds the gate."""

from __future__ import annotations

from weightgate.tui.widgets.base_screen import PhaseScreen


class OverviewScreen(PhaseScreen):
    TARGET = "overview"
    PHASE = None  # follows the report's current phase
    HELP = ("The current phase (the first one that is open but not passed): its items with status, why and "
            "evidence, and the items that hold its gate.")
