"""Regenerate core/demo/templates/replay.jsonl: the demo model's own answers to the general
replay questions of core/demo/data.py (self-distilled replay), kept where they state the fact.

    .venv/bin/python scripts/demo_replay.py            # about a minute on two CPU cores

Run it when REPLAY_QUESTIONS changes; the demo's training data is built from the file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import torch
    import transformers

    from weightgate.core.demo.data import REPLAY_FILE, REPLAY_QUESTIONS
    from weightgate.core.demo.model import ensure_demo_model
    from weightgate.core.demo.replay import BATCH_SIZE, MAX_NEW_TOKENS, distill, write_replay

    demo = ensure_demo_model()
    began = time.perf_counter()
    kept, dropped = distill(demo.path, REPLAY_QUESTIONS)
    provenance = {"model": "SmolLM2-135M-Instruct (the demo model)", "gguf_sha256": demo.gguf_sha256,
                  "precision": "fp32", "decoding": "greedy", "max_new_tokens": MAX_NEW_TOKENS,
                  "batch_size": BATCH_SIZE, "torch": torch.__version__, "transformers": transformers.__version__}
    out = ROOT / "core" / "demo" / "templates" / REPLAY_FILE
    write_replay(out, kept, dropped, provenance)
    print(f"{len(kept)} kept, {len(dropped)} dropped (not stating the fact) in {time.perf_counter() - began:.0f} s "
          f"-> {out.relative_to(ROOT)}")
    for item in dropped:
        print(f"  dropped: {item.question}  (needs {item.fact!r}) -> {item.answer[:80]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
