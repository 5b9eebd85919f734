"""Phase 5 · Fine-tuning: the data checks, the run, its loss, its checkpoints and the gate."""

from weightgate.screens.finetuning.screen import FinetuningScreen

__all__ = ["FinetuningScreen"]
