"""The Evaluation screen's runs on the tiny model: real runs listed newest first with the
baseline marked, e starts a real eval job whose row shows live and becomes a run, b moves the
baseline, space + c open the picked pair in Compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import tiny_workspace
from pilot import notifications, row_keys, started, wait_for

from weightgate.core.evaluation.runner import run_eval
from weightgate.core.evaluation.runs import list_runs
from weightgate.tui.app import WeightgateApp

SIZE = (130, 46)


@pytest.fixture
def ws(tmp_path: Path, tiny_model_dir: Path):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    run_eval(ws, "task", device="cpu")                      # the first full run: the baseline
    general = ws.evals_dir / "general.jsonl"
    general.write_text("".join(json.dumps({"id": f"g{n}", "input": f"{n} + 1 =", "expected": str(n + 1),
                                           "scorer": "exact"}) + "\n" for n in range(6)))
    run_eval(ws, "general", device="cpu")
    return ws


async def test_runs_live_eval_baseline_and_compare(ws) -> None:
    first = list_runs(ws, "task")[0]
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-4", what="phase 4")
        screen = app.screen
        table = screen.runs
        await wait_for(pilot, lambda: table.row_count == 2, what="two runs")
        assert table.row_text(first.id).lstrip().startswith("baseline · ")

        table.focus()
        assert app.report.phase(4).locked                          # this workspace walks no phase 2 or 3
        # Another batch size, another run identity: `e` generates (the same identity would reuse run 1).
        ws.update_config(lambda doc: doc.setdefault("settings", {}).__setitem__("eval_batch_size", 4))
        await pilot.press("e")                                     # a real eval job, this screen stays
        await wait_for(pilot, lambda: any("phase 4 is locked by" in n and n.endswith(
            "this eval job is recorded, the gate stays closed") for n in notifications(app)), what="locked note")
        await wait_for(pilot, lambda: len(list_runs(ws, "task")) == 2, timeout=120, what="second task run")
        assert app.screen is screen
        second = list_runs(ws, "task")[0]
        # The run is listed from its start; only a complete run can become the baseline.
        await wait_for(pilot, lambda: list_runs(ws, "task")[0].status == "complete", timeout=120,
                       what="second task run complete")
        await wait_for(pilot, lambda: second.id in row_keys(table), timeout=20, what="new run listed")

        table.move_cursor(row=row_keys(table).index(second.id))
        await pilot.press("b")
        await wait_for(pilot, lambda: next(r for r in list_runs(ws, "task") if r.id == second.id).baseline,
                       what="baseline moved")
        assert not next(r for r in list_runs(ws, "task") if r.id == first.id).baseline

        await pilot.press("space")
        table.move_cursor(row=row_keys(table).index(first.id))
        await pilot.press("space")
        assert table.marked == [second.id, first.id]
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.id == "compare" or type(app.screen).__name__ == "CompareScreen",
                       what="compare screen")
        compare = app.screen
        await wait_for(pilot, lambda: compare.pair == (second.id, first.id), what="the picked pair")


@pytest.mark.slow
async def test_a_running_eval_job_shows_cases_done_and_eta_live(ws) -> None:
    from weightgate.core.engine.jobs import start_job

    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-4", what="phase 4")
        table = app.screen.runs
        handle = start_job(ws.jobs_dir, "eval", {"set": "task", "batch_size": 1, "throttle_s": 0.4},
                           workspace=ws.root)
        key = f"job:{handle.job_id}"

        def live_text() -> str:
            return table.row_text(key) if key in row_keys(table) else ""
        await wait_for(pilot, lambda: "eval job" in live_text() and handle.job_id in live_text(), timeout=60,
                       what="the live row")
        await wait_for(pilot, lambda: "ETA" in live_text() and "/" in live_text(), timeout=60,
                       what="cases done and ETA")
        await wait_for(pilot, lambda: key not in row_keys(table) and handle.job_id not in live_text(),
                       timeout=120, what="the job's row turned into a run")
        assert list_runs(ws, "task")[0].status == "complete"


def test_a_running_eval_before_its_first_batch_says_what_it_is_doing_not_starting() -> None:
    """#17.5: cases are counted a batch at a time, so a running eval showed "starting" until its
    first (often only) batch ended; the row now says it is loading / on its first batch, and for how long."""
    import dataclasses
    import time as clock

    from weightgate.core.engine.jobs import JobStatus
    from weightgate.screens.evaluation.screen import first_batch_text

    fields = {f.name for f in dataclasses.fields(JobStatus)}
    base = {name: None for name in fields}
    base.update(job_id="j3", kind="eval", state="queued", created=clock.time() - 5)
    queued = JobStatus(**{k: v for k, v in base.items() if k in fields})
    assert first_batch_text(queued) == "queued"
    running = dataclasses.replace(queued, state="running", started=clock.time() - 35)
    text = first_batch_text(running)
    assert text.startswith("loading, first batch") and "35 s" in text and "starting" not in text
