"""Phase 2 · Verification: its gate, its items and what each needs.

Add this phase's own tools by overriding `compose_panels()` (they appear above the items).
"""

from __future__ import annotations

from tui.widgets.base_screen import PhaseScreen


class VerificationScreen(PhaseScreen):
    TARGET = "phase-2"
    PHASE = 2
    HELP = "Verification: safetensors, checksums, headers, pickle policy, remote code, source revision, licence."
