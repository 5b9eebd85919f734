"""Detached jobs: `jobs` lists them (and `jobs selftest` proves the machinery); `attach` and
`cancel` sit at the top level, where a person reaches for them mid-run."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from weightgate.core.engine.errors import WeightgateError
from weightgate.core.engine.jobs import cancel_job, find_job, list_jobs, start_job
from weightgate.core.engine.views import JobRowReader
from weightgate.tui.cli import job_view
from weightgate.tui.cli.common import (
    AttachOpt,
    JsonOpt,
    as_dict,
    attach,
    clean_help,
    command,
    fail,
    status_line,
    workspace,
)

JobArg = Annotated[str, typer.Argument(help="Job id or a unique prefix.")]

app = typer.Typer(name="jobs", invoke_without_command=True, add_completion=False,
                  help=clean_help("""List jobs, newest first, with their state.

                  A job whose process vanished shows as crashed. `weightgate jobs selftest` starts a
                  job that proves the machinery."""),
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def jobs(ctx: typer.Context, as_json: JsonOpt = False,
         watch: Annotated[bool, typer.Option("--watch", help="Redraw the table live (Ctrl-C stops watching).")] = False,
         until_idle: Annotated[bool, typer.Option(
             "--until-idle", help="With --watch: stop once no job is queued or running.")] = False,
         interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between redraws.")] = 1.0,
         no_bell: Annotated[bool, typer.Option("--no-bell", help="With --watch: no terminal bell when a job ends.")]
         = False) -> None:
    if ctx.invoked_subcommand is not None:
        return
    jobs_dir = workspace(as_json).jobs_dir
    if watch and not as_json:
        raise typer.Exit(job_view.watch(jobs_dir, interval_s=interval, until_idle=until_idle, bell=not no_bell))
    statuses = list_jobs(jobs_dir)
    if as_json:
        print(json.dumps([as_dict(s) for s in statuses], indent=2, default=str))
    elif not statuses:
        print("no jobs yet (try `weightgate jobs selftest`)")
    else:
        print("\n".join(job_view.jobs_table(JobRowReader().read(jobs_dir), time.time(), job_view.terminal_width())))


@command(app)
def selftest(seconds: Annotated[float, typer.Option("--seconds", min=0.1, help="How long it runs.")] = 5.0,
             interval: Annotated[float, typer.Option("--interval", min=0.01, help="Seconds between events.")] = 0.2,
             follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """A detached job that emits progress and metrics: proves the job machinery."""
    ws = workspace(as_json)
    handle = start_job(ws.jobs_dir, "selftest", {"seconds": seconds, "interval": interval}, workspace=ws.root)
    job_dir = Path(handle.job_dir)
    if as_json and not follow:
        print(json.dumps({"job": job_dir.name, "dir": str(job_dir)}))
    elif not follow:
        print(f"started {job_dir.name}; follow it with `weightgate attach {job_dir.name}`")
    if follow:
        raise typer.Exit(attach(job_dir, as_json, follow=True))


commands = typer.Typer(add_completion=False)   # top-level: attach, cancel


@command(commands, "attach")
def attach_job(job: JobArg,
               as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line.")] = False,
               no_follow: Annotated[bool, typer.Option("--no-follow", help="Replay and stop.")] = False,
               no_bell: Annotated[bool, typer.Option(
                   "--no-bell", help="No terminal bell when the job ends (it rings only on a terminal).")] = False
               ) -> None:
    """Replay a job's whole history, then follow it live (Ctrl-C detaches)."""
    ws = workspace(as_json)
    try:
        job_dir = find_job(ws.jobs_dir, job)
    except WeightgateError as exc:
        fail(exc, as_json)
    raise typer.Exit(attach(job_dir, as_json, follow=not no_follow, bell=not no_bell and sys.stdout.isatty()))


@command(commands)
def cancel(job: JobArg,
           grace: Annotated[Optional[float], typer.Option(
               "--grace", min=0.0, help="Seconds between SIGTERM and SIGKILL (default: as long as the job "
                                        "says a clean stop takes, at least 10).")] = None,
           as_json: JsonOpt = False) -> None:
    """Cancel a job: SIGTERM (it saves a checkpoint), SIGKILL after the grace period."""
    ws = workspace(as_json)
    try:
        outcome = cancel_job(find_job(ws.jobs_dir, job), grace_s=grace)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps({"message": outcome.message, "signalled": outcome.signalled, "killed": outcome.killed,
                          "status": as_dict(outcome.status)}, default=str))
    else:
        print(outcome.message)
        print(status_line(outcome.status))

