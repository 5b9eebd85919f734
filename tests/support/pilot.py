"""Driving the app in tests with Textual's Pilot: wait for a condition, the first report, the
notifications shown, a table's rows, the evidence log."""

from __future__ import annotations

import json
import time
from typing import Callable

from weightgate.core.engine.workspace import Workspace
from weightgate.tui.app import WeightgateApp


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def started(pilot) -> WeightgateApp:
    app = pilot.app
    await wait_for(pilot, lambda: app.report is not None or app.workspace_error is not None, what="first report")
    await pilot.pause()
    return app


def row_keys(table) -> list[str]:
    """A DataTable's row keys, top to bottom."""
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


def notifications(app: WeightgateApp) -> list[str]:
    """Every notification the app has shown, expired ones too (a toast's timeout can pass
    before a slow CI machine reaches the assert); conftest records them."""
    shown = getattr(app, "notification_log", None)
    if shown is None:
        shown = list(app._notifications)
    return [f"{n.title}: {n.message}" for n in shown]


def evidence_records(ws: Workspace) -> list[dict]:
    if not ws.evidence_path.exists():
        return []
    return [json.loads(line) for line in ws.evidence_path.read_text().splitlines() if line.strip()]
