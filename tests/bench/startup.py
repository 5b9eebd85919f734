"""Start-up benchmark: launch the TUI in a real pseudo-terminal and time its first painted frame.

    .venv/bin/python tests/bench/startup.py [--runs 5] [--workspace DIR]

What is measured, per run, from the moment the process is spawned:
  first frame   the terminal output contains the sidebar ("Verification") and the overview
                heading ("current phase"): the first frame the user sees, before any engine
                work (the checklist is computed in a thread worker after that).
  first report  the output also shows a gate state computed by the engine ("locked"):
                the checklist is on screen.
Next to it, with the same interpreter and in the same run (so the machine's load is the same):
`python -c pass` (spawn to exit), and a bare Textual app (a Static and a Footer) timed to its
first frame the same way: the floor any Textual UI starts from. Target: first frame < 0.5 s.

The terminal is a pty of 120x40 with TERM=xterm-256color; output is read as the app writes it,
nothing is rendered, so the markers are found in the raw byte stream (each word is written in
one piece). The app is stopped with SIGTERM (its process group) after each run.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_FRAME = (b"Verification", b"current phase")
FIRST_REPORT = b"locked"
COLS, ROWS = 120, 40


def _spawn_in_pty(argv: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                               start_new_session=True, close_fds=True)
    os.close(slave)
    return process, master


def _stop(process: subprocess.Popen, master: int) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 5
    while process.poll() is None and time.monotonic() < deadline:
        _drain(master, 0.05)
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    os.close(master)


def _drain(master: int, timeout: float) -> bytes:
    ready, _, _ = select.select([master], [], [], timeout)
    if not ready:
        return b""
    try:
        return os.read(master, 65536)
    except OSError:  # the child closed the terminal
        return b""


BARE_TEXTUAL_APP = """
from textual.app import App
from textual.widgets import Footer, Static
class Bare(App):
    def compose(self):
        yield Static("Verification · current phase · locked")
        yield Footer()
Bare().run()
"""


def time_tui(workspace: Path | None, timeout: float = 20.0) -> tuple[float, float | None]:
    """(first frame, first report) of the TUI; workspace None: the bare Textual app instead."""
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS))
    env.pop("NO_COLOR", None)
    if workspace is None:
        argv = [sys.executable, "-c", BARE_TEXTUAL_APP]
    else:
        # The real entry point a user types: the `weightgate` console script beside this Python
        # (`python -m weightgate` when it is not installed).
        script = Path(sys.executable).with_name("weightgate")
        argv = ([str(script)] if script.exists() else [sys.executable, "-m", "weightgate"]) + ["-w", str(workspace)]
    began = time.perf_counter()
    process, master = _spawn_in_pty(argv, env)
    output = b""
    first_frame = first_report = None
    try:
        while time.perf_counter() - began < timeout:
            output += _drain(master, 0.01)
            now = time.perf_counter() - began
            if first_frame is None and all(marker in output for marker in FIRST_FRAME):
                first_frame = now
            if first_frame is not None and FIRST_REPORT in output:
                first_report = now
                break
            if process.poll() is not None:
                break
    finally:
        _stop(process, master)
    if first_frame is None:
        tail = output[-2000:].decode("utf-8", errors="replace")
        raise RuntimeError(f"no first frame within {timeout} s; last output:\n{tail}")
    return first_frame, first_report


def time_python_pass() -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workspace", type=Path, default=None, help="default: a fresh `init_workspace`")
    args = parser.parse_args()

    from weightgate.core.engine.workspace import init_workspace

    with tempfile.TemporaryDirectory() as tmp:
        workspace = args.workspace or init_workspace(Path(tmp) / "ws").root
        time_tui(workspace)  # warm-up: .pyc files and the OS file cache
        time_tui(None)
        frames, reports, baseline, bare = [], [], [], []
        for _ in range(args.runs):
            baseline.append(time_python_pass())
            bare.append(time_tui(None)[0])
            frame, report = time_tui(workspace)
            frames.append(frame)
            if report is not None:
                reports.append(report)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.0f} ms" if values else "      n/a"

    def spread(values: list[float]) -> str:
        return f"{min(values) * 1000:5.0f}-{max(values) * 1000:<5.0f}" if values else ""

    base = statistics.median(baseline)
    print(f"weightgate TUI start-up, {args.runs} runs, pty {COLS}x{ROWS}, {sys.executable}")
    print(f"{'measure':<34}{'median':>10}  {'min-max ms':<12}{'x python -c pass':>18}")
    for name, values in (("python -c pass (spawn to exit)", baseline),
                         ("bare Textual app first frame", bare),
                         ("TUI first frame (sidebar+overview)", frames),
                         ("TUI first report (gates shown)", reports)):
        ratio = f"{statistics.median(values) / base:.1f}x" if values else ""
        print(f"{name:<34}{ms(values):>10}  {spread(values):<12}{ratio:>18}")
    verdict = "OK" if statistics.median(frames) < 0.5 else "SLOW"
    print(f"target: first frame < 500 ms -> {verdict} "
          f"(TUI - bare Textual: {(statistics.median(frames) - statistics.median(bare)) * 1000:.0f} ms; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
