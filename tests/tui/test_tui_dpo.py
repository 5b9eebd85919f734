"""The Fine-tune screen with [training] method = "dpo": `s` starts a real DPO job (TRL's
DPOTrainer on the tiny model) and the screen follows it live: the loss chart, the validation
points and the DPO margin and preference accuracy beside the loss; `x` stops it with a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_workspace
from pilot import started, wait_for
from preference_helpers import dpo_workspace

from weightgate.core.engine.jobs import read_status
from weightgate.core.training import runs
from weightgate.tui.app import WeightgateApp

SIZE = (130, 50)


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_the_fine_tune_screen_starts_and_charts_a_dpo_run_live(tmp_path: Path, tiny_model_dir: Path) -> None:
    ws = dpo_workspace(tiny_workspace(tmp_path / "ws", tiny_model_dir))
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("5")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-5", what="phase 5")
        screen = app.screen
        panel = screen.panel
        await pilot.press("s")
        await wait_for(pilot, lambda: panel.job_id is not None, timeout=60, what="the train job")
        await wait_for(pilot, lambda: len(panel.history.train) >= 4 and panel.history.val, timeout=150,
                       what="steps and a validation point live")
        stats = str(panel.query_one("#train-stats").render())
        assert "running" in stats and "margin" in stats and "pref acc" in stats, stats
        chart = str(panel.query_one("#train-chart").render())
        assert "step 1" in chart and "◆" in chart
        await pilot.press("x")                                   # SIGTERM: the Trainer saves a checkpoint
        job_dir = ws.jobs_dir / panel.job_id
        await wait_for(pilot, lambda: read_status(job_dir).is_terminal, timeout=90, what="stopped")
    assert read_status(job_dir).state == "cancelled"
    run = runs.list_runs(ws)[0]
    assert run["objective"] == "dpo" and run["status"] == "stopped"
