"""DPO with TRL's DPOTrainer on the tiny model: the preference data checks (schema at file:line,
duplicates, leakage, PII, the token length of both answers), the seed-003 defaults, and as real
detached jobs: a run SIGKILLed after a checkpoint and resumed ends with the adapter of an
uninterrupted run bit for bit, its journal carries the DPO metrics, and the keep-or-reject gate
decides the adapter."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path

import pytest
from helpers import set_decision, tiny_workspace, wait_terminal
from preference_helpers import dpo_workspace, pair, use_dpo, write_pairs
from training_helpers import assert_bitwise, checkpoint_at_least, tensors, wait_for

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.evidence import latest_by_item, read_evidence
from weightgate.core.engine.jobs import cancel_job, events_path, read_status, start_job
from weightgate.core.engine.training_config import read_training_config
from weightgate.core.training import runs
from weightgate.core.training.dataset import check_training_data
from weightgate.core.training.preference.run import preference_run_params
from weightgate.core.training.preference.trainer import execute_dpo, latest_checkpoint
from weightgate.core.training.session import new_run_params, prepare_run

STEPS = 12   # 39 training pairs, 4 a step: epoch 2 begins at step 11, so resuming crosses an epoch


@pytest.fixture(scope="module")
def dpo_ws(tmp_path_factory, tiny_model_dir):
    ws = tiny_workspace(tmp_path_factory.mktemp("dpo") / "ws", tiny_model_dir)
    (ws.evals_dir / "general.jsonl").write_text(
        json.dumps({"_set": {"max_new_tokens": 4}}) + "\n" + "".join(
            json.dumps({"id": f"g{n}", "input": question, "expected": answer, "scorer": "exact", "tags": ["general"]})
            + "\n" for n, (question, answer) in enumerate([("What is the capital of Japan?", "Tokyo"),
                                                            ("What is 2 + 2?", "4"), ("What color is the sky?", "blue"),
                                                            ("How many days are in a week?", "7")])))
    return dpo_workspace(ws)


# --- config and data ---------------------------------------------------------------------------


def test_dpo_takes_the_seed_defaults_and_refuses_a_bad_beta_at_its_line(tmp_path):
    config = read_training_config({"method": "dpo"})
    assert (config.method, config.beta, config.lr) == ("dpo", 0.1, 5e-6)
    assert read_training_config({}).lr == 2e-4 and read_training_config({}).method == "sft"
    assert read_training_config({"method": "dpo", "lr": 1e-5}).lr == 1e-5
    path = tmp_path / "weightgate.toml"
    path.write_text('[training]\nmethod = "dpo"\nbeta = -1\n')
    with pytest.raises(InputError) as bad:
        read_training_config({"method": "dpo", "beta": -1}, config_path=path)
    assert bad.value.line == 3 and "beta" in str(bad.value)
    path.write_text('[training]\nmethod = "ppo"\n')
    with pytest.raises(InputError) as bad:
        read_training_config({"method": "ppo"}, config_path=path)
    assert bad.value.line == 2 and "dpo" in bad.value.hint


def test_preference_checks_name_lines_and_prepare_trl_pairs(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    use_dpo(ws)
    rng = random.Random(5)
    good = [pair(rng, f"ok{i}") for i in range(12)]
    chat_pair = {"prompt": [{"role": "system", "content": "You rewrite dates."},
                            {"role": "user", "content": "Rewrite 9 May 1911 as YYYY-MM-DD."}],
                 "chosen": [{"role": "assistant", "content": "1911-05-09"}],
                 "rejected": [{"role": "assistant", "content": "May 9th"}]}
    implicit = {"chosen": [{"role": "user", "content": "Rewrite 17 August 1945 as YYYY-MM-DD."},
                           {"role": "assistant", "content": "1945-08-17"}],
                "rejected": [{"role": "user", "content": "Rewrite 17 August 1945 as YYYY-MM-DD."},
                             {"role": "assistant", "content": "17.08.1945"}]}
    rows = [*good, chat_pair, implicit,
            {"prompt": "Rewrite 1 May 2001 as YYYY-MM-DD.", "chosen": "2001-05-01"},                    # 15
            {"prompt": "Rewrite 2 May 2002.", "chosen": "2002-05-02", "rejected": " 2002-05-02 "},       # 16
            '{"prompt": "unclosed", "chosen": "x"',                                                      # 17
            {"prompt": [{"role": "bot", "content": "hi"}], "chosen": "a", "rejected": "b"},              # 18
            {"chosen": [{"role": "user", "content": "A?"}, {"role": "assistant", "content": "a"}],       # 19
             "rejected": [{"role": "user", "content": "B?"}, {"role": "assistant", "content": "b"}]},
            {**good[0], "id": "copy"},                                                                  # 20: duplicate
            {"prompt": "Rewrite as YYYY-MM-DD: March 3, 2021", "chosen": "2021-03-03",                   # 21: leak
             "rejected": "03/03/2021"},
            {"prompt": "Mail 1 May 1999 to ana.lopez@example.org as YYYY-MM-DD.", "chosen": "1999-05-01",  # 22: PII
             "rejected": "May 1"},
            {"prompt": "Rewrite 5 June 2005 as YYYY-MM-DD.", "chosen": "2005-06-05",                     # 23: long
             "rejected": " ".join(f"line {n} ok." for n in range(400))}]
    path = write_pairs(ws, rows)
    check = check_training_data(ws)
    report = check.report
    assert report.formats == {"preference": 18}
    assert [(p.line, p.path) for p in report.problems] == [(n, path) for n in (15, 16, 17, 18, 19)]
    assert "missing 'rejected'" in report.problems[0].message
    assert "same answer" in report.problems[1].message
    assert "up to their last" in report.problems[4].message
    long_row = report.over_long[0]
    assert long_row["line"] == 23 and long_row["rejected_tokens"] > report.max_tokens > long_row["chosen_tokens"]
    assert report.exact_duplicates[0]["removed"] == [{"id": "copy", "line": 20}]
    assert [(leak["line"], leak["set"]) for leak in report.leakage] == [(21, "task")]
    assert report.pii["counts"]["email"] == 1 and report.pii["findings"][0]["line"] == 22
    latest = latest_by_item(read_evidence(ws))
    assert latest["tune.format"].status == "fail" and f"{path}:15" in latest["tune.format"].note
    with pytest.raises(InputError) as blocked:
        new_run_params(ws, 1, None, "cpu")
    assert f"{path}:23" in str(blocked.value) and f"{path}:15" in str(blocked.value)
    # Fixed (the blocking lines removed): the prepared split is TRL's conversational pairs, scrubbed.
    write_pairs(ws, rows[:14] + rows[19:22])
    params = preference_run_params(ws, 1, None, "cpu")
    prepared = [json.loads(line) for name in ("train_file", "val_file")
                for line in Path(params[name]).read_text().splitlines()]
    assert len(prepared) == 15   # 17 pairs less the duplicate and the leak
    assert all(set(r) == {"id", "prompt", "chosen", "rejected"} and r["chosen"][0]["role"] == "assistant"
               for r in prepared)
    mailed = [r for r in prepared if "Mail" in r["prompt"][0]["content"]][0]
    assert "ana.lopez" not in json.dumps(mailed) and "[EMAIL]" in mailed["prompt"][0]["content"]
    implicit_row = [r for r in prepared if "17 August" in json.dumps(r)][0]
    assert implicit_row["prompt"] == [implicit["chosen"][0]] and implicit_row["rejected"][0]["content"] == "17.08.1945"
    with pytest.raises(InputError, match="one process"):
        preference_run_params(ws, 2, None, "cpu")


# --- training -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(dpo_ws):
    """An uninterrupted DPO run in this process: the reference the resumed job must equal."""
    params = preference_run_params(dpo_ws, 1, STEPS, "cpu")
    directory = prepare_run(dpo_ws, params)
    events = []
    outcome = execute_dpo(dpo_ws.root, directory, emit=lambda kind, payload: events.append((kind, payload)))
    return params, directory, outcome, events


@pytest.mark.slow
def test_uninterrupted_dpo_run_journals_rewards_keeps_the_best_and_records_its_identity(dpo_ws, reference):
    _, directory, outcome, events = reference
    assert outcome.status == "finished" and outcome.step == STEPS
    assert outcome.best_step in (3, 6, 9, 12)
    steps = [p["values"] for k, p in events if k == "metric" and "loss" in p["values"]]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))
    assert {"loss", "lr", "grad_norm", "rewards/margins", "rewards/accuracies", "eta_s", "memory_bytes"} <= set(steps[0])
    vals = [p["values"] for k, p in events if k == "metric" and "val_loss" in p["values"]]
    assert [v["step"] for v in vals] == [3, 6, 9, 12] and "val_rewards/margins" in vals[0]
    assert min(v["val_loss"] for v in vals) == outcome.best_val_loss
    checkpoints = [p for k, p in events if k == "artifact" and p.get("label") == "checkpoint"]
    assert [c["step"] for c in checkpoints] == [3, 6, 9, 12]
    assert (directory / "best" / "adapter_config.json").is_file()
    spec = runs.read_run(directory)
    assert spec["objective"] == "dpo" and spec["dpo"]["beta"] == 0.1 and spec["config"]["lr"] == 5e-6
    assert spec["train_examples"] == 39 and steps[-1]["epoch"] > 1   # the run (and the resumed one) crosses an epoch
    assert spec["dpo"]["trainer"] == "trl.DPOTrainer" and spec["dpo"]["trl"]
    # The release manifest's [training] carries the objective and the DPO hyperparameters.
    from weightgate.core.registry.manifest import training_block

    block = training_block({}, directory / "best")["run"]
    assert block["objective"] == "dpo" and block["dpo"]["beta"] == 0.1 and block["config"]["method"] == "dpo"
    latest = latest_by_item(read_evidence(dpo_ws))
    for item in ("tune.lora_config", "tune.effective_batch", "tune.checkpoint_restore", "tune.best_checkpoint"):
        assert latest[item].status == "pass", (item, latest[item].note)
    # Only a checkpoint named in latest.json is resumed from: a directory a SIGKILL left mid-save is not.
    assert latest_checkpoint(directory / "checkpoints") == directory / "checkpoints" / f"checkpoint-{STEPS}"
    partial = directory / "checkpoints" / f"checkpoint-{STEPS + 3}"
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"half")
    assert latest_checkpoint(directory / "checkpoints") == directory / "checkpoints" / f"checkpoint-{STEPS}"
    shutil.rmtree(partial)
    # The adapter moved from its zero start (lora_B), so the comparison below means something.
    assert any(t.abs().max() > 0 for name, t in tensors(directory / "best" / "adapter_model.safetensors").items()
               if "lora_B" in name)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dpo_job_cancelled_killed_and_resumed_ends_with_the_uninterrupted_adapter_and_the_gate_decides(dpo_ws,
                                                                                                      reference):
    from weightgate.core.evaluation.runner import run_eval
    from weightgate.core.training.keep_or_reject import run_gate

    params, ref_dir, ref_outcome, _ = reference
    # SIGTERM (`weightgate cancel`) after the step-3 checkpoint: a checkpoint at the next step end, job cancelled.
    first = start_job(dpo_ws.jobs_dir, "train", {**params, "throttle_s": 0.4}, workspace=dpo_ws.root)
    wait_for(first.job_dir, checkpoint_at_least(3), timeout=180)
    cancelled = cancel_job(first.job_dir, grace_s=60)
    assert cancelled.status.state == "cancelled" and not cancelled.killed
    directory = Path(wait_for_run(first.job_dir))
    stopped = runs.read_run(directory)
    assert stopped["status"] == "stopped" and 3 <= stopped["outcome"]["step"] < STEPS
    stop_step = stopped["outcome"]["step"]
    assert json.loads((directory / "checkpoints" / "latest.json").read_text())["step"] == stop_step
    # Resume, then SIGKILL the whole job (no chance to save) after its next checkpoint.
    second = start_job(dpo_ws.jobs_dir, "train", {"resume": directory.name, "throttle_s": 0.4}, workspace=dpo_ws.root)
    wait_for(second.job_dir, lambda e: e.kind == "log" and f"resumed from checkpoint-{stop_step} " in e.payload["message"],
             timeout=180)
    killed_after = wait_for(second.job_dir, checkpoint_at_least(stop_step + 1), timeout=180).payload["step"]
    os.killpg(read_status(second.job_dir).pid, signal.SIGKILL)
    assert wait_terminal(second.job_dir).state == "crashed"
    assert [r for r in runs.list_runs(dpo_ws) if r["run_id"] == directory.name][0]["status"] == "interrupted"
    assert killed_after < STEPS
    # Resume again ("last": the newest resumable run) to the end.
    third = start_job(dpo_ws.jobs_dir, "train", {"resume": "last"}, workspace=dpo_ws.root)
    assert wait_terminal(third.job_dir, timeout=180).state == "succeeded"
    events, _ = read_events(events_path(third.job_dir), 0)
    resumed_steps = [e.payload["values"]["step"] for e in events if e.kind == "metric" and "loss" in e.payload["values"]]
    assert resumed_steps == list(range(killed_after + 1, STEPS + 1))
    final = runs.read_run(directory)
    assert final["status"] == "finished" and final["outcome"]["step"] == STEPS
    assert final["job_ids"] == [first.job_id, second.job_id, third.job_id]
    # Bit for bit: the last checkpoint's adapter and the best adapter equal the uninterrupted run's.
    last = f"checkpoint-{STEPS}/adapter_model.safetensors"
    assert_bitwise(tensors(directory / "checkpoints" / last), tensors(ref_dir / "checkpoints" / last))
    assert_bitwise(tensors(directory / "best" / "adapter_model.safetensors"),
                   tensors(ref_dir / "best" / "adapter_model.safetensors"))
    assert final["outcome"]["best_val_loss"] == ref_outcome.best_val_loss
    # The gate decides the DPO adapter as any other: task and general evals against the baselines.
    run_eval(dpo_ws, "task", batch_size=8)
    verdict = run_gate(dpo_ws, directory.name)
    expected = (verdict["task"]["delta"] >= verdict["task_margin"] - 1e-9
                and verdict["general"]["delta"] >= -verdict["general_tolerance"] - 1e-9)
    assert verdict["kept"] is expected and verdict["adapter"] == directory.name
    gate_item = latest_by_item(read_evidence(dpo_ws))["tune.gate"]
    assert gate_item.values["adapter"] == directory.name and gate_item.status == ("pass" if expected else "fail")


@pytest.mark.slow
def test_dpo_trains_a_qlora_adapter_on_an_nf4_base(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    rng = random.Random(4)
    write_pairs(ws, [pair(rng, f"q{i:02d}") for i in range(24)])
    use_dpo(ws, effective_batch=4, eval_every=2)
    set_decision(ws, "precision", "nf4")
    directory = prepare_run(ws, preference_run_params(ws, 1, 3, "cpu"))
    outcome = execute_dpo(ws.root, directory)
    spec = runs.read_run(directory)
    assert outcome.status == "finished" and outcome.step == 3 and outcome.restore_check["ok"]
    assert (spec["method"], spec["precision"], spec["objective"]) == ("qlora", "nf4", "dpo")
    config = json.loads((directory / "best" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16


@pytest.mark.slow
def test_the_fine_tune_screen_charts_a_dpo_journal_with_its_margins(reference):
    from weightgate.core.engine.events import Event
    from weightgate.screens.finetuning.loss_chart import TrainingHistory, render_loss_chart
    from weightgate.screens.finetuning.training_panel import stats_text

    _, _, outcome, events = reference
    history = TrainingHistory()
    history.add([Event(seq=n, time=0.0, kind=kind, payload=payload) for n, (kind, payload) in enumerate(events)])
    assert sorted(history.train) == list(range(1, STEPS + 1)) and sorted(history.val) == [3, 6, 9, 12]
    assert history.best_step == outcome.best_step
    stats = stats_text(history, "succeeded", "job-1").plain
    margin = history.latest["rewards/margins"]
    assert f"step {STEPS}/{STEPS}" in stats and f"margin {margin:.4f}" in stats and "pref acc" in stats
    chart = render_loss_chart(history, 40, 8).plain
    assert any("\u2800" < ch <= "\u28ff" for ch in chart)   # the braille train-loss line is drawn


def wait_for_run(job_dir: Path) -> str:
    events, _ = read_events(events_path(job_dir), 0)
    return [e for e in events if e.kind == "artifact" and e.payload.get("label") == "run"][0].payload["path"]
