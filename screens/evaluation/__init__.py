"""Phase 4 · Evaluation: the eval sets, the runs, the baseline, freshness, determinism, latency."""

from weightgate.screens.evaluation.screen import EvaluationScreen

__all__ = ["EvaluationScreen"]
