"""The real TUI in a real terminal: the `weightgate` console script inside a detached tmux session.

Keys go in with `tmux send-keys`; the screen comes back as text with `tmux capture-pane -p`.
Each test uses its own tmux server (-L) so it never touches a user's sessions, polls with
timeouts (this runs on small, busy CI machines), and kills its server in a `finally`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from weightgate.core.engine.workspace import init_workspace

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None,
                       reason="tmux is not on PATH (CI installs it: apt-get install -y tmux)"),
]

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 120, 40


class Terminal:
    """One tmux server with one session of a fixed size running one command."""

    def __init__(self, command: str, *, env: dict[str, str] | None = None) -> None:
        self.socket = f"weightgate-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("TMUX", None)  # we may run inside someone's tmux: start our own server
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", str(WIDTH), "-y", str(HEIGHT),
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


# The 256-colour cube entries where red = green = blue, plus the grey ramp (232-255).
GREY_256 = {16, 59, 102, 145, 188, 231, *range(232, 256), 0, 7, 8, 15}


def colour_codes(raw: str) -> list[tuple[int, ...]]:
    """Every foreground/background colour in SGR sequences: (5, n) or (2, r, g, b)."""
    codes = []
    for params in re.findall(r"\x1b\[([0-9;]*)m", raw):
        numbers = [int(p) for p in params.split(";") if p.isdigit()]
        index = 0
        while index < len(numbers):
            if numbers[index] in (38, 48) and index + 1 < len(numbers):
                if numbers[index + 1] == 5 and index + 2 < len(numbers):
                    codes.append((5, numbers[index + 2]))
                    index += 3
                    continue
                if numbers[index + 1] == 2 and index + 4 < len(numbers):
                    codes.append((2, *numbers[index + 2:index + 5]))
                    index += 5
                    continue
            elif 30 <= numbers[index] <= 37 or 40 <= numbers[index] <= 47 or 90 <= numbers[index] <= 107:
                codes.append((4, numbers[index]))
            index += 1
    return codes


def is_grey(code: tuple[int, ...]) -> bool:
    if code[0] == 5:
        return code[1] in GREY_256
    if code[0] == 2:
        return code[1] == code[2] == code[3]
    return code[1] in (30, 37, 40, 47, 90, 97, 100, 107)  # black / white / bright variants


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


def test_tui_in_tmux_navigates_shows_locked_phase_help_and_quits(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    term = Terminal(tui_command(ws.root))
    try:
        # The frame: header, sidebar with every phase, the overview of the current phase.
        screen = term.wait_for("weightgate", "1 Selection", "2 Verification", "6 Deployment",
                               "Overview · current phase 1 · Selection")
        # Once the engine's report is in: gate states in words, and what holds the gate.
        screen = term.wait_for("locked", "select.task (todo)", "RAM")
        assert "no GPU" in screen or "GPU0" in screen

        term.send("2")
        screen = term.wait_for("Phase 2 · Verification", "Locked: held by")
        assert "select.task (todo)" in screen
        assert "Weights in safetensors" in screen  # the locked phase still lists its items

        term.send("F1")
        screen = term.wait_for("weightgate · keys", "Everywhere", "Next phase", "Attest", "Start selftest")
        term.send("Escape")
        term.wait_for("weightgate · keys", absent=True)
        term.wait_for("Phase 2 · Verification")

        term.send("q")
        term.wait_for("tui exited with 0", timeout=20)
    finally:
        term.close()


def test_tui_in_tmux_is_readable_without_colour(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    term = Terminal(tui_command(ws.root), env={"NO_COLOR": "1"})
    try:
        term.wait_for("1 Selection", "● open", "⊘ locked", "○ todo", "✓ pass")
        # Textual's answer to NO_COLOR is monochrome: only shades of grey reach the terminal.
        colours = [code for code in colour_codes(term.screen(escapes=True)) if not is_grey(code)]
        assert not colours, f"NO_COLOR=1 but the screen has colours: {colours[:5]}"
        term.send("q")
        term.wait_for("tui exited with 0", timeout=20)
    finally:
        term.close()


def test_tui_in_tmux_shows_a_bad_weightgate_toml(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ws.config_path.write_text("[requirements]\ntask = \"x\"\nmetric = = 1\n", encoding="utf-8")
    term = Terminal(tui_command(ws.root))
    try:
        screen = term.wait_for("Cannot read the workspace", "weightgate.toml:3:", "hint:")
        assert "invalid TOML" in screen
    finally:
        term.close()
