"""Phase 3 · Memory & precision: what each precision costs, what fits, what was measured."""

from weightgate.screens.memory.screen import MemoryScreen

__all__ = ["MemoryScreen"]
