"""The real TUI in a real terminal: the `weightgate` console script inside a detached tmux session.

Keys go in with `tmux send-keys`; the screen comes back as text with `tmux capture-pane -p`.
Each test uses its own tmux server (-L) so it never touches a user's sessions, polls with
timeouts (this runs on small, busy CI machines), and kills its server in a `finally`.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from terminal import Terminal, tui_command

from weightgate.core.engine.workspace import init_workspace

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None,
                       reason="tmux is not on PATH (CI installs it: apt-get install -y tmux)"),
]

ROOT = Path(__file__).resolve().parents[2]


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


def test_tui_in_tmux_at_80x24_reaches_the_whole_selection_screen_by_keyboard(tmp_path: Path) -> None:
    """A small terminal over SSH: every part of the Selection screen (the tabs, each tab's panel,
    the gate, every item, the item's detail) comes into view by keyboard alone, the footer keeps
    its keys, and the sidebar hides and shows with backslash."""
    from weightgate.core.gates import compute_report

    ws = init_workspace(tmp_path / "ws")
    items = [status.item for status in compute_report(ws).phase(1).items]
    term = Terminal(tui_command(ws.root), width=80, height=24)
    try:
        term.wait_for("Overview", "Quit")
        term.send("1")
        seen = [term.wait_for(items[0].title[:20], "Help", "Quit")]   # the focused items, the footer's keys
        assert "2 Verification" not in seen[0]                        # no room for the sidebar at 80 columns
        term.send(*["Down"] * len(items))                             # to the last item, in the item table
        seen.append(term.wait_for(items[-1].title[:20]))
        term.send("Tab", "End")                                       # the main area scrolls: the item's detail
        seen.append(term.wait_for(items[-1].id, "Why"))
        for _ in range(8):                                            # back through everything focusable
            term.send("BTab")
            time.sleep(0.3)
            seen.append(term.screen())
        term.send("s")                                                # the other tab of the panel
        seen.append(term.wait_for("No candidates"))                   # (a loaded machine takes a second)
        everything = "\n".join(seen)
        for text in ("Candidates (", "Requirements (", "Phase 1 · Selection", "No candidates", "quality",
                     *(item.title[:20] for item in items)):
            assert text in everything, f"{text!r} never came into view"
        term.send("\\")
        term.wait_for("2 Verification", "6 Deployment")
        term.send("\\")
        term.wait_for("2 Verification", absent=True)
        term.send("q")
        term.wait_for("tui exited with 0", timeout=20)
    finally:
        term.close()
