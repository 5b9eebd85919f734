"""Entry to phase 5: decided from the base model's baseline run and the quality threshold, with the
numbers; prompting first decided by a recorded few-shot variant of the task eval run."""

import json
from pathlib import Path

import pytest
from helpers import phase1_ready

from weightgate.core.demo.data import demo_train_lines
from weightgate.core.evaluation.finetune_need import FINETUNING_DECISION
from weightgate.core.evaluation.runner import run_eval
from weightgate.core.evaluation.runs import read_run
from weightgate.core.gates import compute_report
from weightgate.core.training.prompting import run_fewshot
from weightgate.core.weights.local_source import lock_local_source


def workspace(root: Path, model_dir: Path, passing: int, total: int = 24):
    """A task set where exactly `passing` of `total` cases pass whatever the model says."""
    ws = phase1_ready(root)
    rows = [{"_set": {"max_new_tokens": 3}}]
    for n in range(total):
        rows.append({"id": f"c{n:03d}", "input": f"Rewrite as YYYY-MM-DD: March {n + 1}, 2021",
                     "expected": "(?s).*" if n < passing else "^never this$", "scorer": "regex",
                     "tags": ["hard" if n % 2 else "edge"]})
    (ws.evals_dir / "task.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    lock_local_source(ws, str(model_dir))
    return ws


def set_threshold(ws, value: float) -> None:
    ws.update_config(lambda doc: doc["requirements"].__setitem__("quality_threshold", value))


def test_phase5_not_needed_when_the_baseline_meets_the_threshold(tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, passing=22)
    assert {s.status for s in compute_report(ws).phase(5).items} != {"not-needed"}   # no baseline yet
    outcome = run_eval(ws, "task", batch_size=8)
    assert outcome["summary"]["score"] == pytest.approx(22 / 24)
    report = compute_report(ws)
    phase = report.phase(5)
    assert {s.status for s in phase.items} == {"not-needed"}
    detail = phase.items[0].detail
    assert f"baseline 0.92 >= threshold 0.90 (run {outcome['run']})" in detail
    assert phase.items[0].values["baseline_score"] == pytest.approx(22 / 24)
    # A stricter threshold: the old decision is stale and a new one is taken from the same run.
    set_threshold(ws, 0.95)
    report = compute_report(ws)
    assert not any(s.status == "not-needed" for s in report.phase(5).items if s.item.id != "tune.qlora_nf4")
    from weightgate.core.engine.evidence import read_evidence

    decisions = [e for e in read_evidence(ws) if e.item == FINETUNING_DECISION]
    assert decisions[-1].status == "fail" and decisions[-1].note.startswith("baseline 0.92 < threshold 0.95")
    # Back to 0.9: not needed again, without another eval run.
    set_threshold(ws, 0.9)
    assert {s.status for s in compute_report(ws).phase(5).items} == {"not-needed"}


def test_prompting_first_needs_a_few_shot_run_beside_the_baseline(tmp_path, tiny_model_dir):
    ws = workspace(tmp_path / "ws", tiny_model_dir, passing=6)
    (ws.root / "data").mkdir()
    (ws.root / "data" / "train.jsonl").write_text("\n".join(demo_train_lines()) + "\n")
    baseline = run_eval(ws, "task", batch_size=8)
    assert baseline["baseline"]["finetuning_needed"] is True        # 0.25 < 0.9: phase 5 is in play
    status = compute_report(ws).item("tune.prompting_first")
    assert status.status == "todo" and "weightgate train fewshot" in status.detail
    outcome = run_fewshot(ws, shots=2, device="cpu")
    run = read_run(ws, outcome["run"])
    zero = read_run(ws, baseline["run"])
    assert run.config["kind"] == "fewshot" and run.config["few_shot_source"] == "training data"
    assert run.digest != zero.digest and run.components["prompt"] != zero.components["prompt"]
    assert not run.baseline
    # The shots came from the training data and are none of the eval cases.
    prompts = run.cases[0].prompt
    assert prompts.count("<|im_start|>user") == 3 and "March 1, 2021" in prompts.split("<|im_start|>user")[-1]
    status = compute_report(ws).item("tune.prompting_first")
    assert status.status == "pass"
    assert f"zero-shot 0.25 (run {zero.id}), few-shot {run.score:.2f} with 2 example(s) (run {run.id})" == status.detail
    # The same variant again is reused; a precision change makes it not count.
    assert run_fewshot(ws, shots=2, device="cpu")["run"] == run.id
    ws.update_config(lambda doc: doc["decisions"].__setitem__("precision", "bf16"))
    assert compute_report(ws).item("tune.prompting_first").status == "todo"
    ws.update_config(lambda doc: doc["decisions"].remove("precision"))
    # A set with few-shot turns of its own: its baseline is few-shot, the variant goes without.
    path = ws.evals_dir / "task.jsonl"
    lines = path.read_text().splitlines()
    header = {"_set": {"max_new_tokens": 3, "few_shot": [{"input": "July 4, 1976", "output": "1976-07-04"}]}}
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    own = run_eval(ws, "task", batch_size=8)
    assert own["baseline"]["evidence"] == "eval.baseline"
    variant = run_fewshot(ws, device="cpu")
    assert variant["source"] == "zero-shot" and variant["shots"] == 0 and variant["baseline"] == own["run"]
    assert read_run(ws, variant["run"]).components["prompt"] == zero.components["prompt"]   # no turns
    status = compute_report(ws).item("tune.prompting_first")
    assert status.status == "pass" and "with the set's 1 example(s)" in status.detail


def test_cli_tune_commands_refuse_bad_input_before_starting_a_job(tmp_path, tiny_model_dir):
    import subprocess
    import sys

    ws = workspace(tmp_path / "ws", tiny_model_dir, passing=6)
    root = Path(__file__).resolve().parents[3]

    def wg(*args):
        return subprocess.run([sys.executable, "-m", "weightgate", "-w", str(ws.root), *args], cwd=root,
                              capture_output=True, text=True, timeout=60)

    out = wg("train", "gate", "--json")
    assert out.returncode == 2 and json.loads(out.stdout)["error"] == "no trained adapter yet"
    out = wg("train", "fewshot", "--json")
    assert out.returncode == 2 and json.loads(out.stdout)["error"] == "training data file not found"
    assert not any(ws.jobs_dir.iterdir())      # refused before any job started
