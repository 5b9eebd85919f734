"""`weightgate train`: phase 5, only when the baseline misses, and only if it wins: few-shot
first, LoRA / QLoRA runs (SFT, or DPO on preference pairs with [training] method = "dpo") as
detached jobs, resume, the keep-or-reject gate."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from weightgate.core.engine.errors import WeightgateError
from weightgate.core.engine.jobs import start_job
from weightgate.core.engine.workspace import Workspace
from weightgate.core.training.keep_or_reject import adapter_decision_value, default_adapter, targets
from weightgate.core.training.prompting import plan_fewshot
from weightgate.core.training.runs import list_runs, resolve_resume
from weightgate.core.training.session import check_resumable, check_resume_device, new_run_params
from weightgate.tui.cli.common import (
    EXIT_OK,
    AttachOpt,
    JsonOpt,
    attach,
    command,
    fail,
    group,
    job_result,
    run_job,
    say_if_locked,
    workspace,
)

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (a GPU when torch sees one), cpu, cuda or cuda:N. "
                                                         "With --nproc N on CUDA each process takes one GPU.")]

app = group("train", """Phase 5: fine-tune only when the baseline misses, keep it only if it wins.

Try few-shot prompting first, train a LoRA adapter (QLoRA at 4-bit) as a detached job that
survives a dropped connection, resume it exactly, and let the gate keep or reject it.""")


def _start(ws: Workspace, params: dict, as_json: bool, follow: bool) -> None:
    say_if_locked(ws, 5, "this training run")
    handle = start_job(ws.jobs_dir, "train", params, workspace=ws.root)
    if not follow:
        print(json.dumps({"job": handle.job_id, "dir": str(handle.job_dir)}) if as_json
              else f"started train job {handle.job_id}\n  follow it: weightgate attach {handle.job_id}\n"
                   f"  stop it (a checkpoint is saved): weightgate cancel {handle.job_id}\n"
                   f"  continue later: weightgate train resume")
        raise typer.Exit(EXIT_OK)
    code = attach(handle.job_dir, as_json, follow=True)
    result = job_result(handle.job_dir)
    if not as_json and result and result.get("message"):
        print(result["message"])
    raise typer.Exit(code)


@command(app)
def start(device: DeviceOpt = "auto",
          nproc: Annotated[int, typer.Option("--nproc", min=1,
                                             help="Processes (torchrun; gloo on the CPU, nccl on GPUs).")] = 1,
          steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Stop after N steps (smoke runs).")] = None,
          follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """Fine-tune a LoRA adapter as a detached job (QLoRA when the precision is 4-bit).

    The training data is checked and prepared first, so bad input fails here, not in the job."""
    ws = workspace(as_json)
    try:
        params = new_run_params(ws, nproc, steps, device)
    except WeightgateError as exc:
        fail(exc, as_json)
    _start(ws, params, as_json, follow)


@command(app)
def resume(run: Annotated[Optional[str], typer.Argument(help="The run to resume (default: the last one).")] = None,
           device: DeviceOpt = "auto", follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """Continue a cancelled or killed run from its last checkpoint, exactly."""
    ws = workspace(as_json)
    try:
        directory = resolve_resume(ws, run)
        check_resume_device(check_resumable(ws, directory), device)
    except WeightgateError as exc:
        fail(exc, as_json)
    _start(ws, {"resume": directory.name}, as_json, follow)


@command(app)
def runs(as_json: JsonOpt = False) -> None:
    """Training runs with their state and best validation loss."""
    found = list_runs(workspace(as_json))
    if as_json:
        print(json.dumps(found, indent=2, default=str))
        return
    if not found:
        print("no training runs yet: weightgate train start")
        return
    for row in found:
        loss = (f"{row['best_val_loss']:.4f} at step {row['best_step']}" if row.get("best_val_loss") is not None
                else "- (no checkpoint evaluated yet)")
        steps = f"{row.get('steps') or 0}/{row.get('total_steps') or '?'}"
        print(f"{row['run_id']:<24} {row['status']:<14} {row.get('objective') or 'sft':<4} "
              f"{str(row.get('method') or ''):<6} "
              f"{str(row.get('precision') or ''):<5} {str(row.get('device') or ''):<7} {steps:<9} best {loss}")


@command(app)
def fewshot(shots: Annotated[int, typer.Option("--shots", min=1, max=16,
                                               help="Examples from the training data when the task set has no "
                                                    "few_shot turns of its own.")] = 3,
            batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1,
                                                              help="Default: the zero-shot baseline's.")] = None,
            follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """Prompting first: the task set with few-shot examples, beside the baseline.

    A job; decides tune.prompting_first."""
    try:
        plan_fewshot(workspace(as_json), shots=shots, batch_size=batch_size)
    except WeightgateError as exc:
        fail(exc, as_json)

    def verdict(result: dict):
        base = result.get("baseline_score")
        if result["source"] == "zero-shot":   # the set prompts with its own few-shot turns
            text = f"zero-shot variant {result['score']:.3f} (run {result['run']})"
            return text + (f" vs few-shot baseline {base:.3f} (run {result['baseline']})"
                           if base is not None else "; no baseline yet"), True
        text = f"few-shot {result['score']:.3f} ({result['shots']} from the {result['source']}, run {result['run']})"
        return text + (f" vs zero-shot {base:.3f} (run {result['baseline']})" if base is not None
                       else "; no zero-shot baseline yet"), True
    run_job("fewshot", {"shots": shots, "batch_size": batch_size}, as_json=as_json, follow=follow, verdict=verdict)


@command(app)
def gate(adapter: Annotated[Optional[str], typer.Argument(
             help="An adapter id under .weightgate/adapters/ or a directory (default: the newest).")] = None,
         follow: Annotated[bool, typer.Option("--attach/--detach", help="Follow the job (default) or not.")] = True,
         as_json: JsonOpt = False) -> None:
    """Keep or reject an adapter: the task score must rise, the general score hold.

    A job: eval runs on the task and general sets with the adapter, each compared with the base
    model's baseline; kept only if the task score rises by at least \\[training] task_margin and the
    general score falls by at most \\[training] general_tolerance. Keeping writes \\[decisions]
    adapter. Exit 1 when rejected."""
    ws = workspace(as_json)
    try:
        chosen = adapter_decision_value(ws, adapter or default_adapter(ws))
        targets(ws, chosen)
    except WeightgateError as exc:
        fail(exc, as_json)

    def verdict(result: dict):
        lines = [result["note"]]
        for name in ("task", "general"):
            row = result[name]
            lines.append(f"  {name}: weightgate eval compare {row['base_run']} {row['adapter_run']}  "
                         f"({row['regressions']} regressions, {row['improvements']} improvements)")
        if result["kept"]:
            lines.append(f'  [decisions] adapter = "{result["adapter"]}"')
        return "\n".join(lines), bool(result["kept"])
    run_job("tune_gate", {"adapter": chosen}, as_json=as_json, follow=follow, verdict=verdict)
