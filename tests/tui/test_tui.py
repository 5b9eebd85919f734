"""The TUI, driven headless with Textual's Pilot on real workspaces (core.engine.workspace.init_workspace).

Gates are moved the way a user moves them: by editing weightgate.toml and evals/task.jsonl with
plain file writes, and through the UI's own attest / waive keys. Items whose deciding jobs are
not built yet (shortlist, benchmark, choice) get the evidence record such a job would append.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pilot import evidence_records, notifications, started, wait_for

from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.tui.app import WeightgateApp
from weightgate.tui.widgets.base_screen import PhaseScreen
from weightgate.tui.widgets.error_banner import WorkspaceErrorBanner
from weightgate.tui.widgets.help import HelpScreen
from weightgate.tui.widgets.modals import NoteModal
from weightgate.tui.widgets.phase_view import GateBanner

ROOT = Path(__file__).resolve().parents[2]
SIZE = (120, 40)

REQUIREMENTS = """\
[requirements]
task = "Rewrite dates in free text as ISO 8601 YYYY-MM-DD, nothing else in the output"
metric = "exact_match"
quality_threshold = 0.9

[requirements.ceilings]
p95_latency_ms = 800
min_tokens_per_s = 20
memory_budget_gib = 8
cost_per_1k_tasks = 0.5

[requirements.deployment]
hosting = "self-hosted"
location = "on-prem"
data_residency = "EU only"

[requirements.intended_use]
commercial = true
distribution = false

[settings]
eval_set = "evals/task.jsonl"
general_set = "evals/general.jsonl"
headroom = 0.3
"""


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


def fill_requirements(ws: Workspace) -> None:
    ws.config_path.write_text(REQUIREMENTS, encoding="utf-8")


def write_cases(ws: Workspace, count: int = 20) -> None:
    lines = []
    for n in range(count):
        tags = ["hard"] if n % 5 == 0 else ["edge"] if n % 7 == 0 else ["easy"]
        lines.append(json.dumps({"id": f"date-{n:03d}", "input": f"Rewrite as YYYY-MM-DD: March {n + 1}, 2021",
                                 "expected": f"2021-03-{n + 1:02d}", "scorer": "exact", "tags": tags}))
    (ws.evals_dir / "task.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def pass_phase_one(ws: Workspace) -> None:
    """Everything phase 1 needs: requirements, 20 cases, a shortlisted and chosen candidate,
    and the benchmark records its jobs leave."""
    from helpers import add_candidate, choose, record_benchmark

    from weightgate.core.engine.evidence import attest, record_result

    fill_requirements(ws)
    write_cases(ws, 20)
    add_candidate(ws, "org/small-model", 135_000_000)
    choose(ws, "org/small-model")
    record_benchmark(ws, "org/small-model")
    record_result(ws, "select.benchmark", "pass", {"by": "test"})
    attest(ws, "select.training_quality", "read the model card's training-data section")
    attest(ws, "select.domain_fit", "general instruct model; dates are general text")


# --- navigation and gates ---------------------------------------------------------------------


async def test_navigation_with_keys(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert app.screen.TARGET == "overview"
        for key, target in (("2", "phase-2"), ("6", "phase-6"), ("1", "phase-1"), ("o", "overview"),
                            ("j", "jobs"), ("4", "phase-4"), ("p", "phase-3"), ("ctrl+left", "phase-2")):
            await pilot.press(key)
            await wait_for(pilot, lambda: app.screen.TARGET == target, what=f"{key} -> {target}")
        # Every screen carries the sidebar with every phase's state in words.
        sidebar = app.screen.query_one("PhaseSidebar")
        text = sidebar.text()
        assert "1 Selection" in text and "6 Deployment" in text
        assert "open" in text and "locked" in text
        # Header: live device memory (no GPU here: host RAM and "no GPU").
        header = app.screen.query_one("AppHeader")
        await wait_for(pilot, lambda: "RAM" in header.meter_text, what="device meter")
        assert "no GPU" in header.meter_text


async def test_sidebar_navigates_with_enter(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("shift+tab")
        sidebar = app.screen.query_one("PhaseSidebar")
        await wait_for(pilot, lambda: app.focused is sidebar, what="sidebar focused")
        assert sidebar.highlighted_option.id == "overview"
        for _ in range(3):  # overview -> phase 1 -> 2 -> 3
            await pilot.press("down")
        assert sidebar.highlighted_option.id == "phase-3"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-3", what="sidebar -> phase 3")
        assert app.screen.query_one("PhaseSidebar").highlighted_option.id == "phase-3"


async def test_phase_screens_add_panels_selection_shows_requirements(ws: Workspace) -> None:
    from weightgate.tui.widgets.facts import FactsPanel

    fill_requirements(ws)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("1")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-1")
        panel = app.screen.query_one("#requirements", FactsPanel)
        await wait_for(pilot, lambda: "exact_match >= 0.9" in panel.plain, what="requirements panel")
        assert "Rewrite dates in free text as ISO 8601" in panel.plain
        assert "self-hosted, on-prem" in panel.plain
        assert "fail: 1 case in evals/task.jsonl" in panel.plain  # the template's single example
        await pilot.press("4")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-4")
        eval_sets = app.screen.query_one("#eval-sets", FactsPanel)
        await wait_for(pilot, lambda: "general set" in eval_sets.plain and "todo" in eval_sets.plain)


async def test_locked_phase_says_which_items_hold_it(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-2")
        banner = app.screen.query_one(GateBanner)
        await wait_for(pilot, lambda: "Locked" in banner.plain, what="locked banner")
        held = [status.item.id for status in app.report.phase(2).held_by]
        assert "select.task" in held
        for item_id in held[:10]:
            assert item_id in banner.plain
        assert "select.task (todo)" in banner.plain
        # The locked screen still lists its own items and what each needs.
        table = app.screen.phase_view.table
        assert table.row_count == len(app.report.phase(2).items)
        assert "weightgate weights fetch / weightgate weights verify" in app.screen.phase_view.detail.plain


async def test_next_phase_toward_a_locked_phase_opens_it_like_its_digit_and_says_what_locks_it(
        ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("1")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-1")
        assert app.report.phase(2).locked
        assert app.screen.active_bindings["n"].enabled is True    # not a dead key
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-2", what="n -> locked phase 2")
        held = app.report.phase(2).held_by[0].item.id
        await wait_for(pilot, lambda: any(n.startswith("Phase 2 is locked: Its gate opens when phase 1 passes")
                                          and held in n for n in notifications(app)), what="why it is locked")

        pass_phase_one(ws)
        app.refresh_report()
        await wait_for(pilot, lambda: app.report.phase(1).state == "passed", what="phase 1 passed")
        await pilot.press("1")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-1")
        shown = len(notifications(app))
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-2", what="n -> phase 2")
        assert not any("is locked" in n for n in notifications(app)[shown:])   # an open phase needs no note
        assert "passed" in app.screen.query_one("PhaseSidebar").text()


# --- evidence from the UI ---------------------------------------------------------------------


async def test_attest_from_the_ui(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        screen = app.screen
        assert isinstance(screen, PhaseScreen)
        await wait_for(pilot, lambda: screen.select_item("select.domain_fit"), what="domain_fit row")
        await pilot.pause()
        assert screen.selected.item.id == "select.domain_fit"
        assert screen.selected.status == "todo"
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteModal), what="attest dialog")
        await pilot.press("enter")  # empty: refused by the dialog itself
        assert isinstance(app.screen, NoteModal)
        await pilot.press(*"checked the model card: general web text")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen, what="dialog closed")
        await wait_for(pilot, lambda: app.report.item("select.domain_fit").status == "pass",
                       what="domain_fit passes")
        records = [r for r in evidence_records(ws) if r["item"] == "select.domain_fit"]
        assert records and records[-1]["kind"] == "attest" and records[-1]["status"] == "pass"
        assert records[-1]["note"] == "checked the model card: general web text"
        # The table and the detail pane show it.
        await wait_for(pilot, lambda: "attested by" in screen.phase_view.detail.plain, what="detail refresh")
        assert "✓ pass" in screen.phase_view.detail.plain

        # Revoke it again from the UI.
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteModal), what="revoke dialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.report.item("select.domain_fit").status == "todo", what="revoked")


async def test_attest_on_an_auto_item_explains_instead(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        screen = app.screen
        await wait_for(pilot, lambda: screen.select_item("select.task"))
        await pilot.press("a")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, NoteModal)
        assert any("decided automatically" in text for text in notifications(app))


async def test_waive_of_a_critical_item_is_refused_with_the_hint(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        screen = app.screen
        await wait_for(pilot, lambda: screen.select_item("select.task"))
        await pilot.press("w")
        await wait_for(pilot, lambda: any("cannot be waived" in t for t in notifications(app)),
                       what="refusal notification")
        text = next(t for t in notifications(app) if "cannot be waived" in t)
        assert "select.task is critical" in text
        assert "hint: critical items must pass" in text
        assert not any(r["kind"] == "waive" for r in evidence_records(ws))

        # A recommended item can be waived with a reason.
        await wait_for(pilot, lambda: screen.select_item("select.training_quality"))
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, NoteModal))
        await pilot.press(*"single candidate from a vendor we audit")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.report.item("select.training_quality").status == "waived")


# --- jobs -------------------------------------------------------------------------------------


async def test_job_started_outside_shows_live_progress_and_replays(ws: Workspace) -> None:
    from weightgate.core.engine.jobs import start_job

    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("j")
        await wait_for(pilot, lambda: app.screen.TARGET == "jobs")
        screen = app.screen
        began = time.monotonic()
        handle = start_job(ws.jobs_dir, "selftest", {"seconds": 2, "interval": 0.1}, workspace=ws.root)
        await wait_for(pilot, lambda: handle.job_id in screen.table.rows_by_id, timeout=10, what="job listed")
        listed_after = time.monotonic() - began
        assert listed_after < 6  # polled every second; generous for a loaded CI machine
        monitor = screen.monitor
        await wait_for(pilot, lambda: monitor.job_id == handle.job_id, what="monitor attached")
        # Live: progress and metrics arrive while the job runs.
        await wait_for(pilot, lambda: monitor.progress is not None and monitor.metrics, timeout=20,
                       what="progress events")
        assert monitor.progress.total == 20
        assert "loss" in monitor.metrics
        await wait_for(pilot, lambda: monitor.ended == "succeeded", timeout=30, what="job result")
        await wait_for(pilot, lambda: "succeeded" in monitor.state_text, what="final state shown")
        assert monitor.progress.done == 20
        assert any("result" in line and "succeeded" in line for line in monitor.log_lines)
        total_events = monitor.event_count
        assert total_events >= 42  # log + 20 x (metric + progress) + result

        # Re-opening the panel replays the whole journal.
        await pilot.press("o")
        await wait_for(pilot, lambda: app.screen.TARGET == "overview")
        await pilot.press("j")
        await wait_for(pilot, lambda: app.screen.TARGET == "jobs")
        await wait_for(pilot, lambda: monitor.event_count == total_events and monitor.ended == "succeeded",
                       what="replay")
        assert any(line.endswith("selftest: 20 steps of 0.1 s") for line in monitor.log_lines)


async def test_start_and_cancel_a_selftest_from_the_ui(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("j")
        await wait_for(pilot, lambda: app.screen.TARGET == "jobs")
        screen = app.screen
        assert screen.check_action("cancel_job", ()) is None  # nothing to cancel yet
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.monitor.job_id is not None and screen.monitor.progress is not None,
                       timeout=20, what="selftest running")
        job_id = screen.monitor.job_id
        assert screen.table.selected_id == job_id
        assert screen.check_action("cancel_job", ()) is True
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen is not screen, what="confirm dialog")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.monitor.ended == "cancelled", timeout=30, what="cancelled")
        assert any("checkpoint saved" in line for line in screen.monitor.log_lines)


# --- errors -----------------------------------------------------------------------------------


async def test_bad_weightgate_toml_is_shown_with_line_and_column(ws: Workspace) -> None:
    ws.config_path.write_text('[requirements]\ntask = "dates"\nmetric = accuracy\n', encoding="utf-8")
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        error = app.workspace_error
        assert error is not None and error.line == 3 and error.column is not None
        banner = app.screen.query_one(WorkspaceErrorBanner)
        await wait_for(pilot, lambda: banner.display and banner.plain, what="error banner")
        assert f"weightgate.toml:3:{error.column}" in banner.plain
        assert "invalid TOML" in banner.plain
        assert "hint:" in banner.plain
        # Every screen shows it, and the UI keeps working.
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-2")
        assert "weightgate.toml:3:" in app.screen.query_one(WorkspaceErrorBanner).plain
        # Fixing the file clears it on the next read.
        fill_requirements(ws)
        app.refresh_report()
        await wait_for(pilot, lambda: app.workspace_error is None and app.report is not None, what="recovery")
        assert not app.screen.query_one(WorkspaceErrorBanner).display


async def test_no_workspace_is_explained_not_a_crash(tmp_path: Path) -> None:
    app = WeightgateApp(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        banner = app.screen.query_one(WorkspaceErrorBanner)
        await wait_for(pilot, lambda: "no weightgate.toml" in banner.plain)
        assert "weightgate init" in banner.plain
        await pilot.press("j")
        await pilot.press("s")  # no workspace: a notification, not a crash
        await wait_for(pilot, lambda: any("No workspace" in t for t in notifications(app)))


# --- help, palette, theme ---------------------------------------------------------------------


async def test_help_lists_keys_per_screen(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = app.screen.plain
        for words in ("Everywhere", "1-6", "Next phase", "Attest", "Waive", "Revoke", "Jobs (j)",
                      "Start selftest", "Cancel job", "Theme", "ctrl+p"):
            assert words in text, words
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_command_palette_goes_to_a_phase(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette")
        await pilot.press(*"phase 3")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-3", what="palette -> phase 3")


async def test_palette_provider_offers_every_command(ws: Workspace) -> None:
    from weightgate.tui.widgets.commands import WeightgateCommands

    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await wait_for(pilot, lambda: app.screen.select_item("select.domain_fit"))
        names = [command.name for command in WeightgateCommands(app.screen).commands()]
        for expected in ("Go to overview", "Go to phase 1: Selection", "Go to phase 6: Deployment", "Jobs",
                         "Attest selected item", "Waive selected item", "Start selftest job",
                         "Toggle dark / light theme"):
            assert expected in names


async def test_theme_toggles_in_memory(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert app.theme == "weightgate-dark"
        before = ws.config_path.read_text()
        await pilot.press("t")
        assert app.theme == "weightgate-light"
        await pilot.press("t")
        assert app.theme == "weightgate-dark"
        assert ws.config_path.read_text() == before


async def test_header_shows_each_gpu_with_utilization(ws: Workspace) -> None:
    from weightgate.core.memory.devices import DeviceSnapshot, GpuInfo, HostMemory

    gib = 1024**3
    app = WeightgateApp(ws.root)
    app._device_poller = type("FakePoller", (), {"poll": lambda self: DeviceSnapshot(
        gpus=[GpuInfo(0, "A100", memory_total=80 * gib, memory_used=12 * gib, utilization_gpu=45),
              GpuInfo(1, "A100", memory_total=80 * gib, memory_used=70 * gib, utilization_gpu=99)],
        host=HostMemory(total=64 * gib, used=8 * gib, available=56 * gib))})()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        header = app.screen.query_one("AppHeader")
        await wait_for(pilot, lambda: "GPU1" in header.meter_text, what="gpu meter")
        assert "GPU0" in header.meter_text and "12.0/80.0 GiB 45%" in header.meter_text
        assert "70.0/80.0 GiB 99%" in header.meter_text
        assert "no GPU" not in header.meter_text


# --- start-up ---------------------------------------------------------------------------------


