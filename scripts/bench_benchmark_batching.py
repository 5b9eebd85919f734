"""Tokens/s of the candidate benchmark's eval on the tiny test model: one request at a time
(batch 1) against the batched path every eval uses (batch 8), in the same run; prints the ratio.

    PYTHONPATH=. python scripts/bench_benchmark_batching.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from helpers import add_candidate, tiny_workspace  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402

from weightgate.core.evaluation.benchmark import run_benchmark  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny")
        ws = tiny_workspace(Path(tmp) / "ws", model, header={"max_new_tokens": 16})
        add_candidate(ws, str(model), 300_000)
        speeds = {}
        for batch in (1, 8, 1, 8):   # interleaved: a load spike hits both
            row = run_benchmark(ws, batch_size=batch, latency_requests=2, rerun=True)["rows"][0]
            speeds.setdefault(batch, []).append(row["throughput_tokens_per_s"])
        one, eight = max(speeds[1]), max(speeds[8])
        print(f"benchmark eval throughput: batch 1 {one:.0f} tokens/s, batch 8 {eight:.0f} tokens/s, "
              f"ratio {eight / one:.2f}x")


if __name__ == "__main__":
    main()
