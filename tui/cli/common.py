"""What every command group shares: exit codes, the workspace (-w before or after any
command), errors printed with their fix, the shared `Annotated` options, and starting a job and
following it to the end.

Imported only once a command is given (`weightgate` alone opens the TUI without typer).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, NoReturn, Optional

import typer
import typer.main
from typer.core import TyperGroup

from weightgate.core.engine.errors import WeightgateError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.job_kinds import PHASE_OF_KIND
from weightgate.core.engine.jobs import events_path, follow_job, read_status, start_job
from weightgate.core.engine.workspace import Workspace, open_workspace

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
WORKSPACE_PARAM = "workspace_dir"   # the root callback's -w/--workspace parameter
STATE: dict[str, Any] = {"workspace": None}   # -w as given, before or after the command

# Help texts are Rich markup: a literal [table] or [[candidates]] is written \[table].
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AttachOpt = Annotated[bool, typer.Option("--attach", help="Follow the job until it ends (Ctrl-C detaches).")]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Registry name (default: the current release's).")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Generation batch size.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N cases.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto (default), cpu, cuda or cuda:N.")]


def clean_help(text: str | None) -> str:
    """A docstring as help: paragraphs joined into single lines (Rich wraps them to the terminal),
    `\\b` blocks kept as written."""
    if not text:
        return ""

    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
                       for p in paragraphs)


def command(app: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable:
    """app.command() with the docstring cleaned into wrappable paragraphs."""
    def register(function: Callable) -> Callable:
        kwargs.setdefault("help", clean_help(function.__doc__))
        return app.command(name, **kwargs)(function)
    return register


def group(name: str, help: str) -> typer.Typer:
    app = typer.Typer(name=name, help=clean_help(help), no_args_is_help=True, add_completion=False,
                      context_settings={"help_option_names": ["-h", "--help"]})

    @app.callback()
    def stays_a_group() -> None:
        # typer turns an app with one command and no callback into that command: `data` must
        # stay `weightgate data check`, with room for more
        pass

    return app


def fail(exc: WeightgateError, as_json: bool = False) -> NoReturn:
    """Print the error (file, line, column and the fix) and exit with its code."""
    if as_json:
        payload = exc.to_dict() if hasattr(exc, "to_dict") else {"error": str(exc)}
        print(json.dumps(payload, indent=2))
    print(f"weightgate: {exc}", file=sys.stderr)
    raise typer.Exit(exc.exit_code)


def workspace(as_json: bool = False) -> Workspace:
    try:
        return open_workspace(STATE["workspace"])
    except WeightgateError as exc:
        fail(exc, as_json)


def root_group_class(entries: dict[str, str]) -> type[TyperGroup]:
    """The root group's class.

    Its entries load on demand: `entries` maps a name to the module of tui/cli/ that defines it,
    either as the module's `app` (a group: weights, memory, ...) or among its top-level
    `commands`. Loading a module per command keeps `weightgate status` from importing what
    `weightgate release ship` needs (click's lazy sub-command pattern).

    -w/--workspace works before the command (the root's own option) and after it, for every
    command and sub-command (`weightgate status -w DIR`, `weightgate data check -w DIR`): each
    gets a copy of the root's option that does not reach the command's function (expose_value
    off) but stores the directory where the root's does, so every command finds it through the
    same workspace() helper. Given on both sides, the two must name the same directory."""

    def store(ctx, param, value):
        if value is None:
            return None
        before = STATE["workspace"]
        if before is not None and Path(before).resolve() != Path(value).resolve():
            raise typer.BadParameter(f"{value} differs from the -w {before} given before the command",
                                     ctx=ctx, param=param)
        STATE["workspace"] = value
        return value

    def share(command_, option) -> None:
        if not any(p.name == WORKSPACE_PARAM or "-w" in getattr(p, "opts", ()) for p in command_.params):
            shared = copy.copy(option)
            shared.expose_value, shared.callback = False, store
            command_.params.append(shared)
        for sub in getattr(command_, "commands", {}).values():
            share(sub, option)

    class RootGroup(TyperGroup):
        def list_commands(self, ctx) -> list[str]:
            return [*entries, *super().list_commands(ctx)]

        def get_command(self, ctx, name: str):
            command_ = super().get_command(ctx, name)
            if command_ is not None or name not in entries:
                return command_
            module = importlib.import_module(f"weightgate.tui.cli.{entries[name]}")
            command_ = (typer.main.get_command(module.app) if getattr(module, "app", None) is not None
                        and module.app.info.name == name
                        else typer.main.get_group(module.commands).commands[name])
            option = next(p for p in self.params if p.name == WORKSPACE_PARAM)
            share(command_, option)
            self.commands[name] = command_
            return command_

    return RootGroup


# --- jobs from the command line -------------------------------------------------------------


def as_dict(record: Any) -> dict:
    return asdict(record) if is_dataclass(record) else dict(record)


def status_line(status: Any) -> str:
    data = as_dict(status)
    started = data.get("started") or data.get("created") or 0
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "-"
    extra = data.get("error") or data.get("detail") or ""
    return f"{data['job_id']:<36} {data['kind']:<10} {data['state']:<10} {when}  {extra}".rstrip()


def attach(job_dir: Path, as_json: bool, follow: bool = True, *, logs_only: bool = False, bell: bool = False) -> int:
    """Print every event from the first, then live ones; exit code from the job's final state.
    logs_only: print only `log` and `error` messages (commands that tell the story themselves).
    bell: ring the terminal bell when a job followed live ends (someone is waiting on it)."""
    from weightgate.tui.cli.job_view import BELL, EventPrinter  # lazy: only a human reader needs it

    printer = EventPrinter()
    live_at_start = follow and not read_status(job_dir).is_terminal
    try:
        stop = None if follow else (lambda: True)
        for event in follow_job(job_dir, stop=stop):
            if as_json:
                if not logs_only:
                    print(event.to_json(), flush=True)
            elif not logs_only:
                print(printer.line(event), flush=True)
            elif event.kind in ("log", "error"):
                print(f"  {event.payload.get('message') or json.dumps(event.payload)}", flush=True)
    except KeyboardInterrupt:
        print(f"\ndetached; the job goes on. Re-attach with `weightgate attach {job_dir.name}`", file=sys.stderr)
        return EXIT_OK
    state = read_status(job_dir).state
    if not as_json and not logs_only:
        print(f"job {job_dir.name}: {state}" + (BELL if bell and live_at_start else ""), flush=True)
    return EXIT_OK if state in ("succeeded", "running", "queued") else EXIT_FAILED


def job_result(job_dir: Path) -> dict | None:
    """The data of a finished job's `result` event."""
    events, _ = read_events(events_path(job_dir))
    results = [event for event in events if event.kind == "result"]
    return results[-1].payload.get("data") if results else None


def say_if_locked(ws: Workspace, phase: int | None, what: str = "this run") -> None:
    """One line on stderr when the work is for a locked phase (it still runs and is recorded)."""
    if phase is None or phase <= 1:
        return
    from weightgate.core.gates import (
        locked_note,  # lazy: every phase's checks; only evidence-recording commands need them
    )

    try:
        note = locked_note(ws, phase, what)
    except WeightgateError:
        return   # a broken workspace file: `status` names it; the command reports its own errors
    if note:
        print(f"note: {note}", file=sys.stderr)


def run_job(kind: str, params: dict, *, as_json: bool, follow: bool,
            verdict: Callable[[dict], tuple[str, bool]] | None = None) -> NoReturn:
    """Start a detached job; with --attach follow it and exit with its verdict: verdict(result)
    gives (message, ok)."""
    ws = workspace(as_json)
    say_if_locked(ws, PHASE_OF_KIND.get(kind), f"this {kind.replace('_', ' ')} job")
    handle = start_job(ws.jobs_dir, kind, params, workspace=ws.root)
    if not follow:
        print(json.dumps({"job": handle.job_id, "dir": str(handle.job_dir)}) if as_json
              else f"started {kind} job {handle.job_id}; follow it with `weightgate attach {handle.job_id}`")
        raise typer.Exit(EXIT_OK)
    code = attach(handle.job_dir, as_json, follow=True)
    result = job_result(handle.job_dir)
    if code == EXIT_OK and verdict is not None and result is not None:
        message, ok = verdict(result)
        if not as_json and message:
            print(message)
        code = EXIT_OK if ok else EXIT_FAILED
    raise typer.Exit(code)


def run_job_to_end(kind: str, params: dict, as_json: bool) -> dict:
    """Start the job, print its log lines as they come (not with --json) and return its result
    data with ok=True, or {ok: False, error} when it failed. Ctrl-C detaches (the job goes on)."""
    ws = workspace(as_json)
    if kind != "ship":   # ship refuses a locked phase 6 (or records its override) itself
        say_if_locked(ws, PHASE_OF_KIND.get(kind), f"this {kind.replace('_', ' ')} job")
    handle = start_job(ws.jobs_dir, kind, params, workspace=ws.root)
    if not as_json:
        print(f"job {handle.job_id} (follow it elsewhere: weightgate attach {handle.job_id})", flush=True)
    attach(handle.job_dir, as_json, logs_only=True)
    events, _ = read_events(events_path(handle.job_dir))
    results = [event for event in events if event.kind == "result"]
    payload = results[-1].payload if results else {}
    if payload.get("status") == "succeeded" and isinstance(payload.get("data"), dict):
        return {"ok": True, "job": handle.job_id, **payload["data"]}
    state = read_status(handle.job_dir).state
    errors = [event.payload.get("message", "") for event in events if event.kind == "error"]
    return {"ok": False, "job": handle.job_id, "state": state,
            "error": errors[-1] if errors else f"the {kind} job ended {state}"}
