"""The command palette (ctrl+p) finds by name what help says it searches: checklist items,
every screen's keys, eval runs and jobs; choosing one opens where it lives. Driven with Pilot
through the real palette on a real workspace."""

from __future__ import annotations

from pathlib import Path

from compare_helpers import two_runs
from helpers import wait_terminal
from pilot import started, wait_for

from weightgate.core.engine.jobs import start_job
from weightgate.core.engine.workspace import init_workspace
from weightgate.tui.app import WeightgateApp


async def choose(pilot, query: str, expected: str) -> None:
    """Open the palette, type `query`, wait for a hit containing `expected`, pick it."""
    from textual.command import CommandList

    app = pilot.app
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette", what="the palette")
    palette = app.screen
    await pilot.press(*query)
    commands = palette.query_one(CommandList)

    def index_of_hit() -> int | None:
        for index, option in enumerate(commands.options):
            if expected in str(getattr(option.prompt, "plain", option.prompt)):
                return index
        return None
    index = await wait_for(pilot, lambda: (found := index_of_hit()) is not None and found + 1, what=expected) - 1
    commands.highlighted = index
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.screen is not palette, what="the palette closed")


async def test_palette_finds_items_keys_runs_and_jobs_by_name(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    baseline, newer = two_runs(ws)
    job = start_job(ws.jobs_dir, "selftest", {"seconds": 0.2, "interval": 0.1}, workspace=ws.root)
    wait_terminal(job.job_dir)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await wait_for(pilot, lambda: app.job_rows, what="the jobs list")

        await choose(pilot, "select.task", "select.task:")                 # an item: its phase, selected
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "phase-1", what="phase 1")
        await wait_for(pilot, lambda: app.screen.phase_view.table.selected_id == "select.task", what="the item")

        await choose(pilot, "smooth loss", "Smooth loss (m, Phase 5")      # another screen's key
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "phase-5", what="phase 5")
        await wait_for(pilot, lambda: app.screen.panel.smooth is False, what="smoothing (on by default) toggled off")

        await choose(pilot, "benchmark", "benchmark")                      # an item found by a word of its id
        assert getattr(app.screen, "TARGET", "").startswith("phase-")

        await choose(pilot, "lora v1", f"Run lora v1 ({newer.id})")        # a run: Evaluation, selected
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "phase-4", what="phase 4")
        await wait_for(pilot, lambda: app.screen.runs.selected_key == newer.id, what="the run selected")

        await choose(pilot, job.job_id[-8:], f"Job {job.job_id}")          # a job: followed on Jobs
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "jobs", what="jobs")
        await wait_for(pilot, lambda: app.screen.monitor.job_id == job.job_id, what="the job followed")
