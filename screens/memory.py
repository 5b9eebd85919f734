"""Phase 3 · Memory & precision: its gate, its items and what each needs.

Add this phase's own tools by overriding `compose_panels()` (they appear above the items).
"""

from __future__ import annotations

from tui.widgets.base_screen import PhaseScreen


class MemoryScreen(PhaseScreen):
    TARGET = "phase-3"
    PHASE = 3
    HELP = "Memory & precision: weight and context-cache budgets, the precision that fits with headroom, measured memory, quantized quality."
