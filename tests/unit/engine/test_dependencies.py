"""The dependency table: every item's inputs declared once, rendered in the README from the
code, and `weightgate status --why ITEM` reading it. (That the code follows the table is proven
by perturbation on a finished journey: tests/e2e/test_demo_journey.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import fill_requirements, write_cases

from weightgate.core.engine.checklist import FINETUNING_DECISION_INPUTS, ITEMS, TRAINING_RUN_INPUTS
from weightgate.core.engine.dependencies import table_markdown
from weightgate.core.engine.fingerprints import COMPUTE, INPUTS
from weightgate.core.engine.workspace import init_workspace

ROOT = Path(__file__).resolve().parents[3]


def test_every_declared_input_is_computed_and_described():
    assert set(INPUTS) == set(COMPUTE)
    for inputs in [item.inputs for item in ITEMS] + [FINETUNING_DECISION_INPUTS, TRAINING_RUN_INPUTS]:
        assert inputs and len(set(inputs)) == len(inputs) and set(inputs) <= set(COMPUTE), inputs


def test_the_readme_table_is_the_code_s():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- dependency table: generated, do not edit -->\n") + len(
        "<!-- dependency table: generated, do not edit -->\n")
    end = readme.index("\n<!-- end of dependency table -->")
    assert readme[start:end] == table_markdown(), \
        "regenerate it: python -m weightgate.core.engine.dependencies (between the markers in README.md)"
    rows = [line for line in table_markdown().splitlines() if line.startswith("| `") and "." in line.split("`")[1]]
    assert len({line.split("`")[1] for line in rows if line.split("`")[1] in {i.id for i in ITEMS}}) == len(ITEMS)


def _wg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weightgate", *args], capture_output=True, text=True, timeout=120)


def test_status_why_names_the_inputs_and_what_changed(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    fill_requirements(ws)
    write_cases(ws.root / "evals" / "task.jsonl", 20)
    _wg("-w", str(ws.root), "status")   # the live checks record what they decided
    done = _wg("-w", str(ws.root), "status", "--why", "select.evalset", "--json")
    why = json.loads(done.stdout)
    assert done.returncode == 0 and why["status"] == "pass" and why["live"] is True, done.stdout + done.stderr
    assert [state["input"] for state in why["inputs"]] == ["evalset.task"] and why["changed"] == []
    recorded = why["inputs"][0]["recorded"]
    assert recorded and recorded == why["inputs"][0]["today"]   # the live check recorded its result
    with (ws.root / "evals" / "task.jsonl").open("a") as handle:
        handle.write(json.dumps({"id": "extra", "input": "one more", "expected": "x"}) + "\n")
    why = json.loads(_wg("-w", str(ws.root), "status", "--why", "select.evalset", "--json").stdout)
    assert why["changed"] == ["evalset.task"] and why["inputs"][0]["today"] != recorded
    text = _wg("-w", str(ws.root), "status", "--why", "select.evalset").stdout
    assert "evalset.task" in text and "<- changed" in text and "the task eval set file" in text
    # A record never made: no fingerprints at decision time, and the command says what it needs.
    done = _wg("-w", str(ws.root), "status", "--why", "eval.baseline")
    assert done.returncode == 1 and "decided  on no record yet" in done.stdout and "precision" in done.stdout
    done = _wg("-w", str(ws.root), "status", "--why", "eval.nothing")
    assert done.returncode == 2 and "no checklist item named 'eval.nothing'" in done.stderr
