"""`weightgate tui --serve`: the workbench in a web browser, through textual-serve.

textual-serve runs the app as a subprocess per browser tab (the command below) and relays its
terminal over a websocket to xterm.js in the page. The app is the same one `weightgate` opens in a
terminal, on the same workspace; textual-serve is the optional `serve` extra, so a plain install
does not carry aiohttp and jinja2.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

SERVE_HINT = "install the serve extra: pip install 'weightgate[serve]'"


def app_command(workspace: Path) -> str:
    """The shell command textual-serve starts for each browser session."""
    return shlex.join([sys.executable, "-m", "weightgate.tui.app", "-w", str(workspace)])


def serve_tui(workspace: Path, host: str = "localhost", port: int = 8000, public_url: str | None = None) -> int:
    """Serve the workbench on http://host:port until interrupted (Ctrl+C or SIGTERM)."""
    try:
        from textual_serve.server import Server  # lazy: only `--serve` needs aiohttp and jinja2
    except ImportError:
        print(f"weightgate: --serve needs textual-serve; {SERVE_HINT}", file=sys.stderr)
        return 2
    server = Server(app_command(workspace), host=host, port=port, title=f"weightgate · {workspace.name}",
                    public_url=public_url)
    print(f"weightgate: serving {workspace} on {server.public_url} (Ctrl+C stops)", file=sys.stderr, flush=True)
    server.serve()
    return 0
