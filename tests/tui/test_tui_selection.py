"""The Selection screen's Candidates panel, driven with Textual's Pilot on real workspaces.

Candidates with cached metadata come from tests.helpers.add_candidate (as `weightgate weights add`
leaves them); the add / choose / fetch flow goes through the UI's own keys and dialogs with a
tiny local model directory, so no network is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import add_candidate, fill_requirements, write_cases
from pilot import notifications, started, wait_for

from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.screens.selection.candidates import AddCandidateModal
from weightgate.tui.app import WeightgateApp
from weightgate.tui.widgets.help import HelpScreen
from weightgate.tui.widgets.modals import NoteModal

SIZE = (120, 40)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


def fill_phase_one_requirements(ws: Workspace) -> None:
    """Every requirement item passes (the screen then opens on the Candidates tab)."""
    fill_requirements(ws)
    write_cases(ws.evals_dir / "task.jsonl", 24)


def type_into(app, selector: str, text: str) -> None:
    from textual.widgets import Input

    app.screen.query_one(selector, Input).value = text


async def open_selection(pilot):
    app = await started(pilot)
    await pilot.press("1")
    await wait_for(pilot, lambda: app.screen.TARGET == "phase-1", what="phase 1")
    return app.screen


async def test_candidates_are_listed_smallest_first_with_the_order_warning(ws: Workspace) -> None:
    fill_phase_one_requirements(ws)
    add_candidate(ws, "org/mid-1.7b", 1_711_000_000, licence="apache-2.0")
    add_candidate(ws, "org/small-135m", 134_515_008, licence="mit")
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_selection(pilot)
        panel = screen.panel
        await wait_for(pilot, lambda: panel.table.row_count == 2, what="two candidates")
        table = panel.table
        assert [table.coordinate_to_cell_key((row, 0)).row_key.value for row in range(2)] == [
            "org/small-135m", "org/mid-1.7b"]
        small, mid = table.row_text("org/small-135m"), table.row_text("org/mid-1.7b")
        assert "135M" in small and "<1B" in small and "0.25" in small and "mit" in small
        assert "1.7B" in mid and "1-3B" in mid and "3.19" in mid and "apache-2.0" in mid
        # weightgate.toml lists the bigger one first: the warning says so, naming both.
        warnings = panel.warnings_text
        assert "not smallest first: it lists org/mid-1.7b (1.7B) before org/small-135m (135M)" in warnings
        assert "reorder [[candidates]]" in warnings
        assert panel.query_one("#candidates-warnings").display
        assert "without a smaller one" not in warnings
        # Requirements all pass, so the screen opened on the Candidates tab, whose label warns.
        assert screen.tabs.active == "tab-candidates"
        assert "Candidates (2) ⚠" in str(screen.tabs.get_tab("tab-candidates").label)
        # The checklist agrees.
        await wait_for(pilot, lambda: app.report.item("select.shortlist").status == "fail")


async def test_a_large_candidate_alone_is_warned_about(ws: Workspace) -> None:
    add_candidate(ws, "org/big-8b", 8_030_261_248, licence="llama3.1")
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_selection(pilot)
        panel = screen.panel
        await wait_for(pilot, lambda: panel.table.row_count == 1, what="the candidate")
        assert "8B" in panel.table.row_text("org/big-8b")
        assert "a large model (org/big-8b, 8B) is shortlisted without a smaller one" in panel.warnings_text
        assert "smallest first" not in panel.warnings_text.replace("add the smallest plausible model first", "")
        # Requirements are not filled in yet: the screen opened on them; s switches.
        assert screen.tabs.active == "tab-requirements"
        await pilot.press("s")
        assert screen.tabs.active == "tab-candidates"


async def test_missing_metadata_is_shown_and_i_reads_it(ws: Workspace, tiny_model_dir: Path) -> None:
    import tomlkit

    def change(doc):
        doc["candidates"] = tomlkit.aot()
        entry = tomlkit.table()
        entry["source"] = str(tiny_model_dir)
        doc["candidates"].append(entry)
    ws.update_config(change)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_selection(pilot)
        panel = screen.panel
        spec = str(tiny_model_dir)
        await wait_for(pilot, lambda: panel.table.row_count == 1, what="the candidate")
        assert "metadata missing — press i" in panel.table.row_text(spec)
        assert f"metadata missing for {spec}" in panel.warnings_text
        await pilot.press("i")
        await wait_for(pilot, lambda: "150K" in panel.table.row_text(spec), what="metadata read")
        assert "metadata missing" not in panel.table.row_text(spec)
        assert any("Metadata saved" in text and "150K parameters" in text for text in notifications(app))


@pytest.mark.slow
async def test_add_choose_and_fetch_a_local_model_through_the_ui(ws: Workspace, tiny_model_dir: Path) -> None:
    from weightgate.core.engine.lock import read_lock

    fill_phase_one_requirements(ws)
    add_candidate(ws, "org/big-8b", 8_030_261_248)  # a large one first: adding a small one clears it
    spec = str(tiny_model_dir)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_selection(pilot)
        panel = screen.panel
        await wait_for(pilot, lambda: "without a smaller one" in panel.warnings_text, what="large-only warning")

        # + opens the dialog; an empty source is refused by the dialog itself.
        await pilot.press("plus")
        await wait_for(pilot, lambda: isinstance(app.screen, AddCandidateModal), what="add dialog")
        await pilot.press("enter")
        assert isinstance(app.screen, AddCandidateModal)
        type_into(app, "#source", spec)            # a long path: set, not typed key by key
        await pilot.press("enter")                 # on to the note
        await pilot.press(*"tiny test model", "enter")
        await wait_for(pilot, lambda: app.screen is screen, what="dialog closed")
        await wait_for(pilot, lambda: spec in (panel.table._cells or {}), what="candidate listed")
        row = panel.table.row_text(spec)
        assert "150K" in row and "<1B" in row
        assert panel.table.data_of(spec).note == "tiny test model"  # shown after the source when it fits
        assert any("Candidate added" in text and "150K parameters" in text for text in notifications(app))
        # Smallest first: the new one leads the table and is selected; the large-only warning is gone.
        assert panel.table.coordinate_to_cell_key((0, 0)).row_key.value == spec
        await wait_for(pilot, lambda: panel.selected is not None and panel.selected.spec == spec)
        await wait_for(pilot, lambda: "without a smaller one" not in panel.warnings_text)

        # c asks for a reason and records the choice.
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteModal), what="choose dialog")
        await pilot.press(*"smallest that could do the task", "enter")
        await wait_for(pilot, lambda: app.screen is screen, what="dialog closed")
        await wait_for(pilot, lambda: (ws.config().get("decisions") or {}).get("model") == spec, what="choice")
        assert ws.config()["decisions"]["model_reason"] == "smallest that could do the task"
        await wait_for(pilot, lambda: "✓ chosen" in panel.table.row_text(spec), what="chosen mark")

        # f fetches it: a local directory is hashed and locked in a worker.
        await pilot.press("f")
        await wait_for(pilot, lambda: any("Model locked" in text for text in notifications(app)), what="locked")
        lock = read_lock(ws)
        assert lock is not None and lock.kind == "local"
        names = sorted(entry.path for entry in lock.files)
        assert "model.safetensors" in names and "config.json" in names

        # The Verification screen lists every locked file.
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-2")
        files = app.screen.panel.table
        await wait_for(pilot, lambda: files.row_count == len(names), what="files table")
        for name in names:
            assert "✓ computed locally" in files.row_text(name), files.row_text(name)


async def test_adding_a_bad_source_shows_the_error_and_its_hint(ws: Workspace, tmp_path: Path) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_selection(pilot)
        await pilot.press("insert")
        await wait_for(pilot, lambda: isinstance(app.screen, AddCandidateModal), what="add dialog")
        type_into(app, "#source", str(tmp_path / "no-such-model"))
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: any("Could not add" in text for text in notifications(app)), what="error")
        text = next(text for text in notifications(app) if "Could not add" in text)
        assert "no such file or directory" in text and "hint:" in text
        assert screen.panel.table.row_count == 0
        assert "candidates" not in ws.config()


async def test_help_lists_the_selection_keys(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_selection(pilot)
        assert screen.check_action("choose", ()) is None  # nothing to choose yet: dimmed
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = app.screen.plain
        for words in ("This screen", "+, insert", "Add", "Choose", "Fetch", "Inspect", "Candidates / requirements"):
            assert words in text, words


async def test_the_choose_dialog_shows_decisions_and_asks_for_a_reason(ws: Workspace) -> None:
    fill_phase_one_requirements(ws)
    add_candidate(ws, "org/small-1b", 1_000_000_000)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_selection(pilot)
        await wait_for(pilot, lambda: screen.panel.selected is not None, what="a selected candidate")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteModal), what="choose dialog")
        from textual.widgets import Static

        explain = str(app.screen.query_one(".explain", Static).render())
        # "[decisions]" is text, not a markup tag that vanished and left a double space.
        assert "recorded in weightgate.toml [decisions] with your reason" in explain and "  " not in explain
        await pilot.press("enter")                  # no reason given
        problem = str(app.screen.query_one("#problem", Static).render())
        assert problem == "Give the reason for this choice: it is recorded with it in weightgate.toml."
        assert "note" not in problem.lower()
