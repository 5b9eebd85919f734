"""Phase 4 · Evaluation: its gate, its items and what each needs.

Add this phase's own tools by overriding `compose_panels()` (they appear above the items).
"""

from __future__ import annotations

from tui.widgets.base_screen import PhaseScreen


class EvaluationScreen(PhaseScreen):
    TARGET = "phase-4"
    PHASE = 4
    HELP = "Evaluation: the eval set's size and hard/edge cases, the baseline, freshness after every change, determinism, latency."
