"""DPO training with TRL's DPOTrainer on a LoRA / QLoRA adapter, as phase 5's detached job runs it.

The DPO loss, the reference log-probabilities (the base model with the adapter disabled) and the
reward metrics are TRL's; this module fits the trainer into the job's contract, which the SFT
loop (core.training.loop) keeps by its own means:

- Checkpoints are the Trainer's (`checkpoint-N`: adapter, optimizer, scheduler, RNG states,
  trainer_state.json) every eval_every steps, and `resume_from_checkpoint` continues one. A
  checkpoint counts only once it is named in checkpoints/latest.json, written after the Trainer
  finished it: a SIGKILL mid-save leaves a directory that is never resumed from.
- Data order: the Trainer's sampler is accelerate's SeedableRandomSampler, whose permutation of
  epoch e is a pure function of (seed, e); on resume the Trainer skips the batches already
  consumed and restores the RNG states saved with the checkpoint (dropout). On the CPU a run
  stopped and resumed ends with the uninterrupted run's adapter bit for bit
  (tests/unit/training/test_dpo.py).
- SIGTERM (`weightgate cancel`) only sets a flag; a callback reads it at the next optimizer-step
  end and sets `should_save` + `should_training_stop`, so the Trainer saves a checkpoint and stops.
- The journal: a callback turns every Trainer log into the SFT job's events (`metric` per step
  with loss, lr, grad_norm, tokens/s, memory, ETA plus rewards/margins and rewards/accuracies;
  `metric` with val_loss at each evaluation; `artifact` per checkpoint; `progress`), so
  `weightgate attach`, `train runs` and the Fine-tune screen read a DPO run as they read SFT.
- The best adapter by validation (DPO) loss is saved as <run>/best in peft format, where the
  keep-or-reject gate finds any adapter.

One process only (no torchrun): DPO on an adapter is small enough for one device here.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.workspace import open_workspace
from weightgate.core.memory.loading import flushed_subnormals, subnormals_flush_everywhere
from weightgate.core.training import runs as runs_mod
from weightgate.core.training.checkpoint import _differences, recover_best, save_best
from weightgate.core.training.checks import record_best, record_restore
from weightgate.core.training.loop import DIVERGED, FINISHED, RESTORE_FAILED, STOPPED, Outcome
from weightgate.core.training.model import load_base
from weightgate.core.training.preference.run import read_prepared_pairs
from weightgate.core.training.session import run_plan

LATEST = "latest.json"
PROGRESS_EVERY_S = 1.0
REWARD_KEYS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")
OPTIMIZERS = {"adamw": "adamw_torch", "paged_adamw_8bit": "paged_adamw_8bit"}


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The last checkpoint the Trainer finished (named in latest.json), or None."""
    marker = Path(checkpoints) / LATEST
    if not marker.is_file():
        return None
    path = Path(checkpoints) / json.loads(marker.read_text())["checkpoint"]
    return path if (path / "trainer_state.json").is_file() else None


def _records(path: Path) -> list[dict]:
    return [{key: value for key, value in pair.record(scrubbed=False).items() if key != "id"}
            for pair in read_prepared_pairs(path)]


def _memory_bytes(device: str) -> int:
    if device.startswith("cuda"):
        import torch  # lazy: torch only where it runs, never at import

        return int(torch.cuda.max_memory_allocated(device))
    return int(psutil.Process().memory_info().rss)


def _restore_check(checkpoint: Path, model: Any, optimizer: Any) -> dict:
    """The checkpoint's adapter and optimizer files, loaded back, against the live state bit for bit."""
    import torch  # lazy: torch only where it runs, never at import
    from peft import get_peft_model_state_dict  # lazy: peft only where it runs, never at import
    from safetensors.torch import load_file  # lazy: safetensors only where it runs, never at import

    live = {name: tensor.detach().cpu() for name, tensor in get_peft_model_state_dict(model).items()}
    saved = load_file(str(checkpoint / "adapter_model.safetensors"))
    problems: list[str] = []
    _differences(live, saved, "adapter", problems)
    state = optimizer.state_dict()
    _differences(state, torch.load(checkpoint / "optimizer.pt", weights_only=True, map_location="cpu"), "optimizer",
                 problems)
    return {"ok": not problems, "checkpoint": str(checkpoint), "adapter_tensors": len(live),
            "how": f"the first checkpoint ({checkpoint.name}) read back from disk against the live adapter and optimizer",
            "optimizer_tensors": sum(len(v) for v in state["state"].values()), "differences": problems[:20]}


def journal_callback(spec: dict, directory: Path, emit: Callable[[str, dict], None],
                     should_stop: Callable[[], bool], throttle_s: float, on_restore: Callable[[dict], None]):
    """The TrainerCallback that journals the run, saves the best adapter and honours SIGTERM."""
    from transformers import TrainerCallback  # lazy: transformers only where it runs, never at import

    device = spec.get("device", "cpu")

    class JobCallback(TrainerCallback):
        def __init__(self) -> None:
            self.stopped = False
            self.diverged: str | None = None
            self.first_step: int | None = None
            self.began = time.perf_counter()
            self.last_tokens: float | None = None
            self.last_progress = 0.0
            self.last_val: tuple[int, float] | None = None
            self.last_best = False
            self.restore_checked = False
            self.restore_result: dict | None = None
            self.last_loss: float | None = None
            self.step_began = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.first_step = state.global_step
            self.began = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            if throttle_s and state.global_step > (self.first_step or 0):
                time.sleep(throttle_s)   # the pause after the previous step (demos, the kill tests)
            self.step_began = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop():
                self.stopped = True
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            step = state.global_step
            if "loss" in logs:
                loss = float(logs["loss"])
                self.last_loss = loss
                now = time.perf_counter()
                done = max(1, step - (self.first_step or 0))
                eta = (now - self.began) / done * (state.max_steps - step)
                tokens = logs.get("num_tokens")
                step_tokens = (tokens - self.last_tokens) if tokens is not None and self.last_tokens is not None \
                    and tokens >= self.last_tokens else None
                self.last_tokens = tokens
                elapsed = now - self.step_began   # this optimizer step alone (not the throttle, not an eval)
                values = {"step": step, "epoch": round(float(logs.get("epoch", state.epoch or 0.0)), 4), "loss": loss,
                          "lr": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
                          **{key: logs[key] for key in REWARD_KEYS if key in logs},
                          "tokens": step_tokens,
                          "tokens_per_s": round(step_tokens / elapsed, 1) if step_tokens and elapsed > 0 else None,
                          "memory_bytes": _memory_bytes(device), "eta_s": round(eta, 1)}
                emit("metric", {"step": step, "values": values})
                if now - self.last_progress >= PROGRESS_EVERY_S or step == state.max_steps:
                    self.last_progress = now
                    emit("progress", {"done": step, "total": state.max_steps, "unit": "step", "eta_s": round(eta, 1),
                                      "message": f"loss {loss:.4f}, margin {logs.get('rewards/margins', 0.0):.4f}"})
                if not math.isfinite(loss) or (logs.get("grad_norm") is not None
                                               and not math.isfinite(float(logs["grad_norm"]))):
                    self.diverged = (f"training diverged at step {step}: loss {loss}, grad norm {logs.get('grad_norm')}; "
                                     "stopped. Lower [training] lr (the seed says 5e-6 for DPO) and start a new run")
                    emit("log", {"message": self.diverged, "level": "error"})
                    control.should_training_stop = True
                    control.should_save = False   # a bad step is never checkpointed
            return control

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            metrics = metrics or {}
            if "eval_loss" not in metrics:
                return control
            val = float(metrics["eval_loss"])
            # state.best_metric is the previous best here: the Trainer updates it after this callback.
            self.last_best = state.best_metric is None or val < state.best_metric
            self.last_val = (state.global_step, val)
            if self.last_best and self.diverged is None:
                save_best(directory, model)
            emit("metric", {"step": state.global_step, "values": {
                "step": state.global_step, "val_loss": val,
                **{f"val_{key}": metrics[f"eval_{key}"] for key in REWARD_KEYS if f"eval_{key}" in metrics}}})
            return control

        def on_save(self, args, state, control, model=None, optimizer=None, **kwargs):
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not self.restore_checked and optimizer is not None:
                self.restore_checked = True
                self.restore_result = _restore_check(checkpoint, model, optimizer)
                on_restore(self.restore_result)
                if not self.restore_result["ok"]:
                    control.should_training_stop = True   # a run that cannot be resumed exactly goes no further
            # Only now is the checkpoint complete: name it as the one to resume from.
            write_atomic(Path(args.output_dir) / LATEST, json.dumps({"checkpoint": checkpoint.name,
                                                                     "step": state.global_step}) + "\n")
            at_eval = self.last_val is not None and self.last_val[0] == state.global_step
            emit("artifact", {"path": str(checkpoint), "label": "checkpoint", "step": state.global_step,
                              **({"val_loss": self.last_val[1], "is_best": self.last_best,
                                  "best_path": str(directory / "best")} if at_eval else {"reason": "stopped"})})
            return control

    return JobCallback()


def dpo_config(spec: dict, output_dir: Path):
    from trl import DPOConfig  # lazy: trl only where it runs, never at import

    cfg, plan, batch = spec["config"], run_plan(spec), spec["batch"]
    device = str(spec.get("device", "cpu"))
    return DPOConfig(
        output_dir=str(output_dir), beta=spec["dpo"]["beta"], loss_type=[spec["dpo"]["loss_type"]],
        learning_rate=cfg["lr"], lr_scheduler_type="linear", warmup_steps=spec["warmup_steps"],
        max_steps=spec["total_steps"], per_device_train_batch_size=batch["micro_batch"],
        per_device_eval_batch_size=batch["micro_batch"], gradient_accumulation_steps=batch["accumulation"],
        weight_decay=cfg["weight_decay"], max_grad_norm=cfg["max_grad_norm"],   # 0: no clipping, as in the SFT loop
        optim=OPTIMIZERS[plan["optimizer"]], seed=cfg["seed"], data_seed=cfg["seed"],
        eval_strategy="steps", eval_steps=cfg["eval_every"], save_strategy="steps", save_steps=cfg["eval_every"],
        save_total_limit=2, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=1, report_to=[], disable_tqdm=True, dataloader_num_workers=0,
        use_cpu=device == "cpu", bf16=plan.get("autocast") == "bfloat16", fp16=plan.get("autocast") == "float16",
        gradient_checkpointing=cfg["gradient_checkpointing"], max_length=spec["max_seq"],
        # Every pair is kept whole (the data check refuses over-long ones): no truncation.
        save_only_model=False, remove_unused_columns=True)


def build_trainer(spec: dict, directory: Path, callback: Any):
    import torch  # lazy: torch only where it runs, never at import
    from datasets import Dataset  # lazy: datasets only where it runs, never at import
    from peft import LoraConfig, prepare_model_for_kbit_training  # lazy: peft only where it runs, never at import
    from transformers import AutoTokenizer  # lazy: transformers only where it runs, never at import
    from trl import DPOTrainer  # lazy: trl only where it runs, never at import

    cfg, plan = spec["config"], run_plan(spec)
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train, val = _records(Path(spec["train_file"])), _records(Path(spec["val_file"]))
    if not val:
        raise InputError("the validation split is empty", path=Path(spec["val_file"]),
                         hint="the best checkpoint is chosen by validation loss: keep 10% for validation")
    model = load_base(Path(spec["model_dir"]), spec["precision"], spec.get("device", "cpu"),
                      attn_implementation=plan["attn_implementation"])
    if spec["method"] == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg["gradient_checkpointing"])
        for module in model.modules():
            # One bitsandbytes CPU kernel for the whole run, as core.training.model.add_lora does.
            if getattr(module, "support_avx512bf16_for_cpu", False):
                module.support_avx512bf16_for_cpu = False
    lora = LoraConfig(r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"], target_modules=spec["targets"],
                      bias="none", task_type="CAUSAL_LM")
    # TRL wraps the model in the adapter before the Trainer seeds anything: lora_A's start comes
    # from the run's seed here (a resumed run loads its adapter from the checkpoint anyway).
    torch.manual_seed(cfg["seed"])
    return DPOTrainer(model=model, args=dpo_config(spec, directory / "checkpoints"),
                      train_dataset=Dataset.from_list(train), eval_dataset=Dataset.from_list(val),
                      processing_class=tokenizer, peft_config=lora, callbacks=[callback])


def execute_dpo(ws_root: Path, directory: Path, *, resume: bool = False,
                emit: Callable[[str, dict], None] = lambda kind, payload: None,
                should_stop: Callable[[], bool] = lambda: False, record: bool = True,
                throttle_s: float = 0.0) -> Outcome:
    """Train (or continue) the DPO run in `directory`; returns the same Outcome as the SFT loop."""
    import datasets  # lazy: datasets only where it runs, never at import
    import torch  # lazy: torch only where it runs, never at import

    datasets.disable_progress_bars()
    ws = open_workspace(ws_root)
    spec = runs_mod.read_run(directory)
    if str(spec.get("device", "cpu")).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"run {spec['run_id']} trains on {spec['device']}, and torch sees no CUDA device here",
                         path=directory, hint="resume it on the machine (and GPU) it started on")
    resume_from = None
    if resume:
        recover_best(directory)
        resume_from = latest_checkpoint(directory / "checkpoints")
        if resume_from is None:
            emit("log", {"message": "no complete checkpoint yet: starting the run from step 0", "level": "warning"})

    def on_restore(result: dict) -> None:
        if record:
            record_restore(ws, spec["run_id"], result)
        if not result["ok"]:
            emit("log", {"message": "checkpoint restore check failed: " + "; ".join(result["differences"][:3]),
                         "level": "error"})
        else:
            emit("log", {"message": f"checkpoint restore verified at step {result['checkpoint'].rsplit('-', 1)[-1]}: "
                                    f"{result['adapter_tensors']} adapter tensors and {result['optimizer_tensors']} "
                                    "optimizer tensors bit-identical on disk"})

    callback = journal_callback(spec, directory, emit, should_stop, throttle_s, on_restore)
    trainer = build_trainer(spec, directory, callback)
    if resume_from is not None:
        callback.restore_checked = True   # the run's first checkpoint was checked when it was written
        emit("log", {"message": f"resumed from {resume_from.name} (step "
                                f"{json.loads((resume_from / 'trainer_state.json').read_text())['global_step']}"
                                f" of {spec['total_steps']})"})
    cfg, batch = spec["config"], spec["batch"]
    emit("log", {"message": f"run {spec['run_id']} on {spec.get('device', 'cpu')}: DPO (TRL DPOTrainer, beta "
                            f"{spec['dpo']['beta']:g}, {spec['dpo']['loss_type']} loss, reference: "
                            f"{spec['dpo']['reference']}) on a {spec['method']} adapter at {spec['precision']}, "
                            f"r {cfg['r']}, lr {cfg['lr']:g}, targets {', '.join(spec['targets'])}; "
                            f"{spec['train_examples']} train pairs; batch {batch['micro_batch']} x "
                            f"{batch['accumulation']} = {batch['effective_batch']}; {spec['total_steps']} steps"})
    runs_mod.update_run(directory, status="running")
    # As the SFT loop does on the CPU: subnormals flushed in every thread (speed, and the same
    # arithmetic in a resumed process as in the uninterrupted one).
    flush = str(spec.get("device", "cpu")) == "cpu" and subnormals_flush_everywhere(torch)
    with flushed_subnormals(torch, flush):
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    state = trainer.state
    step = state.global_step
    best_step, best_val = state.best_global_step, state.best_metric
    last = latest_checkpoint(directory / "checkpoints")
    if callback.diverged:
        status, message = DIVERGED, callback.diverged
    elif callback.restore_result is not None and not callback.restore_result["ok"]:
        status, message = RESTORE_FAILED, ("checkpoint restore check failed: "
                                           + "; ".join(callback.restore_result["differences"][:3])
                                           + ". A run that cannot be resumed exactly is not continued")
    elif callback.stopped and step < state.max_steps:
        status, message = STOPPED, (f"stopped at step {step} of {state.max_steps}; checkpoint saved, resume with "
                                    "`weightgate train resume`")
    else:
        status, message = FINISHED, (f"finished {step} steps; best val loss {best_val:.4f} at step {best_step}"
                                     if best_val is not None else f"finished {step} steps")
    outcome = Outcome(status, step, best_step, float(best_val) if best_val is not None else None,
                      str(last) if last else None, message, last_train_loss=callback.last_loss,
                      restore_check=callback.restore_result)
    runs_mod.update_run(directory, status=status, outcome=outcome.to_dict())
    if record and status in (FINISHED, DIVERGED):
        record_best(ws, spec["run_id"], outcome.to_dict(), str(directory / "best"))
    return outcome
