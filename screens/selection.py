"""Phase 1 · Selection: requirements, the eval set, candidates and the choice.

Above the items: the requirements as weightgate.toml states them today (the table truncates
them). Add more of this phase's tools by extending `compose_panels()`.
"""

from __future__ import annotations

from textual.app import ComposeResult

from tui.widgets.base_screen import PhaseScreen
from tui.widgets.facts import FactsPanel

REQUIREMENTS = [
    ("task", "select.task"),
    ("quality", "select.threshold"),
    ("ceilings", "select.ceilings"),
    ("deployment", "select.deployment"),
    ("use", "select.intended_use"),
    ("eval set", "select.evalset"),
]


class SelectionScreen(PhaseScreen):
    TARGET = "phase-1"
    PHASE = 1
    HELP = ("Selection: requirements, the eval set, candidates and the choice. Fill [requirements] in "
            "weightgate.toml and evals/task.jsonl; attest training quality and domain fit.")

    def compose_panels(self) -> ComposeResult:
        yield FactsPanel("Requirements", REQUIREMENTS, source="weightgate.toml [requirements] · evals/task.jsonl",
                         id="requirements")
