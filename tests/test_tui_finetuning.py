"""The Fine-tune screen following a real `train` job on the tiny model: a TUI opened mid-run
replays the whole history; x stops the run (SIGTERM: a checkpoint), u resumes it and the chart
keeps the steps of the first job; the best checkpoint is marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.jobs import read_status, start_job
from test_tui import notifications, started, wait_for
from tests.test_training import checkpoint_at_least, make_workspace, params_for
from tests.test_training import wait_for as wait_for_event
from tui.app import WeightgateApp

SIZE = (130, 50)


async def open_finetuning(app, pilot):
    await started(pilot)
    await pilot.press("5")
    await wait_for(pilot, lambda: app.screen.TARGET == "phase-5", what="phase 5")
    return app.screen


@pytest.mark.timeout(300)
async def test_restarted_tui_replays_the_run_stop_and_resume(tmp_path: Path, tiny_model_dir: Path) -> None:
    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    job = start_job(ws.jobs_dir, "train", params_for(split, 24, throttle_s=0.25), workspace=ws.root)

    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_finetuning(app, pilot)
        panel = screen.panel
        await wait_for(pilot, lambda: len(panel.history.train) >= 3, timeout=90, what="three steps live")
        assert panel.job_id == job.job_id
    # The TUI is gone (a dropped SSH session); the run goes on.
    wait_for_event(job.job_dir, checkpoint_at_least(6))
    assert read_status(job.job_dir).state == "running"

    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_finetuning(app, pilot)
        panel = screen.panel
        await wait_for(pilot, lambda: len(panel.history.train) >= 6, timeout=30, what="replayed history")
        assert min(panel.history.train) == 1                     # every step from the first, not just new ones
        assert panel.history.val and panel.history.checkpoint_rows()
        chart = str(panel.query_one("#train-chart").render())
        assert "step 1" in chart and "◆" in chart
        stats = str(panel.query_one("#train-stats").render())
        assert "running" in stats and "/24" in stats and "tok/s" in stats

        await pilot.press("x")                                   # SIGTERM: the run saves a checkpoint
        await wait_for(pilot, lambda: read_status(job.job_dir).state == "cancelled", timeout=60, what="stopped")
        stopped_at = max(panel.history.train)
        await wait_for(pilot, lambda: screen.active_bindings["u"].enabled, timeout=15, what="resume enabled")
        await pilot.press("u")
        await wait_for(pilot, lambda: panel.job_id not in (None, job.job_id), timeout=30, what="the resumed job")
        await wait_for(pilot, lambda: max(panel.history.train, default=0) == 24, timeout=150, what="run finished")
        assert min(panel.history.train) == 1 and stopped_at < 24   # the first job's steps are still there
        await wait_for(pilot, lambda: "finished" in str(panel.query_one("#train-stats").render()).lower(),
                       timeout=30, what="result shown")     # the journal is read to its end
        rows = panel.history.checkpoint_rows()
        assert sum(best for _, _, best in rows) == 1
        best = next(step for step, _, is_best in rows if is_best)
        assert panel.history.val[best] == min(panel.history.val.values())
        assert "★" in str(panel.query_one("#train-ckpts").render())


async def test_start_without_training_data_names_the_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    ws, _ = make_workspace(tmp_path / "ws", tiny_model_dir)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_finetuning(app, pilot)
        assert "No training run yet" in str(screen.panel.query_one("#train-stats").render())
        await pilot.press("s")
        await wait_for(pilot, lambda: any("Cannot start training" in n for n in notifications(app)),
                       timeout=30, what="error notification")
        assert any("train.jsonl" in n for n in notifications(app)), notifications(app)
