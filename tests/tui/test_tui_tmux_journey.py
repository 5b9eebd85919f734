"""The six phases in the real TUI in a real terminal (tmux), on the tiny model: choose and fetch
(1), verify (2), fit (3), eval the task and general sets (4), data check, train and the gate (5),
ship a candidate, health-check it, promote it (6). The same journey as `weightgate demo
--headless`, driven by keys only; every long step is a real detached job. The tiny model is not
trained to pass anything: the test checks that each step runs and the screens show its result, not
that gates open; so ship and promote go through the override modal, with a reason typed in."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from helpers import phase1_ready
from terminal import Terminal, tui_command

from weightgate.core.weights.candidates import add_candidate

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None,
                       reason="tmux is not on PATH (CI installs it: apt-get install -y tmux)"),
]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def training_data(path: Path, count: int = 40) -> None:
    rng = random.Random(7)
    rows = []
    for n in range(count):
        m, d, y = rng.randrange(12), rng.randrange(1, 28), rng.randrange(1950, 2030)
        rows.append({"messages": [{"role": "user", "content": f"Rewrite as YYYY-MM-DD: {d} {MONTHS[m]} {y}"},
                                  {"role": "assistant", "content": f"{y}-{m + 1:02d}-{d:02d}"}],
                     "tags": ["edge" if n % 2 else "common"]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def poll(condition, what: str, timeout: float = 30.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def workspace(tmp_path: Path, tiny_model_dir: Path):
    ws = phase1_ready(tmp_path / "ws")
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    add_candidate(ws, str(model), "tiny test model")
    path = ws.evals_dir / "task.jsonl"
    path.write_text(json.dumps({"_set": {"max_new_tokens": 4}}) + "\n" + path.read_text())
    general = [{"id": f"g{n}", "input": f"{n} + 1 =", "expected": str(n + 1), "scorer": "contains"}
               for n in range(6)]
    (ws.evals_dir / "general.jsonl").write_text(json.dumps({"_set": {"max_new_tokens": 4}}) + "\n"
                                                + "".join(json.dumps(row) + "\n" for row in general))
    training_data(ws.root / "data" / "train.jsonl")

    def settings(doc):
        import tomlkit

        doc["requirements"]["ceilings"]["memory_budget_gib"] = 4
        training = tomlkit.table()
        training.update({"epochs": 1, "effective_batch": 4, "eval_every": 3})
        doc["training"] = training
    ws.update_config(settings)
    return ws


@pytest.mark.timeout(1200)
def test_the_six_phases_by_keys_in_tmux(workspace) -> None:
    ws = workspace
    term = Terminal(tui_command(ws.root))
    try:
        term.wait_for("1 Selection", "RAM", timeout=60)
        # 1 · choose the shortlisted candidate and fetch it (a local model is hashed and locked)
        term.send("1")
        term.wait_for("Phase 1 · Selection", "150K")
        term.send("c")
        term.wait_for("The choice is recorded in weightgate.toml")
        term.send("the only candidate", "Enter")
        term.wait_for("The choice is recorded in weightgate.toml", absent=True)
        poll(lambda: (ws.config().get("decisions") or {}).get("model"), "the choice")
        term.send("f")
        poll(ws.lock_path.exists, "weightgate.lock", timeout=60)

        # 2 · verify: a job; the Jobs screen follows it
        term.send("2")
        term.wait_for("Phase 2 · Verification")
        term.send("v")
        term.wait_for("✓ verify succeeded", timeout=90)  # the screen follows its own job

        # 3 · fit: the largest precision that fits is recorded
        term.send("3")
        term.wait_for("Memory per precision", "fp32 native", timeout=30)
        term.send("f")
        term.wait_for("precision = fp32", timeout=30)
        assert ws.config()["decisions"]["precision"] == "fp32"

        # 4 · the task set (becomes the baseline) and the general set, on this screen
        term.send("4")
        term.wait_for("Phase 4 · Evaluation", "Eval task")
        term.send("e")
        term.wait_for("B ", "task", timeout=120)
        term.send("g")
        term.wait_for("general", "complete", timeout=120)

        # 5 · data check, train (the chart fills in), the gate on the adapter
        term.send("5")
        term.wait_for("Phase 5 · Fine-tuning", "Training run", timeout=30)
        term.send("d")
        term.wait_for_job("data_check", timeout=120)
        term.send("5")
        term.wait_for("balance        ✓", "split          ✓", timeout=30)
        term.send("s")
        term.wait_for("Training started", timeout=120)
        term.wait_for("finished", "★", "best:", timeout=480)
        term.wait_for("succeeded job", timeout=60)       # the jobs list has the run ended: g is enabled
        term.send("g")
        term.wait_for_job("tune_gate", timeout=480)

        # 6 · ship a candidate (phase 6 is locked: the modal asks the override's reason), health-check
        # it, promote it (phase 6 has not passed on it: the same modal)
        term.send("6")
        term.wait_for("Phase 6 · Deployment")
        term.send("s")
        term.wait_for("Phase 6 is locked: ship anyway?", "Held by", timeout=30)
        term.send("tmux journey on a tiny model")
        term.send("Enter")
        term.wait_for_job("ship", timeout=480)
        term.send("6")
        term.wait_for("v1", "candidate", "✓ match", timeout=60)
        term.send("h")
        term.wait_for("v1 ready", timeout=180)
        term.send("p")
        term.wait_for("has not passed on it", timeout=60)
        term.send("tmux journey on a tiny model")
        term.send("Enter")
        term.wait_for("current is now", timeout=60)
        term.wait_for("v1", "current", timeout=30)

        term.send("q")
        term.wait_for("tui exited with 0", timeout=30)
    finally:
        term.close()
