"""LoRA / QLoRA training on the tiny model: loss masking, config refusals, the divergence guard,
the restore check, QLoRA on the CPU, evidence; and as real detached jobs: SIGTERM + resume and
SIGKILL + resume give the adapter of an uninterrupted run, and a two-process gloo run matches a
one-process run at the same global batch."""

from __future__ import annotations

import json
import math
import os
import random
import signal
from pathlib import Path

import pytest
from helpers import phase1_ready, wait_terminal
from training_helpers import (
    OVERRIDES,
    assert_bitwise,
    checkpoint_at_least,
    date_record,
    make_workspace,
    params_for,
    tensors,
    wait_for,
    write_split,
)

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.evidence import latest_by_item, read_evidence
from weightgate.core.engine.jobs import cancel_job, events_path, read_status, start_job
from weightgate.core.training import runs
from weightgate.core.training.session import execute, prepare_run
from weightgate.core.weights.local_source import lock_local_source


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """One workspace and one uninterrupted 12-step run in this process: the reference."""
    ws, split = make_workspace(tmp_path_factory.mktemp("train") / "ws", tiny_model_dir)
    events = []
    directory = prepare_run(ws, params_for(split, 12))
    outcome = execute(ws.root, directory, emit=lambda kind, payload: events.append((kind, payload)))
    return ws, split, directory, outcome, events


# --- in-process ------------------------------------------------------------------------------


def test_loss_masking_labels_only_assistant_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    from weightgate.core.training.batches import IGNORE, encode_record

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    record = {"id": "two-turns", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "March 3, 2021"},
        {"role": "assistant", "content": "2021-03-03"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "ok"}]}
    example = encode_record(tokenizer, record, max_seq=None)
    tokens = tokenizer.convert_ids_to_tokens(example.input_ids)
    labelled = [i for i, label in enumerate(example.labels) if label != IGNORE]
    # Exactly the answers and their end-of-turn token, nothing of system, user or the template.
    text = "".join(tokenizer.decode([example.input_ids[i]]) for i in labelled)
    assert text == "2021-03-03<|im_end|>ok<|im_end|>"
    # Exact positions, computed independently: each answer starts where the render of the
    # conversation up to its generation prompt ends, and runs through its <|im_end|>.
    def count(text):
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def prefix(n):
        return tokenizer.apply_chat_template(record["messages"][:n], tokenize=False, add_generation_prompt=True)

    first, second = count(prefix(2)), count(prefix(4))
    expected = list(range(first, first + count("2021-03-03") + 1)) + list(range(second, second + count("ok") + 1))
    assert labelled == expected
    assert all(example.labels[i] == example.input_ids[i] for i in labelled)
    assert tokens[labelled[-1]] == "<|im_end|>" and tokens[labelled[-1] + 1] == "\u010a"   # the newline after: not labelled
    raw = encode_record(tokenizer, {"id": "raw", "text": "The sky is blue."}, max_seq=None)
    assert raw.labels == raw.input_ids and raw.input_ids[-1] == tokenizer.eos_token_id
    with pytest.raises(InputError, match="'two-turns' is .* tokens, longer than max_seq 10") as info:
        encode_record(tokenizer, record, max_seq=10, path=Path("train.jsonl"), line=7)
    assert info.value.line == 7 and "never truncates" in info.value.hint


def test_config_defaults_follow_the_seeds_and_bad_values_name_their_line(tmp_path):
    from weightgate.core.engine.training_config import read_training_config

    config = read_training_config({})
    assert (config.r, config.alpha, config.dropout, config.lr, config.warmup_ratio, config.epochs) == \
        (16, 32, 0.05, 2e-4, 0.03, 3)
    assert read_training_config({"r": 8}).alpha == 16
    path = tmp_path / "weightgate.toml"
    path.write_text("[settings]\nheadroom = 0.3\n\n[training]\nr = 16\nepochs = 5\n")
    with pytest.raises(InputError, match="5 epochs is more than 3") as info:
        read_training_config({"r": 16, "epochs": 5}, config_path=path)
    assert info.value.line == 6 and "overfits" in info.value.hint
    with pytest.raises(InputError, match="unknown setting 'learning_rate'"):
        read_training_config({"learning_rate": 1e-4})
    # The template documents the table commented out: uncommented, it is exactly the defaults.
    import tomlkit

    from weightgate.core.engine.training_config import DEFAULTS
    from weightgate.core.engine.workspace import template_text

    text = template_text("weightgate.toml")
    start = text.index("# [training]\n")
    block = text[start:text.index("\n\n", start)]
    table = tomlkit.parse("\n".join(line[2:] for line in block.splitlines() if line.startswith("# ")
                                    and "=" in line or line == "# [training]")).unwrap()["training"]
    documented = read_training_config(table)
    assert {k: getattr(documented, k) for k in DEFAULTS} == DEFAULTS
    assert table["task_margin"] == 0.05 and table["general_tolerance"] == 0.02


# --- the batch plan and the device ---------------------------------------------------------


def fake_estimates(base_mib: int, per_example_mib: int, budget_mib: int, headroom: float = 0.3):
    """estimate_at for plan_batches: base + micro x per example, with the headroom, against the budget."""
    from types import SimpleNamespace

    MiB = 1 << 20

    def estimate_at(micro: int):
        total = (base_mib + micro * per_example_mib) * MiB
        required = math.ceil(total * (1 + headroom))
        return SimpleNamespace(total=total, required=required, fits=required <= budget_mib * MiB)
    return estimate_at


def test_plan_lowers_the_micro_batch_to_fit_and_keeps_the_effective_batch():
    from weightgate.core.training.plan import plan_batches

    MiB = 1 << 20
    # 16: 2600 MiB x 1.3, 8: 1400 x 1.3, 4: 800 x 1.3 = 1040 > 1000; 2: 500 x 1.3 = 650 fits.
    plan = plan_batches(effective_batch=16, processes=1, micro_batch="auto",
                        estimate_at=fake_estimates(200, 150, 1000), budget_bytes=1000 * MiB,
                        budget_source="requirements", seq=512, method="lora", budget_detail="memory_budget_gib = 0.98")
    assert (plan.micro_batch, plan.accumulation, plan.processes) == (2, 8, 1)
    assert plan.micro_batch * plan.accumulation * plan.processes == plan.effective_batch == 16
    assert [t["micro_batch"] for t in plan.tried] == [16, 8, 4, 2] and [t["fits"] for t in plan.tried] == \
        [False, False, False, True]
    assert plan.fits is True and plan.required_bytes == math.ceil(500 * MiB * 1.3)
    plan.require_fit()   # no error
    # Two processes: 8 examples each; the same per-process memory picks the same micro batch.
    two = plan_batches(effective_batch=16, processes=2, micro_batch="auto", estimate_at=fake_estimates(200, 150, 1000),
                       budget_bytes=1000 * MiB, budget_source="requirements", seq=512, method="lora")
    assert (two.micro_batch, two.accumulation, two.processes) == (2, 4, 2)
    # The budget unknown (fits None): the largest micro batch, no accumulation.
    from types import SimpleNamespace

    unknown = plan_batches(effective_batch=8, processes=1, micro_batch="auto",
                           estimate_at=lambda m: SimpleNamespace(total=m, required=m, fits=None), budget_bytes=None,
                           budget_source="unknown", seq=64, method="lora")
    assert (unknown.micro_batch, unknown.accumulation, unknown.fits) == (8, 1, None)


def test_plan_says_clearly_when_even_micro_batch_1_does_not_fit():
    from weightgate.core.training.plan import plan_batches

    MiB = 1 << 20
    plan = plan_batches(effective_batch=8, processes=1, micro_batch="auto", estimate_at=fake_estimates(900, 100, 1000),
                        budget_bytes=1000 * MiB, budget_source="requirements", seq=700, method="lora",
                        budget_detail="memory_budget_gib = 0.977")
    assert plan.fits is False and plan.micro_batch == 1 and plan.accumulation == 8
    assert [t["micro_batch"] for t in plan.tried] == [8, 4, 2, 1]
    with pytest.raises(InputError) as info:
        plan.require_fit()
    message, hint = str(info.value), info.value.hint
    assert "even micro batch 1 at 700 tokens" in message
    assert f"needs {math.ceil(1000 * MiB * 1.3) / MiB:,.0f} MiB with headroom" in message
    assert "the budget is 1,000 MiB (memory_budget_gib = 0.977)" in message
    for change in ('precision = "nf4"', "gradient_checkpointing = true", "memory_budget_gib",
                   "shorten or split the longest examples"):
        assert change in hint, (change, hint)
    # Already QLoRA, micro batch set by hand, the budget from the device: other advice.
    fixed = plan_batches(effective_batch=8, processes=1, micro_batch=4, estimate_at=fake_estimates(900, 100, 1000),
                         budget_bytes=1000 * MiB, budget_source="device", seq=700, method="qlora",
                         budget_detail="free GPU memory now")
    with pytest.raises(InputError) as info:
        fixed.require_fit()
    assert "[training] micro_batch 4 at 700 tokens (qlora" in str(info.value)
    assert "(free GPU memory now)" in str(info.value)
    assert 'micro_batch = "auto"' in info.value.hint and "nf4" not in info.value.hint
    assert "free memory on the device" in info.value.hint


def test_prepare_run_plans_from_the_real_estimate_and_refuses_what_does_not_fit(tmp_path, tiny_model_dir):
    """The tiny model's own estimates (core.memory.estimate) against [requirements.ceilings]
    memory_budget_gib: a budget between micro batch 2 and 4 gives 2 x 4; below micro batch 1,
    prepare_run refuses, names the budget, records the failed plan and leaves a failed run."""
    from weightgate.core.engine.fingerprints import plain
    from weightgate.core.engine.training_config import workspace_training_config
    from weightgate.core.memory.estimate import GiB, TrainingSetup, estimate
    from weightgate.core.memory.precision import layout_for, tokenizer_bytes, workspace_metadata, workspace_targets
    from weightgate.core.training.session import auto_targets, decided_precision, longest_example

    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    overrides = {**OVERRIDES, "effective_batch": 8}
    meta = workspace_metadata(ws)
    layout = layout_for(meta)
    precision = decided_precision(ws, layout)
    cfg = workspace_training_config(ws, overrides)
    targets = auto_targets(layout, cfg.target_modules)
    seq = longest_example(list(split), tiny_model_dir, meta.context_length)
    headroom = workspace_targets(plain(ws.config()))["headroom"]

    def required(micro: int) -> int:
        setup = TrainingSetup(method="lora", r=cfg.r, targets=targets, batch=micro, seq=seq,
                              gradient_checkpointing=cfg.gradient_checkpointing, dropout=cfg.dropout)
        return estimate(layout, precision, training=setup, device="cpu", budget=None, headroom=headroom,
                        tokenizer_bytes=tokenizer_bytes(meta)).required

    assert required(1) < required(2) < required(4) < required(8)

    def budget(gib: float) -> None:
        ws.update_config(lambda doc: doc["requirements"].setdefault("ceilings", {}).__setitem__(
            "memory_budget_gib", gib))

    budget((required(2) + required(4)) / 2 / GiB)
    directory = prepare_run(ws, {**params_for(split, 3), "overrides": overrides})
    batch = runs.read_run(directory)["batch"]
    assert (batch["micro_batch"], batch["accumulation"], batch["processes"], batch["effective_batch"]) == (2, 4, 1, 8)
    assert [t["micro_batch"] for t in batch["tried"]] == [8, 4, 2] and batch["budget_source"] == "requirements"
    assert latest_by_item(read_evidence(ws))["tune.effective_batch"].status == "pass"

    budget(required(1) * 0.9 / GiB)
    with pytest.raises(InputError, match=r"training does not fit: even micro batch 1 at \d+ tokens .* the budget "
                                         r"is [\d,.]+ MiB \(memory_budget_gib = ") as info:
        prepare_run(ws, {**params_for(split, 3), "overrides": overrides, "run_id": "too-big"})
    assert "gradient_checkpointing" in info.value.hint and "nf4" in info.value.hint
    assert runs.read_run(runs.run_dir(ws, "too-big"))["status"] == "failed"
    record = latest_by_item(read_evidence(ws))["tune.effective_batch"]
    assert record.status == "fail" and record.values["fits"] is False and record.values["micro_batch"] == 1


def test_device_selection_auto_per_rank_and_refusals(tmp_path, tiny_model_dir):
    from weightgate.core.training.session import check_device_spec, rank_device, train_device

    # auto = core.memory.loading.default_device(): a GPU when torch sees one.
    assert train_device("auto", 1, default="cpu", device_count=0) == "cpu"
    assert train_device(None, 1, default="cuda", device_count=2) == "cuda:0"
    assert train_device("auto", 2, default="cuda", device_count=2) == "cuda"    # one GPU per process
    assert train_device("GPU", 1, default="cuda", device_count=1) == "cuda:0"
    assert train_device("cuda:1", 1, default="cuda", device_count=2) == "cuda:1"
    assert train_device("cpu", 2, default="cuda", device_count=2) == "cpu"      # asked for: gloo on a GPU box
    refusals = [(("cuda", 1), {"default": "cpu", "device_count": 0}, "torch sees no CUDA device"),
                (("cuda", 3), {"default": "cuda", "device_count": 2}, "--nproc 3 on CUDA runs one process per GPU"),
                (("cuda:1", 2), {"default": "cuda", "device_count": 2}, "names one GPU"),
                (("cuda:2", 1), {"default": "cuda", "device_count": 2}, r"torch sees 2 GPUs \(cuda:0 .. cuda:1\)"),
                (("tpu", 1), {"default": "cuda", "device_count": 2}, "unknown device 'tpu'")]
    for args, kwargs, match in refusals:
        with pytest.raises(InputError, match=match):
            train_device(*args, **kwargs)
    assert check_device_spec(" CUDA:0 ") == "cuda:0"
    # torchrun workers: cuda:<LOCAL_RANK> and nccl for a CUDA run, the CPU and gloo otherwise.
    assert rank_device("cuda", 1) == ("cuda:1", "nccl") and rank_device("cuda:0", 0) == ("cuda:0", "nccl")
    assert rank_device("cpu", 1) == ("cpu", "gloo")
    # This machine has no GPU: auto trains on the CPU, and run.json says so; cuda is refused
    # before a run directory exists.
    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    spec = runs.read_run(prepare_run(ws, params_for(split, 2)))
    import torch

    assert (spec["device"], spec["device_requested"]) == ("cuda:0" if torch.cuda.is_available() else "cpu", "auto")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device cuda: torch sees no CUDA device"):
            prepare_run(ws, {**params_for(split, 2), "device": "cuda", "run_id": "on-gpu"})
        assert not runs.run_dir(ws, "on-gpu").exists()
    two = runs.read_run(prepare_run(ws, {**params_for(split, 2), "nproc": 2, "device": "cpu"}))
    assert (two["device"], two["backend"], two["rank_devices"]) == ("cpu", "gloo", ["cpu", "cpu"])


def test_worker_binds_its_gpu_and_nccl_and_keeps_gloo_on_the_cpu(tmp_path, monkeypatch):
    """core.training.worker for rank 1 of 2, with the process group and the loop stubbed: a CUDA
    run binds cuda:1 before nccl starts and trains there; a CPU run uses gloo and the CPU."""
    import torch
    import torch.distributed as dist

    from weightgate.core.training import worker

    calls = []
    monkeypatch.setattr(worker.signal, "signal", lambda *args: None)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", str(device))))
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend, **kw: calls.append(("init", backend, str(kw.get("device_id")))))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append(("destroy",)))
    monkeypatch.setattr(dist, "barrier", lambda: calls.append(("barrier",)))
    (tmp_path / "job").mkdir()

    def fake_execute(ws_root, run_dir, **kwargs):
        calls.append(("execute", kwargs["device"], kwargs["rank"], kwargs["world"]))
        return runs_outcome()

    def runs_outcome():
        from weightgate.core.training.loop import Outcome

        return Outcome("finished", 1, 1, 0.5, None, "ok")

    monkeypatch.setattr(worker, "execute", fake_execute)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    for device, expected in (("cuda", [("set_device", "cuda:1"), ("init", "nccl", "cuda:1"),
                                       ("execute", "cuda:1", 1, 2), ("barrier",), ("destroy",)]),
                             ("cpu", [("init", "gloo", "None"), ("execute", "cpu", 1, 2), ("barrier",), ("destroy",)])):
        directory = tmp_path / device
        directory.mkdir()
        runs.write_run(directory, {"run_id": device, "device": device, "nproc": 2})
        calls.clear()
        assert worker.main([str(tmp_path), str(directory), str(tmp_path / "job"), "0", "0"]) == 0
        assert calls == expected, calls
        # The launcher tells a teardown abort from a failure by this rank's marker.
        assert worker.finished_marker(tmp_path / "job", 1).read_text() == "finished 1\n"


def test_uninterrupted_run_keeps_best_and_records_evidence(trained):
    ws, _, directory, outcome, events = trained
    assert outcome.status == "finished" and outcome.step == 12
    assert outcome.best_step in (3, 6, 9, 12) and math.isfinite(outcome.best_val_loss)
    assert (directory / "best" / "adapter_model.safetensors").is_file()
    assert (directory / "best" / "adapter_config.json").is_file()
    steps = [p["values"] for k, p in events if k == "metric" and "loss" in p["values"]]
    assert [s["step"] for s in steps] == list(range(1, 13))
    assert {"epoch", "loss", "lr", "grad_norm", "tokens_per_s", "memory_bytes", "eta_s"} <= set(steps[0])
    checkpoints = [p for k, p in events if k == "artifact" and p.get("label") == "checkpoint"]
    assert [c["step"] for c in checkpoints] == [3, 6, 9, 12] and any(c["is_best"] for c in checkpoints)
    latest = latest_by_item(read_evidence(ws))
    for item in ("tune.lora_config", "tune.effective_batch", "tune.checkpoint_restore", "tune.best_checkpoint"):
        assert latest[item].status == "pass", (item, latest[item].note)
    assert latest["tune.effective_batch"].values["micro_batch"] * latest["tune.effective_batch"].values[
        "accumulation"] == 4
    assert latest["tune.best_checkpoint"].values["best_step"] == outcome.best_step
    assert set(latest["tune.best_checkpoint"].fingerprints) == {"train_config", "dataset", "model", "precision"}


def test_divergence_guard_stops_on_nan_and_keeps_the_best(trained):
    ws, split, _, _, _ = trained

    def nan_at_step_5(step, loss):
        return loss * float("nan") if step == 4 else loss   # step index 4 = the 5th step

    events = []
    directory = prepare_run(ws, params_for(split, 12))
    outcome = execute(ws.root, directory, emit=lambda kind, payload: events.append((kind, payload)),
                      loss_transform=nan_at_step_5)
    assert outcome.status == "diverged" and outcome.step == 5
    assert "diverged at step 5" in outcome.message and "best checkpoint (step 3" in outcome.message
    assert (directory / "best" / "adapter_model.safetensors").is_file()
    assert runs.read_run(directory)["status"] == "diverged"
    assert latest_by_item(read_evidence(ws))["tune.best_checkpoint"].status == "fail"

    def explode_from_step_8(step, loss):
        return loss * 10 if step >= 7 else loss

    directory = prepare_run(ws, params_for(split, 12))
    outcome = execute(ws.root, directory, loss_transform=explode_from_step_8)
    assert outcome.status == "diverged" and outcome.step in (8, 9, 10), outcome.message
    assert "4x its running minimum" in outcome.message

    def one_heavy_batch(step, loss):
        # one batch of long answers among short ones: 6x the others for a step, then back
        return loss * 6 if step == 7 else loss

    directory = prepare_run(ws, params_for(split, 12))
    outcome = execute(ws.root, directory, loss_transform=one_heavy_batch)
    assert outcome.status == "finished", outcome.message

    def noisy_near_zero(step, loss):
        # after the first steps the loss is tiny; batches 8x the minimum are noise, not an explosion
        return loss if step < 2 else loss * (0.008 if step in (7, 8) else 0.001)

    directory = prepare_run(ws, params_for(split, 12))
    outcome = execute(ws.root, directory, loss_transform=noisy_near_zero)
    assert outcome.status == "finished", outcome.message


def test_restore_check_detects_a_corrupted_restore(trained, monkeypatch):
    from weightgate.core.training import checkpoint, loop

    ws, split, _, _, _ = trained
    real = checkpoint.check_restore

    def corrupting(directory, model, optimizer, build_fresh):
        # Damage one adapter value and re-seal the manifest, as a broken writer would.
        path = directory / "adapter.safetensors"
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x40
        path.write_bytes(bytes(data))
        manifest = json.loads((directory / "manifest.json").read_text())
        manifest["files"]["adapter.safetensors"]["sha256"] = checkpoint._sha256(path)
        (directory / "manifest.json").write_text(json.dumps(manifest))
        return real(directory, model, optimizer, build_fresh)

    monkeypatch.setattr(loop, "check_restore", corrupting)
    directory = prepare_run(ws, params_for(split, 6))
    outcome = execute(ws.root, directory)
    assert outcome.status == "restore_failed" and outcome.step == 1
    assert "values differ" in outcome.message
    record = latest_by_item(read_evidence(ws))["tune.checkpoint_restore"]
    assert record.status == "fail" and "adapter." in record.note
    # A damaged checkpoint on disk is refused at load (the manifest no longer matches).
    step1 = directory / "checkpoints" / "step-000001"
    (step1 / "optimizer.pt").write_bytes(b"truncated")
    with pytest.raises(InputError, match="does not match its manifest"):
        checkpoint.verify_checkpoint(step1)


def test_a_half_written_checkpoint_is_never_resumed_from(trained, tmp_path):
    import shutil

    from weightgate.core.training.checkpoint import latest_checkpoint

    _, _, reference, _, _ = trained
    root = tmp_path / "checkpoints"
    shutil.copytree(reference / "checkpoints", root)
    assert latest_checkpoint(root).name == "step-000012"
    # A SIGKILL mid-save leaves a temp directory (never named in latest.json): ignored.
    partial = root / ".tmp-step-000015-abcdef"
    shutil.copytree(root / "step-000012", partial)
    (partial / "manifest.json").unlink()
    assert latest_checkpoint(root).name == "step-000012"
    # A step directory that lost a file (or its manifest) falls back to the one before it.
    (root / "step-000012" / "rng.pt").unlink()
    assert latest_checkpoint(root).name == "step-000009"
    (root / "step-000009" / "manifest.json").unlink()
    assert latest_checkpoint(root) is None


def test_qlora_nf4_trains_on_the_cpu(tmp_path, tiny_model_dir):
    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)

    def nf4(doc):
        doc["decisions"]["precision"] = "nf4"
    ws.update_config(nf4)
    directory = prepare_run(ws, params_for(split, 3))
    spec = runs.read_run(directory)
    assert spec["method"] == "qlora" and spec["precision"] == "nf4"
    outcome = execute(ws.root, directory)
    assert outcome.status == "finished" and outcome.step == 3 and math.isfinite(outcome.best_val_loss)
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(directory / "best")).r == 16
    from weightgate.core.training.session import build_model_and_optimizer

    model, _ = build_model_and_optimizer(spec)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    quant = model.base_model.model.config.quantization_config
    assert quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant


def test_resume_refuses_finished_runs_and_changed_inputs(trained, tmp_path):
    from weightgate.core.training.session import check_resumable

    ws, _, reference, _, _ = trained
    with pytest.raises(InputError, match="is finished: it is not resumed"):
        check_resumable(ws, reference)
    own = write_split(tmp_path / "own")
    directory = prepare_run(ws, params_for(own, 3))
    runs.update_run(directory, status="stopped")
    assert check_resumable(ws, directory)["run_id"] == directory.name
    ws.update_config(lambda doc: doc.__setitem__("training", {"r": 8}))
    try:
        with pytest.raises(InputError, match="train_config changed since it started"):
            check_resumable(ws, directory)
    finally:
        ws.update_config(lambda doc: doc.__delitem__("training"))
    with own[0].open("a") as handle:
        handle.write(json.dumps(date_record(random.Random(9), "extra")) + "\n")
    with pytest.raises(InputError, match="prepared train/val files changed"):
        check_resumable(ws, directory)
    runs.update_run(directory, status="finished")   # out of the way of `--resume last` in later tests


# --- detached jobs ---------------------------------------------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_sigterm_then_sigkill_mid_run_and_resume_end_with_the_uninterrupted_adapter(trained):
    ws, split, reference, _, _ = trained
    # SIGTERM (what `weightgate cancel` sends) after the step-3 checkpoint: a checkpoint, state cancelled.
    first = start_job(ws.jobs_dir, "train", params_for(split, 12, throttle_s=0.2), workspace=ws.root)
    wait_for(first.job_dir, checkpoint_at_least(3))
    cancelled = cancel_job(first.job_dir, grace_s=60)
    assert cancelled.status.state == "cancelled" and not cancelled.killed
    run_id = wait_for(first.job_dir, lambda e: e.kind == "artifact" and e.payload.get("label") == "run")
    directory = Path(run_id.payload["path"])
    stopped = runs.read_run(directory)
    assert stopped["status"] == "stopped" and 3 <= stopped["outcome"]["step"] < 12
    stop_step = stopped["outcome"]["step"]
    assert (directory / "checkpoints" / f"step-{stop_step:06d}" / "manifest.json").is_file()
    # Resume, then SIGKILL the whole job (no chance to save) after a later checkpoint.
    second = start_job(ws.jobs_dir, "train", {"resume": directory.name, "throttle_s": 0.2}, workspace=ws.root)
    wait_for(second.job_dir, lambda e: e.kind == "log" and f"resumed from step-{stop_step:06d}" in e.payload["message"])
    killed_after = wait_for(second.job_dir, checkpoint_at_least(stop_step + 1)).payload["step"]
    os.killpg(read_status(second.job_dir).pid, signal.SIGKILL)
    assert wait_terminal(second.job_dir).state == "crashed"
    assert [r for r in runs.list_runs(ws) if r["run_id"] == directory.name][0]["status"] == "interrupted"
    # Resume again ("last" = the newest resumable run) to the end.
    third = start_job(ws.jobs_dir, "train", {"resume": "last"}, workspace=ws.root)
    assert wait_terminal(third.job_dir).state == "succeeded"
    final = runs.read_run(directory)
    assert final["status"] == "finished" and final["outcome"]["step"] == 12
    assert final["job_ids"] == [first.job_id, second.job_id, third.job_id] and killed_after < 12
    # Bit for bit: the final checkpoint and the best adapter equal the uninterrupted run's.
    assert_bitwise(tensors(directory / "checkpoints" / "step-000012" / "adapter.safetensors"),
                   tensors(reference / "checkpoints" / "step-000012" / "adapter.safetensors"))
    assert_bitwise(tensors(directory / "best" / "adapter_model.safetensors"),
                   tensors(reference / "best" / "adapter_model.safetensors"))
    assert final["outcome"]["best_val_loss"] == runs.read_run(reference)["outcome"]["best_val_loss"]


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process_at_the_same_global_batch(trained):
    """Dropout off: with it, N ranks draw other masks than one process (by design: the
    stream is per rank), so only the arithmetic is compared, to float summation order."""
    import torch

    ws, split, _, _, _ = trained
    params = params_for(split, 6)
    params["overrides"]["dropout"] = 0.0
    one_process = []
    reference = prepare_run(ws, params)
    execute(ws.root, reference, emit=lambda kind, payload: one_process.append((kind, payload)))
    job = start_job(ws.jobs_dir, "train", {**params, "nproc": 2}, workspace=ws.root)
    status = wait_terminal(job.job_dir, timeout=200)
    assert status.state == "succeeded", (job.job_dir / "stderr.log").read_text()[-2000:]
    events, _ = read_events(events_path(job.job_dir))
    directory = Path([e for e in events if e.kind == "artifact" and e.payload.get("label") == "run"][0].payload["path"])
    batch = runs.read_run(directory)["batch"]
    assert (batch["micro_batch"], batch["accumulation"], batch["processes"]) == (2, 1, 2)
    # Only rank 0 writes: one metric per step, seq numbers gap-free through the parent's events.
    losses = [e.payload["values"]["loss"] for e in events if e.kind == "metric" and "loss" in e.payload["values"]]
    assert len(losses) == 6 and [e.seq for e in events] == list(range(1, len(events) + 1))
    expected = [p["values"]["loss"] for k, p in one_process if k == "metric" and "loss" in p["values"]]
    assert losses == pytest.approx(expected, rel=1e-5)
    two = tensors(directory / "checkpoints" / "step-000006" / "adapter.safetensors")
    one = tensors(reference / "checkpoints" / "step-000006" / "adapter.safetensors")
    for name in one:
        assert torch.allclose(two[name], one[name], rtol=1e-4, atol=1e-6), name


# --- the CLI ---------------------------------------------------------------------------------


def wg(*args, timeout=150):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "weightgate", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.timeout(200)
@pytest.mark.slow
def test_cli_train_prepares_data_attaches_lists_and_refuses(tmp_path, tiny_model_dir):
    ws = phase1_ready(tmp_path / "ws")
    lock_local_source(ws, str(tiny_model_dir))
    rng = random.Random(3)
    rows = [date_record(rng, f"c{i}") for i in range(30)]
    for row in rows:   # raw user data: no ids (the data checks assign them)
        del row["id"]
    (ws.root / "data").mkdir()
    (ws.root / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ws.update_config(lambda doc: doc.__setitem__("training", {"effective_batch": 4, "eval_every": 2}))
    out = wg("-w", ws.root, "train", "start", "--steps", "2", "--attach", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[-1]["kind"] == "result" and events[-1]["payload"]["status"] == "succeeded"
    assert [e["payload"]["values"]["step"] for e in events if e["kind"] == "metric"
            and "loss" in e["payload"]["values"]] == [1, 2]
    listed = json.loads(wg("-w", ws.root, "train", "runs", "--json").stdout)
    assert len(listed) == 1 and listed[0]["status"] == "finished" and listed[0]["best_step"] == 2
    assert listed[0]["best_val_loss"] == events[-1]["payload"]["data"]["best_val_loss"]
    assert "best" in wg("-w", ws.root, "train", "runs").stdout
    assert listed[0]["device"] == "cpu" or listed[0]["device"].startswith("cuda")   # auto: recorded as chosen
    out = wg("-w", ws.root, "train", "resume", "--json")
    assert out.returncode == 2 and "no run to resume" in json.loads(out.stdout)["error"]
    out = wg("-w", ws.root, "train", "start", "--device", "tpu", "--json")
    assert out.returncode == 2 and "unknown device 'tpu'" in json.loads(out.stdout)["error"]
    import torch

    if not torch.cuda.is_available():   # an explicit cuda request is checked before a job starts
        out = wg("-w", ws.root, "train", "start", "--device", "cuda", "--json")
        assert out.returncode == 2 and "torch sees no CUDA device" in json.loads(out.stdout)["error"]
        assert len(json.loads(wg("-w", ws.root, "train", "runs", "--json").stdout)) == 1
    text = ws.config_path.read_text()
    ws.config_path.write_text(text.replace("eval_every = 2", "eval_every = 2\nepochs = 4"))
    out = wg("-w", ws.root, "train", "start", "--json")
    line = ws.config_path.read_text().splitlines().index("epochs = 4") + 1
    assert out.returncode == 2 and json.loads(out.stdout)["line"] == line and "more than 3" in out.stderr


def test_launcher_accepts_a_teardown_abort_only_after_every_rank_finished(tmp_path, monkeypatch):
    """gloo can abort a rank at process exit after its last step ("terminate called without an
    active exception"): torchrun then exits non-zero although the run is complete. The launcher
    accepts that only when every rank left its finished marker and rank 0 wrote the outcome."""
    from weightgate.core.training import jobs as training_jobs
    from weightgate.core.training import worker

    logged = []

    class Context:
        job_dir = tmp_path / "job"
        journal = type("Journal", (), {"resync": lambda self: None})()

        def log(self, message, level="info"):
            logged.append((level, message))

    Context.job_dir.mkdir()
    directory = tmp_path / "run"
    directory.mkdir()
    runs.write_run(directory, {"run_id": "r", "device": "cpu", "nproc": 2})

    def launch(ranks_finishing):
        class Process:
            def __init__(self, command, **kwargs):
                for rank in ranks_finishing:
                    worker.finished_marker(Context.job_dir, rank).write_text("finished 6\n")
                runs.update_run(directory, outcome={"status": "finished", "step": 6})

            def wait(self):
                return 1   # torchrun's exit after a SIGABRT in one worker
        monkeypatch.setattr(training_jobs.subprocess, "Popen", Process)
        return training_jobs._torchrun(Context(), tmp_path, directory, False, 2, 0.0)

    assert launch([0, 1])["step"] == 6
    assert any(level == "warning" and "after every rank finished" in message for level, message in logged)
    with pytest.raises(RuntimeError, match="torchrun exited with 1"):
        launch([0])   # rank 1 never finished: a real failure, whatever rank 0 wrote
