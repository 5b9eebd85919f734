"""The `weightgate` command: a thin typer view over core, in the style of the `hf` CLI: one
module per command group, shared `Annotated` options (common.py). Exit codes: 0 ok, 1 a check
failed, 2 bad usage or input.

    top level   init, status, attest, waive, revoke (checklist.py); jobs, attach, cancel
                (jobs.py); demo (demo.py); tui
    groups      weights, memory, eval, data, train, release, track (one module each)

`weightgate` alone (or with only -w DIR) opens the TUI without importing typer, so start-up
stays fast.
"""


import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import weightgate

# Commands that moved into a group, and where they are now: an old script gets the new name.
MOVED = {
    "selftest": "jobs selftest",
    "inspect": "weights inspect", "add": "weights add", "choose": "weights choose", "fetch": "weights fetch",
    "verify": "weights verify", "scan": "weights scan", "convert": "weights convert", "trust": "weights trust",
    "estimate": "memory estimate", "fit": "memory fit", "measure": "memory measure",
    "quant-check": "memory quant-check",
    "runs": "eval runs", "baseline": "eval baseline", "rescore": "eval rescore", "compare": "eval compare",
    "reviews": "eval reviews", "determinism": "eval determinism", "latency": "eval latency",
    "benchmark": "eval benchmark", "evalset": "eval check",
    "tune": "train fewshot / train gate",
    "ship": "release ship", "versions": "release versions", "rollback": "release rollback",
    "alias": "release alias", "verify-release": "release verify", "health": "release health",
    "canary": "release canary", "serve-commands": "release serve-commands",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    workspace = _tui_only(argv)
    if workspace is not False:
        sys.exit(launch_tui(workspace))
    moved = _moved_command(argv)
    if moved:
        print(f"weightgate: `{moved}` is now `weightgate {MOVED[moved]}` (see `weightgate --help`)", file=sys.stderr)
        sys.exit(2)
    build_app()(args=argv, prog_name="weightgate")


def _tui_only(argv: list[str]) -> str | None | bool:
    """The workspace path when argv asks for the TUI alone, else False."""
    if not argv:
        return None
    if len(argv) == 2 and argv[0] in ("-w", "--workspace"):
        return argv[1]
    if len(argv) == 1 and argv[0].startswith("--workspace="):
        return argv[0].split("=", 1)[1]
    return False


def _moved_command(argv: list[str]) -> str | None:
    """The first word of argv (after -w DIR) when it names a command that moved into a group."""
    rest = list(argv)
    while rest and rest[0] in ("-w", "--workspace"):
        rest = rest[2:]
    while rest and rest[0].startswith("--workspace="):
        rest = rest[1:]
    return rest[0] if rest and rest[0] in MOVED else None


def launch_tui(workspace: str | None) -> int:
    """Open the TUI. Only a missing workspace stops here; a broken weightgate.toml opens the
    UI, which shows the error with its line and column and recovers once the file is fixed."""
    root = Path(workspace or os.environ.get("WEIGHTGATE_WORKSPACE") or Path.cwd()).resolve()
    if not (root / "weightgate.toml").exists():
        from weightgate.core.engine.errors import NotAWorkspace  # lazy: the start-up path stats one file first
        from weightgate.core.engine.workspace import open_workspace  # lazy: tomlkit loads in the app's worker

        try:
            open_workspace(root)
        except NotAWorkspace as exc:
            print(f"weightgate: {exc}", file=sys.stderr)
            return exc.exit_code
    from weightgate.tui.app import run_tui  # lazy: textual only when the TUI opens

    return run_tui(root) or 0


def launch_served_tui(workspace: str | None, host: str, port: int, public_url: str | None) -> int:
    """`weightgate tui --serve`: the same workspace check as the terminal UI, then textual-serve."""
    root = Path(workspace or os.environ.get("WEIGHTGATE_WORKSPACE") or Path.cwd()).resolve()
    from weightgate.core.engine.errors import InputError, NotAWorkspace  # lazy: only the served UI checks here
    from weightgate.core.engine.workspace import open_workspace  # lazy: as above

    try:
        open_workspace(root)
    except NotAWorkspace as exc:
        print(f"weightgate: {exc}", file=sys.stderr)
        return exc.exit_code
    except InputError:
        pass  # a broken weightgate.toml: the UI shows it and recovers, as in a terminal
    from weightgate.tui.serve import serve_tui  # lazy: textual-serve only for --serve

    return serve_tui(root, host, port, public_url)


# The root's entries and the module each comes from, loaded only when a command is run (or the
# root's help lists them): `weightgate status` never imports the release or training machinery.
ENTRIES: dict[str, str] = {
    "init": "checklist", "status": "checklist", "attest": "checklist", "waive": "checklist",
    "revoke": "checklist", "jobs": "jobs", "attach": "jobs", "cancel": "jobs", "demo": "demo",
    "weights": "weights", "memory": "memory", "eval": "evaluation", "data": "data", "train": "train",
    "release": "release", "track": "track",
}


def build_app():
    """The root group: `tui` and the version here, everything else from its module on demand."""
    import typer  # lazy: typer (and rich) only when a command is given, never for the TUI

    from weightgate.tui.cli.common import STATE, command, root_group_class  # lazy: needs typer

    app = typer.Typer(cls=root_group_class(ENTRIES), add_completion=False, no_args_is_help=False,
                      pretty_exceptions_enable=False,
                      help="Six gated phases from 'which model?' to a checksummed, evaluated release.",
                      context_settings={"help_option_names": ["-h", "--help"]})

    def show_version(value: bool) -> None:
        if value:
            print(f"weightgate {weightgate.__version__}")
            raise typer.Exit(0)

    @app.callback(invoke_without_command=True)
    def root(ctx: typer.Context,
             workspace_dir: Annotated[Optional[Path], typer.Option(
                 "-w", "--workspace", file_okay=False,
                 help="Workspace directory (default: the current one). Also accepted after the command.")] = None,
             version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                                   help="Print the version and exit.")] = False) -> None:
        STATE["workspace"] = workspace_dir
        if ctx.invoked_subcommand is None:
            raise typer.Exit(launch_tui(str(workspace_dir) if workspace_dir else None))

    @command(app)
    def tui(serve: Annotated[bool, typer.Option(
                "--serve", help="Serve the UI to a web browser (textual-serve) instead of this terminal.")] = False,
            host: Annotated[str, typer.Option(help="With --serve: the address to listen on.")] = "localhost",
            port: Annotated[int, typer.Option(help="With --serve: the port to listen on.")] = 8000,
            public_url: Annotated[Optional[str], typer.Option(
                help="With --serve: the URL browsers reach it by, behind a proxy or tunnel "
                     "(default http://HOST:PORT).")] = None) -> None:
        """Open the terminal UI (the default with no command), or serve it to a browser."""
        workspace = str(STATE["workspace"]) if STATE["workspace"] else None
        if not serve:
            raise typer.Exit(launch_tui(workspace))
        raise typer.Exit(launch_served_tui(workspace, host, port, public_url))

    return app


if __name__ == "__main__":
    main()
