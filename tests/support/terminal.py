"""The real TUI in a real terminal: a tmux session the tests type into and read the screen of."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

WIDTH, HEIGHT = 120, 40   # the terminal's columns and rows
from pathlib import Path

import pytest


class Terminal:
    """One tmux server with one session of a fixed size running one command."""

    def __init__(self, command: str, *, env: dict[str, str] | None = None, width: int = WIDTH,
                 height: int = HEIGHT) -> None:
        self.socket = f"weightgate-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("TMUX", None)  # we may run inside someone's tmux: start our own server
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height),
                  command)

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True,
                              timeout=30, check=False)

    def screen(self, *, escapes: bool = False) -> str:
        args = ["capture-pane", "-p", "-t", "main"] + (["-e"] if escapes else [])
        return self.tmux(*args).stdout

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "main", *keys)

    def wait_for(self, *texts: str, timeout: float = 30.0, absent: bool = False) -> str:
        """Poll the screen until every text is on it (or, with absent=True, none is)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            found = [text in screen for text in texts]
            if (not any(found)) if absent else all(found):
                return screen
            time.sleep(0.1)
        state = "gone" if absent else "on screen"
        raise AssertionError(f"timed out after {timeout} s waiting for {texts!r} to be {state}; screen:\n{screen}")

    def wait_for_job(self, kind: str, *, timeout: float = 30.0) -> str:
        """Poll until the Jobs screen has a row of a `kind` job that succeeded.

        Words alone are not enough: "ship" and "succeeded" can both be on the Deployment
        screen (an item's title, an earlier job's toast) before the job has even started.
        """
        row = re.compile(rf"^.*\s{re.escape(kind)}\s+✓ succeeded\s", re.MULTILINE)
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if "s start a selftest" in screen and row.search(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for a succeeded {kind} job on the Jobs "
                             f"screen; screen:\n{screen}")

    def close(self) -> None:
        self.tmux("kill-server")


def tui_command(workspace: Path) -> str:
    """The installed `weightgate` console script, as a user starts it: the entry point
    (tui.cli:main, its -w fast path) runs in a real terminal, from a directory that is neither
    the checkout nor the workspace. After the app exits, print its exit code and keep the pane
    open so the test can read it."""
    import shlex

    script = Path(sys.executable).with_name("weightgate")
    if not script.is_file():
        pytest.fail(f"no console script at {script}: install the project (pip install -e .) first")
    return (f"cd {shlex.quote(str(workspace.parent))} && {shlex.quote(str(script))} "
            f"-w {shlex.quote(str(workspace))}; echo \"tui exited with $?\"; sleep 60")
