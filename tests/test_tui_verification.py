"""The Verification screen's lock panel, driven with Textual's Pilot on real workspaces.

The tiny model is copied per test (tests change its files) and locked with
core.candidates.start_fetch, as `weightgate fetch` does for a local directory. `v` starts a
real `verify` job (a separate process) that the panel follows through its events.jsonl.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from core.workspace import Workspace, init_workspace
from test_tui import notifications, started, wait_for
from tui.app import WeightgateApp
from tui.widgets.lock_panel import FollowedJob

SIZE = (120, 40)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


@pytest.fixture
def locked(ws: Workspace, tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model, chosen and locked (files hashed, lock written, evidence recorded)."""
    from core.candidates import add_candidate, choose_model, start_fetch

    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    add_candidate(ws, str(model), "tiny test model")
    choose_model(ws, str(model), "the only one")
    start_fetch(ws, str(model))
    return model


async def open_verification(pilot):
    app = await started(pilot)
    await pilot.press("2")
    await wait_for(pilot, lambda: app.screen.TARGET == "phase-2", what="phase 2")
    return app.screen


def locked_names(ws: Workspace) -> list[str]:
    from core.lock import read_lock

    return sorted(entry.path for entry in read_lock(ws).files)


async def test_no_lock_says_what_to_do(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_verification(pilot)
        empty = screen.panel.query_one("#lock-empty")
        await wait_for(pilot, lambda: empty.display, what="no-lock message")
        text = str(empty.render())
        assert "No weights locked yet: choose a model in phase 1 (c) and fetch it (f)." in text
        assert not screen.panel.table.display
        # Nothing to verify, nothing chosen to fetch: both keys are dimmed in the footer.
        await wait_for(pilot, lambda: screen.active_bindings["v"].enabled is False, what="v dimmed")
        assert screen.active_bindings["f"].enabled is False


async def test_files_table_verify_job_and_checksum_pass(ws: Workspace, locked: Path) -> None:
    names = locked_names(ws)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_verification(pilot)
        panel = screen.panel
        await wait_for(pilot, lambda: panel.table.row_count == len(names), what="files table")
        for name in names:
            row = panel.table.row_text(name)
            assert "computed" in row and "✓ ok" in row, row
        facts = str(panel.query_one("#lock-facts").render())
        assert str(locked) in facts and "(local)" in facts
        assert f"{len(names)} files" in facts and "0 published, 6 computed" in facts
        # The phase is locked (phase 1 is not done), and the screen still works.
        assert app.report.phase(2).locked

        await pilot.press("v")
        await wait_for(pilot, lambda: panel.job is not None, what="verify job followed")
        job = panel.job
        assert job.kind == "verify"
        await wait_for(pilot, lambda: job.state != "running", timeout=60, what="verify job done")
        assert job.state == "succeeded", panel.job_text
        # Its progress came through the journal: bytes hashed of the total.
        assert job.transfer.seen and job.transfer.total and job.transfer.done == job.transfer.total
        assert "✓ verify succeeded" in panel.job_text and "hashed" in panel.job_text
        assert f"{len(names)} files match the lock" in panel.job_text
        await wait_for(pilot, lambda: app.report.item("verify.checksum").status == "pass"
                       and app.report.item("verify.checksum").evidence.kind == "job", what="checksum evidence")


async def test_a_touched_file_shows_changed_on_disk(ws: Workspace, locked: Path) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_verification(pilot)
        table = screen.panel.table
        await wait_for(pilot, lambda: "✓ ok" in table.row_text("config.json"), what="config.json ok")
        later = time.time() + 5
        os.utime(locked / "config.json", (later, later))
        app.refresh_report()
        await wait_for(pilot, lambda: "changed on disk" in table.row_text("config.json"), what="changed row")
        assert "✓ ok" in table.row_text("model.safetensors")
        assert "1 to re-hash: press v" in str(screen.panel.query_one("#lock-facts").render())
        # Re-verifying finds the same bytes: the row is ok again.
        await pilot.press("v")
        await wait_for(pilot, lambda: screen.panel.job is not None and screen.panel.job.state != "running",
                       timeout=60, what="verify job done")
        await wait_for(pilot, lambda: "✓ ok" in table.row_text("config.json"), what="ok after verify")


async def test_a_flipped_byte_is_named_as_a_mismatch(ws: Workspace, locked: Path) -> None:
    weights = locked / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # tensor data, not the header: same size, other bytes
    weights.write_bytes(bytes(data))
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_verification(pilot)
        panel = screen.panel
        await wait_for(pilot, lambda: "changed on disk" in panel.table.row_text("model.safetensors"),
                       what="changed row")
        await pilot.press("v")
        await wait_for(pilot, lambda: panel.job is not None and panel.job.state != "running", timeout=60,
                       what="verify job done")
        assert panel.job.state == "failed"
        assert "model.safetensors" in panel.job_text
        await wait_for(pilot, lambda: app.report.item("verify.checksum").status == "fail", what="checksum fails")
        assert "model.safetensors" in app.report.item("verify.checksum").detail
        await wait_for(pilot, lambda: "MISMATCH" in panel.table.row_text("model.safetensors"), what="mismatch row")
        assert "✓ ok" in panel.table.row_text("config.json")
        assert any("Verify failed" in text and "model.safetensors" in text for text in notifications(app))


async def test_panel_follows_a_download_journal_live(ws: Workspace, tmp_path: Path) -> None:
    """A download job's per-file and total progress (bytes, rate, ETA), tailed as it is written."""
    from core.events import JournalWriter

    job_dir = tmp_path / "job"
    job_dir.mkdir()
    journal = JournalWriter(job_dir / "events.jsonl")
    journal.emit("log", message="download org/model at pinned commit abc")
    journal.emit("progress", done=1_000_000, total=4_000_000, unit="B", scope="file",
                 file="model-00001-of-00002.safetensors", rate_bps=2e6, message="model-00001-of-00002.safetensors")
    journal.emit("progress", done=1_000_000, total=8_000_000, unit="B", scope="total", rate_bps=2e6, eta_s=3.5,
                 message="total")
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_verification(pilot)
        panel = screen.panel
        panel.follow("20260101-000000-download-abcd", job_dir, "download")
        await wait_for(pilot, lambda: "fetched 976.6 KiB / 7.6 MiB" in panel.job_text, what="first progress")
        assert "2.0 MB/s" in panel.job_text and "ETA 4 s" in panel.job_text and "12%" in panel.job_text
        assert "model-00001-of-00002.safetensors 25%" in panel.job_text
        journal.emit("progress", done=8_000_000, total=8_000_000, unit="B", scope="total", rate_bps=4e6, eta_s=0,
                     message="total")
        journal.emit("result", status="succeeded", data={"files": 2})
        await wait_for(pilot, lambda: "✓ download succeeded" in panel.job_text, what="result")
        assert "fetched 7.6 MiB / 7.6 MiB" in panel.job_text and "lock written" in panel.job_text


def test_rate_is_computed_when_the_job_gives_none() -> None:
    from core.events import Event

    job = FollowedJob("j", "verify")
    job.apply([Event(1, 100.0, "log", {"message": "verify"}),
               Event(2, 102.0, "progress", {"done": 200_000_000, "total": 400_000_000, "unit": "B", "eta_s": 2.0})])
    assert job.transfer.rate == pytest.approx(100e6)
    assert "hashed 190.7 MiB / 381.5 MiB" in job.text().plain and "100 MB/s" in job.text().plain
    job.apply([Event(3, 104.0, "metric", {"values": {"mb_per_s": 98.5}}),
               Event(4, 104.1, "result", {"status": "succeeded", "data": {"totals": {"files": 3}}})])
    assert job.state == "succeeded" and "at 98 MB/s" in job.text().plain and "3 files match" in job.text().plain


@pytest.mark.tmux
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not on PATH")
def test_selection_and_lock_panels_in_a_real_terminal(ws: Workspace, locked: Path) -> None:
    """120x40 in tmux: the shortlist with the choice, then the lock panel and a verify job."""
    from test_tui_tmux import Terminal, tui_command

    term = Terminal(tui_command(ws.root))
    try:
        term.wait_for("1 Selection", "locked")
        term.send("1")
        # Requirements are not filled in: the screen opens on them; s shows the candidates.
        term.wait_for("Candidates (1)", "Requirements (5 to do)", "set [requirements] task")
        term.send("s")
        screen = term.wait_for("150K", "✓ chosen")
        assert "Params" in screen and "Licence" in screen and "bf16 GiB" in screen
        term.send("2")
        screen = term.wait_for("Lock · weightgate.lock", "model.safetensors", "tokenizer.json", "✓ ok")
        assert "(local)" in screen and "computed" in screen
        term.send("v")
        screen = term.wait_for("verify succeeded", timeout=60)
        assert "files match the lock" in screen
        term.send("q")
        term.wait_for("tui exited with 0", timeout=20)
    finally:
        term.close()
