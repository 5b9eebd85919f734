"""Preference data for the DPO tests: planted pairs (the ISO date chosen, the day-first date
rejected) and a workspace switched to [training] method = "dpo"."""

from __future__ import annotations

import json
import random
from pathlib import Path

from training_helpers import MONTHS


def pair(rng: random.Random, rid: str) -> dict:
    m, d, y = rng.randrange(12), rng.randrange(1, 28), rng.randrange(1950, 2020)
    return {"id": rid, "prompt": f"Rewrite {MONTHS[m]} {d}, {y} as YYYY-MM-DD.",
            "chosen": f"{y}-{m + 1:02d}-{d:02d}", "rejected": f"{d:02d}/{m + 1:02d}/{y}"}


def write_pairs(ws, rows: list) -> Path:
    """rows (dicts, or raw strings for broken lines) as the workspace's data/train.jsonl."""
    path = ws.root / "data" / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def use_dpo(ws, **training) -> None:
    def change(doc):
        doc.setdefault("training", {})
        doc["training"]["method"] = "dpo"
        for key, value in training.items():
            doc["training"][key] = value
    ws.update_config(change)


def dpo_workspace(ws, pairs: int = 44, seed: int = 3, **training):
    """`ws` with `pairs` planted pairs and DPO switched on (4 pairs a step, validation every 3)."""
    rng = random.Random(seed)
    write_pairs(ws, [pair(rng, f"p{i:02d}") for i in range(pairs)])
    use_dpo(ws, **{"effective_batch": 4, "eval_every": 3, **training})
    return ws
