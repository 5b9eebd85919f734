"""Phase 5 · Fine-tuning: its gate, its items and what each needs.

Add this phase's own tools by overriding `compose_panels()` (they appear above the items).
"""

from __future__ import annotations

from tui.widgets.base_screen import PhaseScreen


class FinetuningScreen(PhaseScreen):
    TARGET = "phase-5"
    PHASE = 5
    HELP = "Fine-tuning (only if the baseline misses the threshold): data checks, LoRA config, the run, and the ship gate."
