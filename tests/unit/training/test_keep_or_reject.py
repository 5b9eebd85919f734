"""The keep-or-reject gate on the tiny model with real peft adapters.

Two adapters get deliberately different LoRA weights (seeded, scaled up so greedy outputs
change). The eval sets are crafted from what the three models really generate: a task case
accepts what the adapters answer (the base fails it), a general case accepts what the base and the
good adapter answer (the bad one breaks it). Every score below comes from real eval runs."""

import json
from pathlib import Path

import pytest
from helpers import phase1_ready

from weightgate.core.evaluation.generation import build_messages, generate_all, generation_settings, render
from weightgate.core.evaluation.runner import run_eval
from weightgate.core.evaluation.runs import list_runs, read_run
from weightgate.core.gates import compute_report
from weightgate.core.memory.loading import load_model
from weightgate.core.training.keep_or_reject import run_gate
from weightgate.core.weights.local_source import lock_local_source

TASK_PROMPTS = [f"Rewrite as YYYY-MM-DD: {month} {day}, {year}" for month, day, year in
                [("March", 3, 2021), ("July", 4, 1976), ("May", 30, 1990), ("June", 21, 2024), ("Oct", 31, 2018),
                 ("January", 1, 2000), ("December", 25, 2019), ("April", 1, 2010), ("Sept", 9, 2009),
                 ("February", 14, 2022), ("August", 2, 2015), ("November", 5, 2023), ("March", 15, 2022),
                 ("July", 9, 2023), ("January", 8, 2024), ("May", 1, 1999)]]
GENERAL_PROMPTS = ["What is the capital of Japan?", "What is the capital of France?", "What is 2 + 2?",
                   "How many days are in a week?", "How many legs does a spider have?", "Who wrote Romeo and Juliet?",
                   "What color is the sky?", "Which planet is the largest?", "What is the chemical symbol for gold?",
                   "Where is Egypt?", "What do plants take in from the air?", "Hello, how are you today?",
                   "What is the opposite of hot?", "Name a fast animal.", "What is a checksum?", "What are tokens?"]
MAX_NEW = 4
BATCH = 4


def make_adapter(model_dir: Path, out: Path, seed: int, scale: float) -> Path:
    """A LoRA adapter whose weights are set on purpose: seeded random A and B, B scaled."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"],
                                                      init_lora_weights=False))
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name:
                    parameter.mul_(scale)
    peft_model.save_pretrained(out)
    return out


def outputs(model_dir: Path, adapter: Path | None, prompts: list[str]) -> list[str]:
    loaded = load_model(model_dir, None, adapter, "cpu")
    rendered = [render(loaded.tokenizer, build_messages(p)) for p in prompts]
    results = generate_all(loaded, rendered, generation_settings(model_dir, max_new_tokens=MAX_NEW), BATCH)
    return [r.text.strip() for r in results]


def write_set(path: Path, rows: list[dict]) -> None:
    path.write_text("\n".join([json.dumps({"_set": {"max_new_tokens": MAX_NEW}}), *map(json.dumps, rows)]) + "\n")


@pytest.fixture(scope="module")
def gate_workspace(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("gate")
    ws = phase1_ready(root / "ws")
    lock_local_source(ws, str(tiny_model_dir))
    good = make_adapter(tiny_model_dir, ws.adapters_dir / "good" / "best", seed=1, scale=40.0)
    bad = make_adapter(tiny_model_dir, ws.adapters_dir / "bad" / "best", seed=2, scale=40.0)
    task = {name: outputs(tiny_model_dir, adapter, TASK_PROMPTS) for name, adapter in
            (("base", None), ("good", good), ("bad", bad))}
    general = {name: outputs(tiny_model_dir, adapter, GENERAL_PROMPTS) for name, adapter in
               (("base", None), ("good", good), ("bad", bad))}
    task_rows = [{"id": f"t{i:02d}", "input": prompt, "expected": [task["good"][i], task["bad"][i]],
                  "scorer": "exact", "tags": ["hard" if i % 2 else "edge"]}
                 for i, prompt in enumerate(TASK_PROMPTS)
                 if task["good"][i] and task["bad"][i] and task["base"][i] not in (task["good"][i], task["bad"][i])]
    general_rows = [{"id": f"g{i:02d}", "input": prompt, "expected": [general["base"][i], general["good"][i]],
                     "scorer": "exact", "tags": ["general"]}
                    for i, prompt in enumerate(GENERAL_PROMPTS)
                    if general["base"][i] and general["good"][i]
                    and general["bad"][i] not in (general["base"][i], general["good"][i])]
    # The adapters change what the model says: most prompts qualify (the rest are left out).
    assert len(task_rows) >= 8 and len(general_rows) >= 8, (task, general)
    write_set(ws.evals_dir / "task.jsonl", task_rows)
    write_set(ws.evals_dir / "general.jsonl", general_rows)
    baseline = run_eval(ws, "task", batch_size=BATCH)
    assert baseline["baseline"]["finetuning_needed"] is True and baseline["summary"]["score"] == 0.0
    return ws


def test_gate_rejects_an_adapter_that_breaks_the_general_set(gate_workspace):
    ws = gate_workspace
    outcome = run_gate(ws, "bad", device="cpu")
    assert outcome["kept"] is False
    assert outcome["task"]["delta"] >= 0.05                     # the task score rose ...
    assert outcome["general"]["delta"] < -0.02                  # ... but the general set broke
    assert "general score falls too far" in outcome["note"] and "task score does not" not in outcome["note"]
    assert "adapter" not in ws.config()["decisions"]
    # The base model's general baseline was run and marked on the way.
    general_base = read_run(ws, outcome["general"]["base_run"])
    assert general_base.baseline and general_base.components["adapter"] == "absent" and general_base.score == 1.0
    adapter_run = read_run(ws, outcome["general"]["adapter_run"])
    assert adapter_run.config["kind"] == "gate" and adapter_run.config["adapter"].endswith("bad/best")
    status = compute_report(ws).item("tune.gate")
    assert status.status == "fail" and status.values["task"]["adapter_run"] == outcome["task"]["adapter_run"]


@pytest.mark.timeout(180)
def test_gate_keeps_a_helpful_adapter_through_the_job_and_reuses_runs(gate_workspace):
    from weightgate.core.engine.jobs import follow_job, read_status, start_job

    ws = gate_workspace
    handle = start_job(ws.jobs_dir, "tune_gate", {"adapter": "good"}, workspace=ws.root)
    events = list(follow_job(handle.job_dir, poll_s=0.05))
    assert read_status(handle.job_dir).state == "succeeded", [e.payload for e in events if e.kind in ("log", "error")]
    outcome = events[-1].payload["data"]
    assert outcome["kept"] is True and outcome["task"]["delta"] == 1.0 and outcome["general"]["delta"] == 0.0
    assert outcome["task"]["base"] == 0.0 and outcome["general"]["reused"] is False
    assert "task 0.000 -> 1.000" in outcome["note"]
    assert ws.config()["decisions"]["adapter"] == "good"
    status = compute_report(ws).item("tune.gate")
    assert status.status == "pass" and status.values["general"]["base_run"] == outcome["general"]["base_run"]
    # The comparisons open from their run ids (what the Compare screen does).
    from weightgate.core.evaluation.compare import compare_runs

    comparison = compare_runs(outcome["task"]["base_run"], outcome["task"]["adapter_run"], ws=ws)
    assert comparison.overall.improvements == comparison.overall.cases
    # Same adapter again: both runs reused, nothing generated.
    before = {run.id for run in list_runs(ws)}
    again = run_gate(ws, "good", device="cpu")
    assert again["task"]["reused"] and again["general"]["reused"]
    assert {run.id for run in list_runs(ws)} == before
    assert again["task"]["adapter_run"] == outcome["task"]["adapter_run"]
    # A challenger that breaks the general set is rejected; the kept adapter stays kept and passing.
    challenger = run_gate(ws, "bad", device="cpu")
    assert challenger["kept"] is False and challenger["task"]["reused"] and challenger["general"]["reused"]
    assert "good stays the kept adapter" in challenger["note"]
    assert ws.config()["decisions"]["adapter"] == "good" and compute_report(ws).item("tune.gate").status == "pass"


def test_a_rejection_says_when_the_tolerance_is_finer_than_one_general_case():
    from weightgate.core.training.keep_or_reject import verdict

    task = {"base": 0.1, "adapter": 0.9, "delta": 0.8}
    small = {"base": 1.0, "adapter": 0.958333, "delta": -0.041667, "cases": 24}
    keep, note = verdict(task, small, 0.05, 0.02)
    assert not keep and "one case of the general set is 0.042" in note and "rejects any regression" in note
    large = {"base": 1.0, "adapter": 0.97, "delta": -0.03, "cases": 100}
    keep, note = verdict(task, large, 0.05, 0.02)
    assert not keep and "one case" not in note      # 0.01 per case: the tolerance allows two


def test_a_gate_looser_than_the_defaults_says_so_in_its_verdict():
    from weightgate.core.training.keep_or_reject import verdict

    task = {"base": 0.1, "adapter": 0.9, "delta": 0.8}
    general = {"base": 0.78, "adapter": 0.74, "delta": -0.04, "cases": 50}
    keep, note = verdict(task, general, 0.05, 0.05)
    assert keep and "looser than the defaults, set in [training]: general_tolerance 0.05 (default 0.02)" in note
    keep, note = verdict(task, general, 0.01, 0.02)
    assert not keep and "task_margin 0.01 (default 0.05)" in note
    keep, note = verdict(task, {**general, "delta": 0.0}, 0.05, 0.02)
    assert keep and "looser" not in note
