"""Phase 1 · Selection: its gate, its items and what each needs.

Add this phase's own tools by overriding `compose_panels()` (they appear above the items).
"""

from __future__ import annotations

from tui.widgets.base_screen import PhaseScreen


class SelectionScreen(PhaseScreen):
    TARGET = "phase-1"
    PHASE = 1
    HELP = "Selection: requirements, the eval set, candidates and the choice. Fill [requirements] in weightgate.toml and evals/task.jsonl; attest training quality and domain fit."
