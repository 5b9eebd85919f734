"""GPU-readiness without a GPU: the capability faked by monkeypatch (a T4 without bf16, an A100
with it) decides fp16 + a gradient scaler or bf16, recorded in run.json and [decisions] and
estimated; fp16 training with autocast + GradScaler really runs on the CPU and resumes bit for
bit; the paged 8-bit AdamW and attention options reach the model, the run and the manifest;
scripts/gpu_smoke.sh says "no CUDA" here and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import assert_bitwise, make_workspace, params_for, tensors

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.memory import capability as cap_mod
from weightgate.core.memory.capability import Capability
from weightgate.core.memory.estimate import TrainingSetup, estimate
from weightgate.core.memory.loading import precision_spec
from weightgate.core.memory.precision import estimate_report, layout_for, workspace_metadata
from weightgate.core.training import runs, session
from weightgate.core.training.session import execute, prepare_run

REPO = Path(__file__).resolve().parents[3]
T4 = Capability("cuda", "Tesla T4", (7, 5), False)
A100 = Capability("cuda", "NVIDIA A100-SXM4-40GB", (8, 0), True)


def decide(ws, precision: str, **training) -> None:
    def change(doc):
        doc["decisions"]["precision"] = precision
        if training:
            doc["training"] = training
    ws.update_config(change)


def test_the_half_dtype_follows_the_capability_and_bf16_is_refused_where_missing(tmp_path, tiny_model_dir):
    # Inference and the QLoRA compute dtype: fp16 on a T4, bf16 on an A100, fp32 on the CPU.
    assert precision_spec("nf4", device="cuda", capability=T4)["quantization"]["compute_dtype"] == "float16"
    assert precision_spec("nf4", device="cuda", capability=A100)["quantization"]["compute_dtype"] == "bfloat16"
    assert precision_spec("nf4", device="cpu")["quantization"]["compute_dtype"] == "float32"
    assert precision_spec("fp16", device="cuda", capability=T4)["dtype"] == "float16"
    with pytest.raises(InputError, match=r"Tesla T4 \(compute capability 7.5\) has no native bfloat16") as info:
        precision_spec("bf16", device="cuda", capability=T4)
    assert "fp16" in info.value.hint
    assert precision_spec("bf16", device="cuda", capability=A100)["dtype"] == "bfloat16"
    # The estimate follows: fp16 training carries autocast's half copy of the adapter and a scaler.
    ws, _ = make_workspace(tmp_path / "ws", tiny_model_dir)
    layout = layout_for(workspace_metadata(ws))
    setup = TrainingSetup(method="qlora", r=16, targets="auto", batch=2, seq=64)
    on_t4 = estimate(layout, "nf4", training=setup, device="cuda", capability=T4)
    on_a100 = estimate(layout, "nf4", training=setup, device="cuda", capability=A100)
    on_cpu = estimate(layout, "nf4", training=setup, device="cpu")
    params = on_t4.details["lora_parameters"]
    assert on_t4.details["compute_dtype"] == "float16" and on_t4.details["amp"]["scaler"] is True
    assert on_a100.details["compute_dtype"] == "bfloat16" and on_a100.details["amp"]["scaler"] is False
    assert on_t4.details["autocast_cache_bytes"] == 2 * params == on_a100.details["autocast_cache_bytes"]
    assert on_cpu.details["amp"]["autocast"] is None and on_cpu.details["autocast_cache_bytes"] == 0
    assert on_t4.breakdown["adapter"] == 8 * params + 2 * params
    # Phase 3's choice on a T4: bf16 is shown but is no candidate, and the report says why.
    report = estimate_report(layout, "tiny", context=64, device="cuda", capability=T4)
    assert "bf16" not in report.candidates and "fp16" in report.candidates
    assert any("no native bfloat16" in note for note in report.notes)
    assert "bf16" in estimate_report(layout, "tiny", context=64, device="cuda", capability=A100).candidates


@pytest.mark.parametrize("gpu, dtype, scaler", [(T4, "float16", True), (A100, "bfloat16", False)])
def test_a_run_prepared_on_a_faked_gpu_records_the_choice_and_its_reason(tmp_path, tiny_model_dir, monkeypatch,
                                                                          gpu, dtype, scaler):
    """prepare_run as on a GPU box: the device resolves to cuda:0 and torch's capability probe
    answers as the GPU would; nothing is loaded (that needs the GPU)."""
    monkeypatch.setattr(session, "resolve_train_device", lambda requested, nproc: "cuda:0")
    monkeypatch.setattr(cap_mod, "probe_cuda", lambda device="cuda": gpu)
    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    decide(ws, "nf4")
    spec = runs.read_run(prepare_run(ws, params_for(split, 4)))
    plan = spec["precision_plan"]
    assert spec["device"] == "cuda:0" and plan["capability"]["name"] == gpu.name
    assert (plan["compute_dtype"], plan["autocast"], plan["scaler"]) == (dtype, dtype, scaler)
    assert plan["estimate"]["compute_dtype"] == dtype and plan["estimate"]["amp"]["scaler"] is scaler
    decisions = plain(ws.config())["decisions"]
    assert decisions["compute_dtype"] == dtype
    assert ("no native bfloat16" in decisions["compute_dtype_reason"]) is scaler
    assert "compute capability" in decisions["compute_dtype_reason"]
    # A bf16 decision on the T4 is refused before a run exists; the A100 takes it.
    decide(ws, "bf16")
    if scaler:
        with pytest.raises(InputError, match="has no native bfloat16"):
            prepare_run(ws, {**params_for(split, 4), "run_id": "bf16-on-t4"})
        assert not runs.run_dir(ws, "bf16-on-t4").exists()
    else:
        assert runs.read_run(prepare_run(ws, params_for(split, 4)))["precision_plan"]["autocast"] == "bfloat16"


def test_fp16_training_on_the_cpu_scales_skips_journals_and_resumes_bit_for_bit(tmp_path, tiny_model_dir):
    """fp16 on the CPU: autocast + torch.amp.GradScaler("cpu"). A step whose loss is blown up
    (by the fault-injection hook) overflows the fp16 gradients: the scaler skips it and halves
    its scale, and the journal says so. Stopped after step 3 and resumed, the run ends with the
    uninterrupted run's adapter and scaler, bit for bit."""
    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    decide(ws, "fp16")

    def blow_up(step, loss):
        return loss * 1e6 if step == 1 else loss   # the second optimizer step (0-based 1)

    reference = prepare_run(ws, params_for(split, 6))
    plan = runs.read_run(reference)["precision_plan"]
    assert (plan["dtype"], plan["autocast"], plan["scaler"]) == ("float16", "float16", True)
    events: list = []
    outcome = execute(ws.root, reference, loss_transform=blow_up,
                      emit=lambda kind, payload: events.append((kind, payload)))
    assert outcome.status == "finished" and outcome.skipped_steps == [2], outcome.message
    assert any(kind == "log" and "step 2 skipped by the gradient scaler" in p["message"] for kind, p in events)
    assert any(kind == "metric" and p["values"].get("skipped") is True and p["step"] == 2 for kind, p in events)
    assert outcome.restore_check["ok"] and outcome.restore_check["scaler"]
    import torch

    final = reference / "checkpoints" / "step-000006"
    scaler_state = torch.load(final / "scaler.pt", weights_only=True)
    assert scaler_state["scale"] == 65536.0 / 2   # halved once, by the skipped step
    assert runs.read_run(reference)["outcome"]["skipped_steps"] == [2]

    polls = {"n": 0}

    def stop_after_step_3():
        polls["n"] += 1
        return polls["n"] > 3

    directory = prepare_run(ws, params_for(split, 6))
    stopped = execute(ws.root, directory, loss_transform=blow_up, should_stop=stop_after_step_3)
    assert stopped.status == "stopped" and stopped.step == 3
    resumed = execute(ws.root, directory, loss_transform=blow_up, resume=True)
    assert resumed.status == "finished" and resumed.step == 6 and resumed.skipped_steps == [2]
    assert_bitwise(tensors(directory / "checkpoints" / "step-000006" / "adapter.safetensors"),
                   tensors(final / "adapter.safetensors"))
    assert torch.load(directory / "checkpoints" / "step-000006" / "scaler.pt", weights_only=True) == scaler_state
    assert resumed.best_val_loss == outcome.best_val_loss
    # A checkpoint without the scaler's state is not resumed from as if it had one.
    (directory / "checkpoints" / "step-000006" / "scaler.pt").unlink()
    from weightgate.core.training.checkpoint import load_checkpoint
    from weightgate.core.training.precision_plan import make_scaler

    model, optimizer = session.build_model_and_optimizer(runs.read_run(directory))
    with pytest.raises(InputError, match="manifest|no gradient scaler state"):
        load_checkpoint(directory / "checkpoints" / "step-000006", model, optimizer, scaler=make_scaler(plan, "cpu"))


def test_paged_adamw_8bit_and_attention_reach_the_model_the_run_the_estimate_and_the_manifest(tmp_path,
                                                                                              tiny_model_dir):
    import bitsandbytes as bnb

    from weightgate.core.registry.manifest import training_block

    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    # r 64: some LoRA tensors reach bitsandbytes' 4096 elements for 8-bit state (64 x 64), some not (32 x 64).
    decide(ws, "nf4", optimizer="paged_adamw_8bit", attn_implementation="eager", r=64)
    directory = prepare_run(ws, params_for(split, 3))
    spec = runs.read_run(directory)
    plan = spec["precision_plan"]
    assert (plan["optimizer"], plan["attn_implementation"]) == ("paged_adamw_8bit", "eager")
    assert spec["config"]["optimizer"] == "paged_adamw_8bit"
    outcome = execute(ws.root, directory)
    assert outcome.status == "finished" and outcome.restore_check["ok"], outcome.message
    model, optimizer = session.build_model_and_optimizer(spec)
    assert isinstance(optimizer, bnb.optim.PagedAdamW8bit)
    assert model.base_model.model.config._attn_implementation == "eager"
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    # The estimate: 8-bit moments for tensors of 4096+ elements, eager attention's saved scores;
    # the optimizer state of the last checkpoint, restored, is exactly the estimated bytes.
    from weightgate.core.training.checkpoint import load_checkpoint

    load_checkpoint(directory / "checkpoints" / "step-000003", model, optimizer, restore_rng=False)
    measured = sum(v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values()
                   if hasattr(v, "numel") and v.dim() > 0)
    assert measured == plan["estimate"]["optimizer_bytes"]
    layout = layout_for(workspace_metadata(ws))
    base = dict(method="qlora", r=64, targets=spec["targets"], batch=2, seq=spec["max_seq"])
    adamw = estimate(layout, "nf4", device="cpu", training=TrainingSetup(**base))
    paged = estimate(layout, "nf4", device="cpu", training=TrainingSetup(**base, optimizer="paged_adamw_8bit"))
    eager = estimate(layout, "nf4", device="cpu", training=TrainingSetup(**base, attn_implementation="eager"))
    assert adamw.breakdown["optimizer"] == 8 * adamw.details["lora_parameters"]
    assert paged.breakdown["optimizer"] == plan["estimate"]["optimizer_bytes"] < adamw.breakdown["optimizer"]
    assert eager.breakdown["activations"] > adamw.breakdown["activations"]
    # The release manifest's [training] block carries the run's plan and config.
    block = training_block(plain(ws.config()), directory / "best")
    assert block["run"]["precision_plan"]["optimizer"] == "paged_adamw_8bit"
    assert block["run"]["precision_plan"]["attn_implementation"] == "eager"
    assert block["run"]["config"]["attn_implementation"] == "eager"
    # flash_attention_2 where it cannot run is refused with the reason.
    decide(ws, "nf4", attn_implementation="flash_attention_2")
    with pytest.raises(InputError, match="flash_attention_2: flash-attention runs on CUDA only"):
        prepare_run(ws, params_for(split, 3))


def test_gpu_smoke_says_no_cuda_and_exits_0_here():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the smoke test would run for real")
    import os
    import sys

    env = {**os.environ, "WEIGHTGATE_PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_smoke.sh")], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    assert "no CUDA" in done.stdout and "nothing was run" in done.stdout


def test_a_torch_free_process_reads_the_capability_from_nvml(monkeypatch):
    """The TUI's estimate runs without torch: NVML's compute capability decides its half dtype (a
    T4, 7.5: fp16), and only where NVML cannot say is bf16 assumed, saying so."""
    import fake_nvml as fk

    from weightgate.core.memory import capability as cap
    from weightgate.core.memory import nvml

    nvml._reset_for_tests()
    monkeypatch.setattr(cap, "_PROBED", {})
    monkeypatch.delitem(sys.modules, "torch", raising=False)   # this process "never loaded torch"
    monkeypatch.setitem(sys.modules, "pynvml", fk.FakeNVML([fk.FakeGpu(name="Tesla T4", compute_capability=(7, 5)),
                                                            fk.FakeGpu()]))
    try:
        t4 = cap.capability_for("cuda:0")
        assert (t4.source, t4.compute_capability, t4.bf16) == ("nvml", (7, 5), False)
        assert cap.half_choice(t4)[0] == "float16" and "Tesla T4" in cap.half_choice(t4)[1]
        a100 = cap.capability_for("cuda:1")
        assert a100.bf16 and a100.source == "nvml"
        assert cap.capability_for("cuda:7") is cap.ASSUMED_CUDA    # no such device: NVML cannot say
    finally:
        nvml._reset_for_tests()


@pytest.mark.slow
def test_qlora_nf4_with_paged_adamw_resumes_bit_for_bit_on_the_cpu(tmp_path, tiny_model_dir):
    """QLoRA on an NF4 base with paged 8-bit AdamW, stopped after step 3 and resumed: the adapter
    at step 6 equals the uninterrupted run's bit for bit. (bitsandbytes repacks 4-bit weights for
    its AVX512-BF16 CPU kernel at the first validation pass; the trainer keeps one kernel, or a
    resumed run, not yet validated, would compute through the other: 1.3e-4 apart.)"""
    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    decide(ws, "nf4", optimizer="paged_adamw_8bit")
    reference = prepare_run(ws, params_for(split, 6))
    assert execute(ws.root, reference).status == "finished"
    polls = {"n": 0}

    def stop_after_step_3():
        polls["n"] += 1
        return polls["n"] > 3

    directory = prepare_run(ws, params_for(split, 6))
    assert execute(ws.root, directory, should_stop=stop_after_step_3).step == 3
    assert execute(ws.root, directory, resume=True).status == "finished"
    assert_bitwise(tensors(directory / "checkpoints" / "step-000006" / "adapter.safetensors"),
                   tensors(reference / "checkpoints" / "step-000006" / "adapter.safetensors"))
