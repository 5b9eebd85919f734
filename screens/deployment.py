"""Phase 6 · Deployment: its gate, its items and what each needs.

Add this phase's own tools by overriding `compose_panels()` (they appear above the items).
"""

from __future__ import annotations

from tui.widgets.base_screen import PhaseScreen


class DeploymentScreen(PhaseScreen):
    TARGET = "phase-6"
    PHASE = 6
    HELP = "Deployment: version, checksums, manifest, merge, health, latency, licence, rollback, canary."
