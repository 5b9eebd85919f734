"""A workspace ready to ship for the release tests: the tiny model (apache-2.0) locked as a local
copy of `example-org/tiny-base`, phase 1 filled in, ceilings this machine meets with its CPUs
shared, and a short task set whose expected answers are what the model says for three cases (so
the shipped results have passes a canary can lose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from helpers import phase1_ready

from weightgate.core.engine.workspace import Workspace
from weightgate.core.weights.local_source import lock_local_source

PASSING = ("c000", "c001", "c002")


def shippable_workspace(root: Path, *, cases: int, max_new_tokens: int, canary: tuple[str, ...] = (),
                        before_eval: Callable[[Workspace, Path], None] | None = None) -> tuple[Workspace, Path, dict]:
    """(workspace, model directory, the task run with three passes). before_eval(ws, model) runs
    once the model is locked (decide an adapter there); `canary` tags those cases canary."""
    from tiny_model import build_tiny_model

    from weightgate.core.evaluation.runner import run_eval

    model = build_tiny_model(root / "tiny-base")
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    ws = phase1_ready(root / "ws")
    # Ceilings this machine meets even with its CPUs shared (the latency code is tested elsewhere).
    ws.update_config(lambda doc: doc["requirements"]["ceilings"].update(p95_latency_ms=60000, min_tokens_per_s=0.5))
    path = ws.evals_dir / "task.jsonl"
    lines = path.read_text().splitlines()[:cases]
    path.write_text(json.dumps({"_set": {"max_new_tokens": max_new_tokens}}) + "\n" + "\n".join(lines) + "\n")
    # A local copy of a hub model: the lock says which repo it came from (the card's base_model).
    lock_local_source(ws, str(model), origin="example-org/tiny-base")
    if before_eval is not None:
        before_eval(ws, model)
    first = run_eval(ws, "task", device="cpu")
    # Only scoring changes below, so the second run re-scores the first.
    outputs = {case["id"]: case["output"] for case in map(json.loads, (ws.runs_dir / first["run"] /
                                                                         "cases.jsonl").read_text().splitlines())}
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows[1:]:
        if row["id"] in PASSING:
            row["expected"] = outputs[row["id"]]
        if row["id"] in canary:
            row["tags"] = row["tags"] + ["canary"]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = run_eval(ws, "task", device="cpu")
    assert run["rescored_from"] == first["run"] and run["summary"]["passed"] == len(PASSING)
    return ws, model, run
