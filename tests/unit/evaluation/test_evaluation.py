"""The evaluation engine on the tiny model: batched == one-by-one, run identity, re-scoring
without generating, determinism, latency, the detached eval job, evidence, bitsandbytes on CPU."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import rewrite_cases, set_decision, tiny_workspace

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import Fingerprints
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation import runner
from weightgate.core.evaluation.generation import build_messages, generate_all, generation_settings, render
from weightgate.core.evaluation.plan import plan_eval
from weightgate.core.evaluation.runner import execute, mark_baseline, rescore, run_eval
from weightgate.core.evaluation.runs import list_runs, read_run
from weightgate.core.gates import compute_report
from weightgate.core.memory import loading
from weightgate.core.memory.loading import load_model
from weightgate.core.weights.local_source import lock_local_source

ROOT = Path(__file__).resolve().parents[3]


PROMPTS = ["hi", "Rewrite as YYYY-MM-DD: March 3, 2021",
           "A much longer prompt that keeps going so the batch needs real padding " * 3 + "July 4, 1976",
           "What is the capital of Japan?", "2 + 2 =", "Shakespeare wrote which play about two young lovers?",
           "ok"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir, "fp32")


def test_batched_outputs_equal_one_by_one(tiny):
    prompts = [render(tiny.tokenizer, build_messages(text)) for text in PROMPTS]
    lengths = {len(tiny.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts}
    assert len(lengths) >= 5   # prompts of different lengths: real left padding in every batch
    settings = generation_settings(tiny.model_dir, max_new_tokens=10)
    alone = generate_all(tiny, prompts, settings, 1)
    assert all(r.tokens_out == 10 and not r.finished for r in alone)
    for batch_size in (2, 3, 4, 7):
        batched = generate_all(tiny, prompts, settings, batch_size)
        assert [r.token_ids for r in batched] == [r.token_ids for r in alone], batch_size
        assert [r.text for r in batched] == [r.text for r in alone]
        # Prompt tokens are counted without the padding.
        assert [r.tokens_in for r in batched] == [len(tiny.tokenizer(p, add_special_tokens=False)["input_ids"])
                                                  for p in prompts]
    # Output tokens stop at EOS: make the first token one sequence produces its EOS; in a batch it
    # stops at 1 token while the others go on (what follows its EOS is not output).
    eos = alone[0].token_ids[0]
    early = generate_all(tiny, prompts, dict(settings, eos_token_id=[eos]), 4)
    assert early[0].token_ids == [eos] and early[0].finished and early[0].tokens_out == 1 and early[0].text == ""
    assert any(r.tokens_out > 1 for r in early)
    for result, reference in zip(early, alone):   # the others are prefixes of their lone outputs
        assert reference.token_ids[:result.tokens_out] == result.token_ids


def identity(ws, **kwargs) -> dict:
    return plan_eval(ws, "task", **kwargs).identity


def test_identity_changes_with_every_output_relevant_input(tmp_path, tiny_model_dir):
    from tiny_model import build_tiny_model

    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    base = identity(ws)
    seen = {base["digest"]}

    def changed(what: str, new: dict, component: str) -> None:
        assert new["digest"] not in seen, f"{what} did not change the identity"
        assert new["components"][component] != base["components"][component], what
        seen.add(new["digest"])

    changed("batch size", identity(ws, batch_size=3), "batch_size")
    changed("generation config", identity(ws, overrides={"repetition_penalty": 1.3}), "generation")
    changed("limit", identity(ws, limit=5), "limit")
    set_decision(ws, "precision", "bf16")
    changed("precision", identity(ws), "precision")
    set_decision(ws, "precision", "nf4")
    changed("precision nf4", identity(ws), "precision_spec")
    del_precision = lambda doc: doc["decisions"].remove("precision")   # noqa: E731
    ws.update_config(del_precision)
    assert identity(ws)["digest"] == base["digest"]

    # Eval set: a case's input, the system prompt, the few-shot turns, max_new_tokens.
    original = (ws.evals_dir / "task.jsonl").read_text()
    rewrite_cases(ws, lambda row: {**row, "input": row["input"] + "!"} if row["id"] == "c003" else row)
    changed("case input", identity(ws), "evalset")
    for header in ({"max_new_tokens": 4, "system": "Answer with the date only."},
                   {"max_new_tokens": 4, "few_shot": [{"input": "July 4, 1976", "output": "1976-07-04"}]}):
        lines = original.splitlines()
        (ws.evals_dir / "task.jsonl").write_text("\n".join([json.dumps({"_set": header}), *lines[1:]]) + "\n")
        changed(f"header {sorted(header)}", identity(ws), "prompt")
    lines = original.splitlines()
    (ws.evals_dir / "task.jsonl").write_text("\n".join([json.dumps({"_set": {"max_new_tokens": 9}}), *lines[1:]]) + "\n")
    changed("max_new_tokens", identity(ws), "generation")
    (ws.evals_dir / "task.jsonl").write_text(original)
    assert identity(ws)["digest"] == base["digest"]

    # The model's files: its weights, its chat template, its generation defaults.
    other = build_tiny_model(tmp_path / "other", seed=1)
    lock_local_source(ws, str(other))
    changed("model weights", identity(ws), "model")
    template = shutil.copytree(tiny_model_dir, tmp_path / "template")
    (template / "chat_template.jinja").write_text("{{ 'Q: ' + messages[-1]['content'] + '\\nA:' }}")
    lock_local_source(ws, str(template))
    changed("chat template", identity(ws), "chat_template")
    defaults = shutil.copytree(tiny_model_dir, tmp_path / "defaults")
    config = json.loads((defaults / "generation_config.json").read_text())
    (defaults / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.2}))
    lock_local_source(ws, str(defaults))
    new = identity(ws)
    changed("model generation defaults", new, "generation")
    assert new["components"]["generation"]["repetition_penalty"] == 1.2
    lock_local_source(ws, str(tiny_model_dir))
    assert identity(ws)["digest"] == base["digest"]


def make_adapter(model_dir: Path, out: Path, seed: int = 0) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(out)
    return out


def test_identity_follows_the_adapter_and_the_adapter_loads(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    base = identity(ws)
    make_adapter(tiny_model_dir, ws.adapters_dir / "a1" / "best")
    set_decision(ws, "adapter", "a1")
    with_adapter = identity(ws)
    assert with_adapter["digest"] != base["digest"] and with_adapter["components"]["adapter"] != "absent"
    make_adapter(tiny_model_dir, ws.adapters_dir / "a1" / "best", seed=1)   # retrained in place
    retrained = identity(ws)
    # The same decision, other bytes: another adapter, for the run and for the evidence alike.
    assert retrained["components"]["adapter"] != with_adapter["components"]["adapter"]
    assert retrained["components"]["adapter"] == Fingerprints(ws).get("adapter")
    assert retrained["components"]["adapter_files"] != with_adapter["components"]["adapter_files"]
    assert retrained["digest"] != with_adapter["digest"]
    plan = plan_eval(ws, "task", limit=3)
    run = execute(plan)   # loads the model with the peft adapter on top
    assert run.status == "complete" and run.config["adapter"].endswith("a1/best")
    set_decision(ws, "adapter", "missing")
    with pytest.raises(InputError, match="adapter 'missing' not found"):
        plan_eval(ws, "task")


def test_identity_stays_when_only_irrelevant_settings_change(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    base = identity(ws)

    def ceilings(doc):
        doc["requirements"]["ceilings"]["p95_latency_ms"] = 99
        doc["requirements"]["task"] = "Another description of the same task, in more words than before."
    ws.update_config(ceilings)
    assert identity(ws)["digest"] == base["digest"]
    moved = Workspace(shutil.copytree(ws.root, tmp_path / "elsewhere" / "ws"))
    assert identity(moved)["digest"] == base["digest"]
    # Run names are not in it: two runs with different names share one identity.
    first = execute(plan_eval(ws, "task", limit=2), name="one")
    second = execute(plan_eval(ws, "task", limit=2), name="two")
    assert first.digest == second.digest and first.name != second.name


def test_bad_eval_set_is_refused_with_line_numbers(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    path = ws.evals_dir / "task.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({"id": "c000", "input": "x", "expected": "y", "scorer": "regex"})       # line 3: dup id
    lines[4] = json.dumps({"id": "r1", "input": "x", "expected": "(unclosed", "scorer": "regex"})  # line 5
    lines[6] = json.dumps({"id": "s1", "input": "x", "expected": "y", "scorer": "levenshtein"})    # line 7
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as raised:
        plan_eval(ws, "task")
    text = str(raised.value)
    assert "3 problem(s)" in text and raised.value.line == 3
    for line, words in ((3, "duplicate id 'c000'"), (5, "bad regex"), (7, "unknown scorer 'levenshtein'")):
        assert f"{path}:{line}: {words}" in text
    # The CLI says the same with exit code 2, before any job starts.
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "weightgate", "-w", str(ws.root), "eval", "run"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and f"{path}:5: bad regex" in out.stderr
    assert not list(ws.jobs_dir.iterdir())


def test_rescoring_changes_scores_without_generating(tmp_path, tiny_model_dir, monkeypatch):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    first = run_eval(ws, "task", batch_size=4)
    run = read_run(ws, first["run"])
    assert run.summary["score"] == 0.0 and first["baseline"]["evidence"] == "eval.baseline"
    outputs = {case.id: case.output for case in run.cases}
    # Only the expected answers change: the first six now expect what the model said.
    rewrite_cases(ws, lambda row: {**row, "expected": outputs[row["id"]]} if row["id"] < "c006" else row)

    def no_loading(*args, **kwargs):
        raise AssertionError("re-scoring must not load a model")
    monkeypatch.setattr(runner, "load_model", no_loading)   # where the eval runner looks it up
    calls = dict(loading.CALLS)
    again = run_eval(ws, "task", batch_size=4)
    assert loading.CALLS == calls   # not one generate call
    assert again["rescored_from"] == run.id
    rescored = read_run(ws, again["run"])
    assert rescored.summary["passed"] == 6 and rescored.summary["score"] == pytest.approx(6 / 24)
    assert [c.output for c in rescored.cases] == [c.output for c in run.cases]
    assert rescored.identity["outputs"] == run.identity["outputs"] and rescored.digest != run.digest
    assert rescored.config["kind"] == "rescore"
    # The explicit command form, and its refusal once an input changes.
    assert rescore(ws, run.id).summary["passed"] == 6
    rewrite_cases(ws, lambda row: {**row, "input": row["input"] + "?"} if row["id"] == "c010" else row)
    with pytest.raises(InputError, match="inputs changed"):
        rescore(ws, run.id)


def test_determinism_identical_and_an_injected_divergence(tmp_path, tiny_model_dir, tiny):
    from weightgate.core.evaluation.determinism import check_determinism

    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir, header={"max_new_tokens": 8})
    same = check_determinism(ws, repeats=3, batch_size=4, limit=8, loaded=tiny)
    assert same["identical"] and same["divergence"] is None and same["evidence"] == "eval.determinism"
    assert same["cases"] == 8 and compute_report(ws).item("eval.determinism").status == "pass"
    # Sampling with a different seed per repeat: the first divergence is found and located.
    sampled = check_determinism(ws, repeats=2, batch_size=4, limit=8, overrides={"do_sample": True}, seeds=[0, 1],
                                loaded=tiny)
    divergence = sampled["divergence"]
    assert not sampled["identical"] and divergence["repeat"] == 2
    assert divergence["case"].startswith("c0") and 0 <= divergence["position"] < 8
    assert divergence["token_first"] != divergence["token_other"]
    assert "evidence" not in sampled   # an injected test is not the item's evidence
    seeded = check_determinism(ws, repeats=2, batch_size=4, limit=8, overrides={"do_sample": True}, seeds=[5, 5],
                               loaded=tiny)
    assert seeded["identical"]


def test_latency_per_batch_size_against_ceilings(tmp_path, tiny_model_dir, tiny):
    from weightgate.core.evaluation.latency import measure_latency

    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir, header={"max_new_tokens": 6})

    def loose(doc):   # ceilings a busy CI machine always meets
        doc["requirements"]["ceilings"]["p95_latency_ms"] = 60_000
        doc["requirements"]["ceilings"]["min_tokens_per_s"] = 0.5
        doc["requirements"]["batch_size"] = 4   # the serving batch: every measured size is checked
    ws.update_config(loose)
    result = measure_latency(ws, batch_sizes=(1, 2, 4), requests=4, loaded=tiny)
    rows = {row["batch_size"]: row for row in result["batch_sizes"]}
    assert sorted(rows) == [1, 2, 4]
    for size, row in rows.items():
        assert row["requests"] == max(4, 2 * size) and row["tokens_out"] == 6 * row["requests"]
        assert 0 < row["ttft_ms"]["p50"] <= row["latency_ms"]["p50"] and row["latency_ms"]["p50"] <= row["latency_ms"]["p95"]
        assert row["tokens_per_s"]["p50"] > 0 and row["throughput_tokens_per_s"] > 0
    assert result["within"] and result["checked"] == [1, 2, 4]
    assert compute_report(ws).item("eval.latency").status == "pass"

    def strict(doc):
        doc["requirements"]["ceilings"]["p95_latency_ms"] = 0.001
        doc["requirements"]["batch_size"] = 2   # the serving batch: batch 4 is measured, not checked
    ws.update_config(strict)
    result = measure_latency(ws, batch_sizes=(1, 4), requests=4, loaded=tiny)
    assert not result["within"] and result["checked"] == [1]
    assert result["violations"] and result["violations"][0].startswith("batch 1: p95 latency")
    status = compute_report(ws).item("eval.latency")
    assert status.status == "fail" and "p95 latency" in status.detail
    # The detail tells TTFT from the end-to-end p95 the ceiling checks, and says what to do next.
    row = result["batch_sizes"][0]
    assert (f"batch 1: TTFT p50 {row['ttft_ms']['p50']:.0f} ms, p95 {row['ttft_ms']['p95']:.0f} ms; "
            f"end to end p95 {row['latency_ms']['p95']:.0f} ms") in status.detail
    assert f"p95 latency {row['latency_ms']['p95']:.0f} ms end to end > 0.001 ms" in status.detail
    assert "Next: shorten answers" in status.detail and "`weightgate eval latency`" in status.detail
    from weightgate.tui.widgets.items import values_text

    values = values_text(status.values)   # the item's Values line: words, not a dict's repr
    assert values.startswith("batch 1: TTFT p50") and "batch 4:" in values and "{" not in values
    # The demo's phase line: a failure mark, not a tick.
    from weightgate.core.demo.journey import latency_line, say_phase_line

    said = []
    say_phase_line(said.append, latency_line(result))
    assert said == [f"  ✗ latency at batch 1, 4 over a ceiling: {result['violations'][0]}"]
    assert "[" not in said[0]


def test_eval_job_runs_detached_and_streams_progress(tmp_path, tiny_model_dir):
    from weightgate.core.engine.jobs import follow_job, read_status, start_job

    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    handle = start_job(ws.jobs_dir, "eval", {"batch_size": 6}, workspace=ws.root)
    events = list(follow_job(handle.job_dir, poll_s=0.05))
    assert read_status(handle.job_dir).state == "succeeded"
    progress = [e.payload for e in events if e.kind == "progress"]
    assert [p["done"] for p in progress] == [6, 12, 18, 24] and {p["total"] for p in progress} == {24}
    assert all(p["unit"] == "case" and "eta_s" in p for p in progress) and progress[-1]["eta_s"] == 0
    metrics = [e.payload["values"] for e in events if e.kind == "metric"]
    assert [m["cases_done"] for m in metrics] == [6, 12, 18, 24] and all("score" in m for m in metrics)
    result = events[-1]
    assert result.kind == "result" and result.payload["status"] == "succeeded"
    run = read_run(ws, result.payload["data"]["run"])
    assert run.status == "complete" and run.config["job"] == handle.job_id and run.baseline
    assert len(run.cases) == 24 and run.summary["tokens_out"] == 24 * 4


def test_evidence_passes_then_turns_stale_on_change(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    rewrite_cases(ws, lambda row: {**row, "expected": ".*", "scorer": "regex"})   # every output passes
    first = run_eval(ws, "task", batch_size=8)
    assert first["baseline"]["finetuning_needed"] is False
    report = compute_report(ws)
    assert report.item("eval.baseline").status == "pass"
    assert report.item("eval.fresh").status == "pass"
    assert {s.status for s in report.phase(5).items} == {"not-needed"}   # baseline 1.0 >= threshold 0.9
    # A second run is not the baseline by itself; `baseline RUN` moves it.
    second = run_eval(ws, "task", batch_size=4)
    assert second["baseline"] is None
    assert mark_baseline(ws, second["run"])["evidence"] == "eval.baseline"
    assert [r.id for r in list_runs(ws) if r.baseline] == [second["run"]]
    # The precision changes: the baseline and the fine-tuning decision turn stale, eval.fresh fails.
    set_decision(ws, "precision", "bf16")
    report = compute_report(ws)
    baseline = report.item("eval.baseline")
    assert baseline.status == "stale" and baseline.stale_inputs == ["precision"]
    fresh = report.item("eval.fresh")
    assert fresh.status == "fail" and "precision changed since run" in fresh.detail
    # (tune.qlora_nf4 alone is not-needed for a plain-LoRA precision; the phase is back in play)
    assert {s.status for s in report.phase(5).items} != {"not-needed"}
    assert not report.phase(5).items[0].detail.startswith("fine-tuning not needed")
    # Re-running at the new precision makes both hold again.
    third = run_eval(ws, "task", batch_size=4)
    assert third["baseline"]["evidence"] == "eval.baseline"   # first run at bf16: its baseline
    report = compute_report(ws)
    assert report.item("eval.baseline").status == "pass" and report.item("eval.fresh").status == "pass"
    # A changed eval-set file makes them stale/failing again.
    rewrite_cases(ws, lambda row: {**row, "tags": row["tags"] + ["new"]})
    report = compute_report(ws)
    assert report.item("eval.baseline").status == "stale" and report.item("eval.fresh").status == "fail"


@pytest.mark.parametrize("precision,layer", [("int8", "Linear8bitLt"), ("nf4", "Linear4bit")])
def test_bitsandbytes_precisions_load_and_generate_on_cpu(tiny_model_dir, precision, layer):
    loaded = load_model(tiny_model_dir, precision, device="cpu")
    assert loaded.precision["name"] == precision and loaded.precision["quantization"]["method"] == "bitsandbytes"
    assert type(loaded.model.model.layers[0].self_attn.q_proj).__name__ == layer
    full = load_model(tiny_model_dir, "fp32", device="cpu")
    assert loaded.footprint_bytes < full.footprint_bytes
    prompts = [render(loaded.tokenizer, build_messages(text)) for text in PROMPTS[:4]]
    settings = generation_settings(tiny_model_dir, max_new_tokens=5)
    alone = generate_all(loaded, prompts, settings, 1)
    assert all(r.tokens_out == 5 for r in alone)
    assert [r.token_ids for r in generate_all(loaded, prompts, settings, 4)] == [r.token_ids for r in alone]


def wg(*args, timeout=120):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "weightgate", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_eval_runs_baseline_rescore(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    out = wg("-w", ws.root, "eval", "run", "--limit", "5", "--batch-size", "5", "--attach", "--json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["payload"]["done"] for e in events if e["kind"] == "progress"] == [5]
    run_id = events[-1]["payload"]["data"]["run"]
    listed = json.loads(wg("-w", ws.root, "eval", "runs", "--json").stdout)
    assert [r["id"] for r in listed] == [run_id] and listed[0]["summary"]["cases"] == 5
    assert not listed[0]["baseline"]   # a --limit run is never the baseline
    refused = wg("-w", ws.root, "eval", "baseline", run_id[:-3])
    assert refused.returncode == 2 and "covers only the first 5 cases" in refused.stderr
    rescored = wg("-w", ws.root, "eval", "rescore", run_id, "--json")
    assert rescored.returncode == 0, rescored.stderr
    assert json.loads(rescored.stdout)["from"] == run_id
    assert wg("-w", ws.root, "eval", "rescore", "nope").returncode == 2
