"""80x24 over SSH, driven with Pilot on real workspaces: the main area scrolls so Selection's
item table is reachable, the sidebar starts hidden on a narrow terminal and backslash toggles it,
and the Evaluation and Jobs tables keep their state and progress columns at 80 columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from compare_helpers import two_runs
from pilot import started, wait_for

from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.tui.app import WeightgateApp
from weightgate.tui.widgets.sidebar import PhaseSidebar

SMALL = (80, 24)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


async def open_target(pilot, key: str, target: str):
    app = pilot.app
    await pilot.press(key)
    await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == target, what=target)
    await pilot.pause()
    return app.screen


def fully_visible(widget, rows: int = 3) -> bool:
    """At least `rows` rows of the widget are on screen, inside the main area."""
    main = widget.screen.query_one("#main")
    visible = widget.region.intersection(main.region)
    return visible.height >= min(rows, widget.region.height) and visible.width > 0


async def test_selection_items_are_reachable_at_80x24_and_the_sidebar_toggles(ws) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot)
        screen = await open_target(pilot, "1", "phase-1")
        sidebar = screen.query_one(PhaseSidebar)
        assert not sidebar.display                                   # no room for it at 80 columns
        items = screen.phase_view.table
        main = screen.query_one("#main")
        assert main.max_scroll_y > 0                                 # the panels and items do not fit: it scrolls
        items.focus()
        await wait_for(pilot, lambda: fully_visible(items), what="the items in view")                                 # the focused item table is scrolled into view
        await pilot.press("down")
        assert items.cursor_row == 1
        main.focus()                                                 # tab reaches the main area while it scrolls
        await pilot.press("home")
        await wait_for(pilot, lambda: main.scroll_y == 0, what="scrolled to the top")
        await pilot.press("end")
        await wait_for(pilot, lambda: main.scroll_y == main.max_scroll_y, what="scrolled to the end")
        await wait_for(pilot, lambda: fully_visible(screen.phase_view.detail), what="the detail pane in view")

        await pilot.press("backslash")
        await wait_for(pilot, lambda: sidebar.display, what="sidebar shown")
        screen = await open_target(pilot, "2", "phase-2")            # the choice holds on every screen
        assert screen.query_one(PhaseSidebar).display
        await pilot.press("backslash")
        await wait_for(pilot, lambda: not screen.query_one(PhaseSidebar).display, what="sidebar hidden")


async def test_evaluation_and_jobs_keep_state_and_progress_columns_at_80_columns(ws) -> None:
    two_runs(ws)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot)
        for sidebar in (False, True):
            app.sidebar_shown = sidebar
            screen = await open_target(pilot, "4", "phase-4")
            table = screen.runs
            await wait_for(pilot, lambda: table.row_count == 2, what="two runs")
            await pilot.pause()
            assert "state" in table.shown_columns and "score" in table.shown_columns, (sidebar, table.shown_columns)
            jobs = await open_target(pilot, "j", "jobs")
            await pilot.pause()
            assert {"state", "progress"} <= set(jobs.table.shown_columns), (sidebar, jobs.table.shown_columns)
            assert sum(column.width + 2 for column in jobs.table.columns.values()) <= jobs.table.size.width
            await open_target(pilot, "o", "overview")
