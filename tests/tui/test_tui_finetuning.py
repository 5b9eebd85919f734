"""The Fine-tune screen following a real `train` job on the tiny model: a TUI opened mid-run
replays the whole history; x stops the run (SIGTERM: a checkpoint), u resumes it and the chart
keeps the steps of the first job; the best checkpoint is marked."""

from __future__ import annotations

from pathlib import Path

import pytest
from pilot import notifications, started, wait_for
from training_helpers import checkpoint_at_least, make_workspace, params_for
from training_helpers import wait_for as wait_for_event

from weightgate.core.engine.jobs import read_status, start_job
from weightgate.tui.app import WeightgateApp

SIZE = (130, 50)


async def open_finetuning(app, pilot):
    await started(pilot)
    await pilot.press("5")
    await wait_for(pilot, lambda: app.screen.TARGET == "phase-5", what="phase 5")
    return app.screen


@pytest.mark.timeout(300)
@pytest.mark.slow
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
        await wait_for(pilot, lambda: read_status(job.job_dir).state == "cancelled", timeout=150, what="stopped")
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


def short_answers(path: Path) -> None:
    """Prefix an eval set with max_new_tokens 6: the gate's four eval runs take seconds."""
    import json

    path.write_text(json.dumps({"_set": {"max_new_tokens": 6}}) + "\n" + path.read_text())


@pytest.mark.timeout(300)
async def test_gate_keys_open_the_gates_comparisons_in_compare(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A real gate on the tiny model: a 2-step adapter, the base baseline, run_gate's report. On
    the Fine-tune screen c opens the task pair and v the general pair (base run as A, the
    adapter's gate run as B) in the Compare screen."""
    from helpers import write_cases

    from weightgate.core.evaluation.runner import run_eval
    from weightgate.core.training.keep_or_reject import run_gate
    from weightgate.core.training.session import execute, prepare_run

    ws, split = make_workspace(tmp_path / "ws", tiny_model_dir)
    write_cases(ws.evals_dir / "general.jsonl", 20, tags=("general",))
    for name in ("task", "general"):
        short_answers(ws.evals_dir / f"{name}.jsonl")
    directory = prepare_run(ws, params_for(split, 2))
    assert execute(ws.root, directory).status == "finished"
    assert run_eval(ws, "task", device="cpu")["baseline"] is not None
    outcome = run_gate(ws, directory.name, device="cpu")
    task_pair = (outcome["task"]["base_run"], outcome["task"]["adapter_run"])
    general_pair = (outcome["general"]["base_run"], outcome["general"]["adapter_run"])
    assert len(set(task_pair + general_pair)) == 4

    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_finetuning(app, pilot)
        await wait_for(pilot, lambda: screen.active_bindings["c"].enabled and screen.active_bindings["v"].enabled,
                       timeout=30, what="gate keys enabled")
        line = str(screen.query_one("#gate-compare").render())
        assert f"base run {task_pair[0]} vs adapter run {task_pair[1]}" in line and "c opens it in Compare" in line
        assert f"base run {general_pair[0]} vs adapter run {general_pair[1]}" in line
        assert ("kept" if outcome["kept"] else "rejected") in line

        await pilot.press("c")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen", what="compare screen")
        compare = app.screen
        await wait_for(pilot, lambda: compare.pair == task_pair and compare.comparison is not None
                       and (compare.comparison.run_a.id, compare.comparison.run_b.id) == task_pair,
                       timeout=30, what="the gate's task pair compared")
        assert app.compare_request is None                     # consumed by the Compare screen

        await pilot.press("5")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-5", what="back on phase 5")
        await pilot.press("v")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen", what="compare screen again")
        await wait_for(pilot, lambda: app.screen.pair == general_pair and app.screen.comparison is not None
                       and (app.screen.comparison.run_a.id, app.screen.comparison.run_b.id) == general_pair,
                       timeout=30, what="the gate's general pair compared")


async def test_data_report_modal_lists_every_finding_without_the_pii(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The crafted bad dataset of tests/test_data_check.py, checked for real: i shows every
    duplicate pair, leak (with its eval case), over-long example, PII finding (kind, line and the
    masked sample only), the tag balance and the split; escape closes it."""
    from training_helpers import crafted_lines

    from weightgate.core.demo.workspace import create_demo_workspace
    from weightgate.core.training.data.prepare import check_dataset, save_latest_report
    from weightgate.screens.finetuning.screen import DataReportModal

    ws, _ = create_demo_workspace(tmp_path / "ws")
    lines, where = crafted_lines()
    (ws.root / "data" / "train.jsonl").write_text("\n".join(lines) + "\n")
    report = check_dataset(ws, tokenizer_dir=tiny_model_dir)
    data = report.to_dict()

    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_finetuning(app, pilot)
        await pilot.press("i")                                   # no report yet: says what to do
        await wait_for(pilot, lambda: any("No data check yet" in n for n in notifications(app)), what="no report")
        save_latest_report(ws, report, None)
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, DataReportModal), what="the data report")
        modal = app.screen
        text = str(modal.query_one("#data-report-body").render())
        assert text == modal.plain
        assert "blocking:" in text and "over-long" in text
        # Duplicates: each pair with both lines and ids; the near one with its similarity.
        for group in data["exact_duplicates"]:
            for row in group["removed"]:
                assert f"line {row['line']} ({row['id']}) = line {group['kept']['line']} ({group['kept']['id']})" in text
        assert any(row["line"] == where["exact_dup"] for g in data["exact_duplicates"] for row in g["removed"])
        for pair in data["near_duplicates"]:
            assert (f"line {pair['b']['line']} ({pair['b']['id']}) ~ line {pair['a']['line']} ({pair['a']['id']})"
                    f"  similarity {pair['similarity']:.2f}") in text
        assert any(p["b"]["line"] == where["near_dup"] for p in data["near_duplicates"])
        # Leaks: the example, the eval set and case it matches.
        for leak in data["leakage"]:
            assert f"line {leak['line']} ({leak['id']}) matches {leak['set']} case {leak['case']}" in text
        assert {where["leak_task"], where["leak_general"]} <= {leak["line"] for leak in data["leakage"]}
        assert "matches task case date-002" in text
        # Over-long: line, id, tokens against the context.
        row = next(r for r in data["over_long"] if r["line"] == where["over_long"])
        assert f"line {row['line']} ({row['id']}): {row['tokens']} tokens > {data['max_tokens']}" in text
        # PII: counts by kind, each finding's line with the masked sample, never the text itself.
        assert "by kind: " + ", ".join(f"{k} {n}" for k, n in data["pii"]["counts"].items() if n) in text
        for finding in data["pii"]["findings"]:
            assert f"line {finding['line']} ({finding['id']}): {finding['kind']} {finding['sample']}" in text
        for secret in ("ana.lopez@example.org", "7946 0958", "4111 1111 1111 1111", "DE89 3704", "10.20.30.40",
                       "2001:db8::ff00", "123-45-6789"):
            assert secret not in text, secret
        # Tag balance and the split.
        assert "Tag balance  skewed" in text and f"common {data['tags']['counts']['common']}" in text
        assert f"{data['split']['train']} train / {data['split']['val']} validation" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="modal closed")
