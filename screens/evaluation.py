"""Phase 4 · Evaluation: the eval sets, the baseline, freshness, determinism, latency.

Above the items: the eval sets as they are on disk today. Add more of this phase's tools by
extending `compose_panels()`.
"""

from __future__ import annotations

from textual.app import ComposeResult

from tui.widgets.base_screen import PhaseScreen
from tui.widgets.facts import FactsPanel

EVAL_SETS = [
    ("task set", "eval.size"),
    ("hard / edge", "eval.hard_edge"),
    ("general set", "eval.general_set"),
]


class EvaluationScreen(PhaseScreen):
    TARGET = "phase-4"
    PHASE = 4
    HELP = ("Evaluation: the eval set's size and hard/edge cases, the baseline, freshness after every change, "
            "determinism, latency.")

    def compose_panels(self) -> ComposeResult:
        yield FactsPanel("Eval sets", EVAL_SETS, source="evals/task.jsonl · evals/general.jsonl", id="eval-sets")
