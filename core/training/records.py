"""Evidence from training runs, tied to the fingerprints each item names in core/checklist.py:

    tune.lora_config         the config used, every value and whether it was a default
    tune.effective_batch     micro x accumulation x processes = effective batch, and the estimate
                             of that micro batch (plus headroom) against the budget
    tune.checkpoint_restore  step-1 checkpoint restored into a fresh model + optimizer, bitwise equal
    tune.best_checkpoint     the run finished; its best step and validation loss

Each is recorded by the run that measured it (kind "job"), like core/eval_checks.py does.
"""

from __future__ import annotations

from weightgate.core.engine.evidence import FAIL, PASS, record_result


def record_lora_config(ws, run_id: str, config: dict, targets: list[str], method: str, precision: str) -> None:
    problems = []
    if config["alpha"] != 2 * config["r"]:
        problems.append(f"alpha {config['alpha']} is not 2r ({2 * config['r']})")
    if config["lr"] > 5e-4:
        problems.append(f"lr {config['lr']:g} is above the conservative range (<= 2e-4 is the seeds' default)")
    values = {"run": run_id, "method": method, "precision": precision, "target_modules": targets,
              **{k: config[k] for k in ("r", "alpha", "dropout", "lr", "warmup_ratio", "epochs", "effective_batch",
                                        "seed", "max_grad_norm", "weight_decay")},
              "defaults": config.get("notes", []), "warnings": problems}
    note = (f"r {config['r']}, alpha {config['alpha']}, dropout {config['dropout']:g}, lr {config['lr']:g}, "
            f"warmup {config['warmup_ratio']:.0%}, {config['epochs']} epochs, {method} on {', '.join(targets)}")
    if problems:
        note += "; " + "; ".join(problems)
    # Documented = recorded with every value; unconventional values are shown, not refused.
    record_result(ws, "tune.lora_config", PASS, values, note=note)


def record_effective_batch(ws, run_id: str, plan: dict) -> None:
    ok = plan["micro_batch"] * plan["accumulation"] * plan["processes"] == plan["effective_batch"] \
        and plan["fits"] is not False
    mib = 1 << 20
    budget = f"{plan['budget_bytes'] / mib:,.0f} MiB ({plan['budget_source']})" if plan["budget_bytes"] else "unknown"
    note = (f"{plan['micro_batch']} x {plan['accumulation']} x {plan['processes']} = {plan['effective_batch']}; "
            f"estimate {plan['estimate_bytes'] / mib:,.0f} MiB, with headroom {plan['required_bytes'] / mib:,.0f} MiB, "
            f"budget {budget} at seq {plan['seq']}")
    if plan["fits"] is False:
        note += ": even micro batch 1 does not fit; use QLoRA (nf4), a shorter max_seq or gradient checkpointing"
    record_result(ws, "tune.effective_batch", PASS if ok else FAIL, {"run": run_id, **plan}, note=note)


def record_restore(ws, run_id: str, result: dict) -> None:
    note = (f"step-1 checkpoint restored into a fresh model and optimizer: {result['adapter_tensors']} adapter and "
            f"{result['optimizer_tensors']} optimizer tensors bit-identical" if result["ok"]
            else "restore differs: " + "; ".join(result["differences"][:3]))
    record_result(ws, "tune.checkpoint_restore", PASS if result["ok"] else FAIL, {"run": run_id, **result}, note=note)


def record_best(ws, run_id: str, outcome: dict, best_path: str) -> None:
    finished = outcome["status"] == "finished" and outcome.get("best_step") is not None
    values = {"run": run_id, "best_step": outcome.get("best_step"), "best_val_loss": outcome.get("best_val_loss"),
              "steps": outcome.get("step"), "status": outcome["status"], "adapter": best_path}
    note = (f"run {run_id} finished {outcome.get('step')} steps; best val loss {outcome['best_val_loss']:.4f} at step "
            f"{outcome['best_step']} -> {best_path}" if finished else f"run {run_id} {outcome['status']}: "
            f"{outcome.get('message', '')}")
    record_result(ws, "tune.best_checkpoint", PASS if finished else FAIL, values, note=note)
