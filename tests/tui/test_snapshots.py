"""Snapshots (pytest-textual-snapshot) of every screen at 80x24 and 160x48, in the dark and the
light theme: the overview, the six phase screens, jobs, compare, review and the help overlay.

The SVGs live in tests/tui/__snapshots__/test_snapshots/, one per screen, size and theme, and
were looked at before they were committed. After a change to what a screen shows, look at the
failing ones (pytest writes snapshot_report.html next to the run, old and new side by side),
then regenerate them all with one command and review the diff of the SVGs:

    pytest tests/tui/test_snapshots.py --snapshot-update

Everything that could differ between two runs is fixed: the workspace is built by the same
helpers every time (phase 1's requirements and cases, one candidate with cached metadata, no
jobs); HOME is the test's tmp dir, so the header shows `~/ws` instead of a tmp path; the
evidence the checks record is by "engineer" at a fixed time, shown in UTC; and the device meter
reads a frozen snapshot (16 GiB of RAM, 6 used, no GPU) instead of this machine's.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import add_candidate, phase1_ready
from pilot import started

from weightgate.core.engine import evidence
from weightgate.core.memory import devices
from weightgate.themes import DARK, LIGHT
from weightgate.tui.app import WeightgateApp

GIB = 1024**3
FROZEN_EPOCH = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
SIZES = {"80x24": (80, 24), "160x48": (160, 48)}
THEMES = {"dark": DARK.name, "light": LIGHT.name}
# screen name -> the keys that open it from the overview ("" stays on the overview)
SCREENS = {
    "overview": "",
    "selection": "1",
    "verification": "2",
    "memory": "3",
    "evaluation": "4",
    "finetuning": "5",
    "deployment": "6",
    "jobs": "j",
    "compare": "C",
    "review": "R",
    "help": "f1",
}


class FrozenDevicePoller:
    """Stands in for core.memory.devices.DevicePoller: the same snapshot on every machine."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval

    def poll(self) -> devices.DeviceSnapshot:
        return devices.DeviceSnapshot(gpus=[], host=devices.HostMemory(total=16 * GIB, used=6 * GIB,
                                                                        available=10 * GIB),
                                      reason="no GPU found", time=0.0)


@pytest.fixture
def snapshot_app(tmp_path: Path, monkeypatch):
    """A factory for the app on the fixed workspace, with the header's inputs frozen."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(devices, "DevicePoller", FrozenDevicePoller)
    # The checks' evidence records carry who and when; the item pane shows both.
    monkeypatch.setattr(evidence, "_user", lambda: "engineer")
    monkeypatch.setattr(evidence, "time", SimpleNamespace(time=lambda: FROZEN_EPOCH))
    ws = phase1_ready(tmp_path / "ws")
    add_candidate(ws, "hf:HuggingFaceTB/SmolLM2-135M-Instruct", 134_515_008)
    yield lambda: WeightgateApp(ws.root)
    monkeypatch.undo()
    time.tzset()  # back to the machine's zone for the tests that follow in this process


async def settle(pilot, timeout: float = 10.0) -> None:
    """Until no worker has run for two checks in a row: the screen's reads are in and drawn."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        await pilot.pause(0.15)
        quiet = quiet + 1 if not any(worker.is_running for worker in pilot.app.workers) else 0


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", SCREENS)
def test_screen(snap_compare, snapshot_app, screen: str, size: str, theme: str) -> None:
    async def open_screen(pilot) -> None:
        app = await started(pilot)
        app.theme = THEMES[theme]
        if SCREENS[screen]:
            await pilot.press(SCREENS[screen])
        await settle(pilot)

    assert snap_compare(snapshot_app(), terminal_size=SIZES[size], run_before=open_screen)
