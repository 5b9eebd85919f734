"""Generation leaves no process-wide float state behind (subnormal flushing is scoped)."""

import sys

from weightgate.core.evaluation.generation import generate_all, generation_settings
from weightgate.core.memory.loading import load_model


def test_flush_denormal_does_not_leak(tiny_model_dir):
    loaded = load_model(tiny_model_dir, "fp32")
    assert loaded.precision.get("flush_denormal")
    settings = generation_settings(tiny_model_dir, max_new_tokens=3)
    generate_all(loaded, ["hello there", "a date"], settings, batch_size=2)
    tiny = sys.float_info.min / 2**10   # a subnormal double
    assert tiny > 0.0
    import torch

    assert torch.tensor([1e-40], dtype=torch.float32).item() != 0.0
