"""Running jobs from the TUI's side: the Jobs screen re-opened after a job started elsewhere follows
the running job, not the finished one it showed before; quitting with a job running says it keeps
running detached and how to re-attach. Real selftest jobs (separate processes, a few seconds each)."""

from __future__ import annotations

from pathlib import Path

from helpers import wait_terminal
from pilot import started, wait_for

from weightgate.core.engine.jobs import cancel_job, start_job
from weightgate.core.engine.workspace import init_workspace
from weightgate.tui.app import WeightgateApp


async def test_jobs_screen_reopens_on_the_running_job_not_the_old_selection(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    finished = start_job(ws.jobs_dir, "selftest", {"seconds": 0.3, "interval": 0.1}, workspace=ws.root)
    wait_terminal(finished.job_dir)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("j")
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "jobs", what="jobs")
        jobs = app.screen
        await wait_for(pilot, lambda: jobs.monitor.job_id == finished.job_id, what="the finished job followed")
        await pilot.press("o")
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "overview", what="overview")
        running = start_job(ws.jobs_dir, "selftest", {"seconds": 30, "interval": 0.2}, workspace=ws.root)
        try:
            await wait_for(pilot, lambda: any(row.job_id == running.job_id and not row.status.is_terminal
                                              for row in app.job_rows or []), what="the new job listed")
            await pilot.press("j")
            await wait_for(pilot, lambda: jobs.monitor.job_id == running.job_id, what="the running job followed")
            assert jobs.table.selected_id == running.job_id
        finally:
            cancel_job(running.job_dir)


async def test_quitting_with_a_job_running_says_it_keeps_running_and_how_to_reattach(tmp_path: Path) -> None:
    from weightgate.tui.widgets.quit_note import QuitWithJobsModal

    ws = init_workspace(tmp_path / "ws")
    running = start_job(ws.jobs_dir, "selftest", {"seconds": 30, "interval": 0.2}, workspace=ws.root)
    try:
        app = WeightgateApp(ws.root)
        async with app.run_test(size=(120, 40)) as pilot:
            await started(pilot)
            await wait_for(pilot, lambda: app.job_rows, what="the jobs list")
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, QuitWithJobsModal), what="the quit note")
            question = str(app.screen.question)
            assert f"selftest {running.job_id}" in question and "running detached" in question
            assert f"weightgate attach {running.job_id}" in question
            await pilot.press("n")                                    # stay
            await wait_for(pilot, lambda: not isinstance(app.screen, QuitWithJobsModal), what="stayed")
            await pilot.press("q", "q")                               # q twice: quit, leave it running
            await wait_for(pilot, lambda: app.exit_note, what="quit")
        assert "running detached" in app.exit_note and "weightgate attach" in app.exit_note
    finally:
        cancel_job(running.job_dir)


async def test_quitting_with_no_job_running_asks_nothing(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    app = WeightgateApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, what="exited")
    assert app.exit_note == ""
