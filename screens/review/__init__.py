"""Review: a blind A/B review of two eval runs, one case at a time, resumable."""

from weightgate.screens.review.screen import ReviewScreen

__all__ = ["ReviewScreen"]
