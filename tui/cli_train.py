"""`weightgate train`: start, resume and list LoRA / QLoRA runs (the `train` job kind).

    weightgate train [--device D] [--nproc N] [--steps N] [--attach] [--json]
                                                                   prepare the data, start a run
    weightgate train --resume [RUN]                                continue RUN (default: the newest
                                                                   resumable run) from its checkpoint
    weightgate train runs [--json]                                 runs with status and best val loss

--device: auto (the default: a GPU when torch sees one, else the CPU), cpu, cuda (with --nproc N,
one GPU per process: cuda:0 .. cuda:N-1, nccl), or cuda:N. The run records it; a resumed run
continues on the device it started on.

Every bad input (the [training] table, the data, a run that cannot be resumed) is reported
here with exit code 2, before a job starts.
"""

from __future__ import annotations

import json
from typing import Optional

from weightgate.core.training.session import check_resume_device, new_run_params

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_train_commands(app, workspace, fail) -> None:
    import typer

    from weightgate.core.engine.errors import InputError, WeightgateError

    @app.command("train")
    def train_cmd(what: Optional[str] = typer.Argument(None, metavar="[runs | RUN]",
                                                       help="`runs` lists the runs; with --resume, the run to resume."),
                  resume: bool = typer.Option(False, "--resume", help="Continue a run from its last checkpoint."),
                  device: str = typer.Option("auto", "--device",
                                             help="auto (a GPU when torch sees one), cpu, cuda or cuda:N. "
                                                  "With --nproc N on CUDA each process takes one GPU."),
                  nproc: int = typer.Option(1, "--nproc", min=1,
                                            help="Processes (torchrun; gloo on the CPU, nccl on GPUs)."),
                  steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Stop after N steps (smoke runs)."),
                  follow: bool = typer.Option(False, "--attach", help="Follow the job until it ends."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Fine-tune a LoRA adapter (QLoRA when the decided precision is 4-bit) as a detached job."""
        ws = workspace(as_json)
        if what == "runs" and not resume:
            _print_runs(ws, as_json)
            return
        try:
            if resume:
                from weightgate.core.training.runs import resolve_resume
                from weightgate.core.training.session import check_resumable

                directory = resolve_resume(ws, what)
                spec = check_resumable(ws, directory)
                check_resume_device(spec, device)
                params: dict = {"resume": directory.name}
            else:
                if what is not None:
                    raise InputError(f"unexpected argument {what!r}",
                                     hint="`weightgate train runs` lists runs; `weightgate train --resume RUN` resumes")
                params = new_run_params(ws, nproc, steps, device)
        except WeightgateError as exc:
            fail(exc, as_json)
        _start(ws, params, as_json, follow)

    def _start(ws, params: dict, as_json: bool, follow: bool) -> None:
        from weightgate.core.engine.jobs import start_job
        from weightgate.tui.cli import _attach, _job_result

        handle = start_job(ws.jobs_dir, "train", params, workspace=ws.root)
        if not follow:
            print(json.dumps({"job": handle.job_id, "dir": str(handle.job_dir)}) if as_json
                  else f"started train job {handle.job_id}\n  follow it: weightgate attach {handle.job_id}\n"
                       f"  stop it (a checkpoint is saved): weightgate cancel {handle.job_id}\n"
                       f"  continue later: weightgate train --resume")
            raise typer.Exit(EXIT_OK)
        code = _attach(handle.job_dir, as_json, follow=True)
        result = _job_result(handle.job_dir)
        if not as_json and result and result.get("message"):
            print(result["message"])
        raise typer.Exit(code)


def _print_runs(ws, as_json: bool) -> None:
    from weightgate.core.training.runs import list_runs

    found = list_runs(ws)
    if as_json:
        print(json.dumps(found, indent=2, default=str))
        return
    if not found:
        print("no training runs yet: weightgate train")
        return
    for run in found:
        loss = f"{run['best_val_loss']:.4f}@{run['best_step']}" if run.get("best_val_loss") is not None else "-"
        steps = f"{run.get('steps') or 0}/{run.get('total_steps') or '?'}"
        print(f"{run['run_id']:<24} {run['status']:<14} {str(run.get('method') or ''):<6} "
              f"{str(run.get('precision') or ''):<5} {str(run.get('device') or ''):<7} {steps:<9} best {loss}")
