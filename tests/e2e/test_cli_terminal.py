"""The CLI on a real terminal (a pseudo-terminal of 80 columns): `status` folds its long lines
at spaces under their own text, so the terminal's hard wrap never cuts an item id in two."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from weightgate.core.engine.checklist import ITEMS
from weightgate.core.engine.workspace import init_workspace


def run_on_terminal(*args, columns=80, timeout=60) -> str:
    """Run weightgate with stdout on a pty of `columns` columns; its output with \\r\\n as \\n."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen([sys.executable, "-m", "weightgate", *map(str, args)], stdout=slave,
                               stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=timeout)
    os.close(master)
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def test_status_at_80_columns_folds_at_spaces_and_never_splits_an_id(tmp_path):
    ws = init_workspace(tmp_path / "w")
    text = run_on_terminal("-w", ws.root, "status")
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, max(lines, key=len)
    words = re.findall(r"[\w.\-/]+", text)
    for item in ITEMS:   # every id shown whole, on one line (its rows and the held-by lists)
        assert words.count(item.id) >= 1, item.id
    ids = {item.id for item in ITEMS}
    cut = [word for word in words if re.fullmatch(r"(select|verify|memory|eval|tune|ship)\.\w*", word)
           and word not in ids]
    assert not cut, f"ids cut in two: {cut}"
    held = next(i for i, line in enumerate(lines) if "held by:" in line and "Phase 2" in lines[i - 1])
    assert lines[held + 1].startswith(" " * len("    held by: ")) and "(todo)" in lines[held + 1]


def test_attach_rings_the_bell_on_a_terminal_when_the_job_it_follows_ends(tmp_path):
    ws = init_workspace(tmp_path / "w")

    def selftest() -> str:
        out = subprocess.run([sys.executable, "-m", "weightgate", "-w", str(ws.root), "jobs", "selftest",
                              "--seconds", "1", "--interval", "0.1", "--json"], capture_output=True, text=True)
        return json.loads(out.stdout)["job"]

    job = selftest()
    text = run_on_terminal("-w", ws.root, "attach", job)
    assert text.rstrip("\n").endswith(f"job {job}: succeeded\a") and text.count("\a") == 1
    # Replaying a job that had already ended rings nothing; neither does --no-bell, nor a pipe.
    assert "\a" not in run_on_terminal("-w", ws.root, "attach", job)
    assert "\a" not in run_on_terminal("-w", ws.root, "attach", selftest(), "--no-bell")
    piped = subprocess.run([sys.executable, "-m", "weightgate", "-w", str(ws.root), "attach", selftest()],
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "succeeded" in piped.stdout and "\a" not in piped.stdout
