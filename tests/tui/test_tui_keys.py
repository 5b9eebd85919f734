"""Keys a user on a small terminal over SSH relies on, driven with Pilot on real workspaces: the
footer shows every key of the screen at 160 and 80 columns (wrapped when one row is not enough),
Esc leaves an input and gives the digits back to the app, Compare has a way back, and `n` toward
a locked phase says why instead of doing nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from compare_helpers import case, make_run, two_runs
from pilot import started, wait_for
from textual.widgets import Footer, Input

from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.core.evaluation.runs import list_runs
from weightgate.tui.app import WeightgateApp
from weightgate.tui.widgets.footer import WrappingFooter


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


async def open_phase(pilot, number: int):
    app = await started(pilot)
    await pilot.press(str(number))
    await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == f"phase-{number}", what=f"phase {number}")
    return app.screen


def keys_cut_off(screen) -> list[str]:
    """The screen's shown actions whose footer key is missing or not wholly on the screen."""
    footer = screen.query_one(Footer)
    on_screen = {key.action: key for key in footer.query("FooterKey")}
    width, height = screen.app.size
    missing = []
    for _node, binding, _enabled, _tooltip in screen.active_bindings.values():
        if not binding.show:
            continue
        key = on_screen.get(binding.action)
        region = key.region if key is not None else None
        if region is None or region.width == 0 or region.right > width or region.bottom > height:
            missing.append(binding.action)
    return missing


@pytest.mark.parametrize("size", [(160, 48), (80, 24)], ids=["160x48", "80x24"])
async def test_the_footer_shows_every_key_of_the_screen_wrapping_when_one_row_is_not_enough(ws, size) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=size) as pilot:
        for number in (3, 4, 5):
            screen = await open_phase(pilot, number)
            await wait_for(pilot, lambda: screen.query(Footer) and screen.query("FooterKey"),
                           what="the footer's keys")
            await pilot.pause()
            assert keys_cut_off(screen) == [], f"phase {number} at {size}"
            for label in ("Help", "Theme", "Quit"):
                assert any(key.description == label for key in screen.query("FooterKey")), label
        if size == (80, 24):
            assert app.screen.query_one(WrappingFooter).rows_shown >= 2                      # Fine-tuning's keys need more than a row


async def test_digits_typed_in_the_context_field_stay_in_it_and_esc_gives_them_back_to_the_app(ws) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_phase(pilot, 3)
        context = screen.query_one("#mem-context", Input)
        context.focus()
        await pilot.press("end", *["backspace"] * 8, "5", "6")
        assert context.value == "56" and app.screen is screen     # typed, not phase 5 then 6
        await pilot.press("escape")
        assert not isinstance(screen.focused, Input)
        await pilot.press("5")
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "phase-5", what="5 opens phase 5")


async def test_compare_goes_back_with_esc_and_shows_the_back_key(ws) -> None:
    two_runs(ws)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_phase(pilot, 4)
        await pilot.press("C")
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "compare", what="compare")
        compare = app.screen
        await wait_for(pilot, lambda: any(key.description == "Back" and key.key == "escape"
                                          for key in compare.query("FooterKey")), what="esc Back in the footer")
        compare.query_one("#run-a").focus()                       # Esc first leaves the picker…
        await pilot.press("escape")
        assert app.screen is compare and compare.focused is not compare.query_one("#run-a")
        await pilot.press("escape")                               # …then goes back where we came from
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "phase-4", what="back to phase 4")


async def test_a_run_arriving_above_keeps_the_cursor_and_the_pick_on_the_same_run_and_baseline_reads_as_a_word(
        ws) -> None:
    baseline, lora = two_runs(ws)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_phase(pilot, 4)
        table = screen.runs
        await wait_for(pilot, lambda: table.row_count == 2, what="two runs")
        table.focus()
        assert table.selected_key == lora.id                        # newest first
        make_run(ws, "20240103-000000-canary-cccc", [case("c1", "x", False)], name="canary",
                 created=time.time() + 10)
        await wait_for(pilot, lambda: table.row_count == 3, what="the canary run listed")
        assert table.cursor_row == 1 and table.selected_key == lora.id   # the rows moved, the cursor did too
        await pilot.press("space")
        assert table.marked == [lora.id]
        await pilot.press("b")
        await wait_for(pilot, lambda: next(r for r in list_runs(ws, "task") if r.id == lora.id).baseline,
                       what="the picked run is the baseline")
        await wait_for(pilot, lambda: table.row_text(lora.id).startswith("[A]  baseline · lora"),
                       what="pick and baseline told apart")
        # The other baseline (another adapter) is named as one, and its pick cell stays empty.
        assert table.get_row(baseline.id)[0].plain == ""
        assert table.row_text(baseline.id).lstrip().startswith("baseline · basel")
