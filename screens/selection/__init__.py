"""Phase 1 · Selection: requirements, the eval set, candidates and the choice."""

from weightgate.screens.selection.screen import SelectionScreen

__all__ = ["SelectionScreen"]
