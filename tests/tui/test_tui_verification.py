"""The Verification screen's lock panel, driven with Textual's Pilot on real workspaces.

The tiny model is copied per test (tests change its files) and locked with
core.weights.candidates.start_fetch, as `weightgate weights fetch` does for a local directory. `v` starts a
real `verify` job (a separate process) that the panel follows through its events.jsonl.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from pilot import notifications, started, wait_for

from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.screens.verification.lock_panel import FollowedJob
from weightgate.tui.app import WeightgateApp

SIZE = (120, 40)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


@pytest.fixture
def locked(ws: Workspace, tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model, chosen and locked (files hashed, lock written, evidence recorded)."""
    from weightgate.core.weights.candidates import add_candidate, choose_model, start_fetch

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
    from weightgate.core.engine.lock import read_lock

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
            assert "✓ computed locally" in row and "verified " in row and "—" in row, row
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
        await wait_for(pilot, lambda: "✓ computed locally" in table.row_text("config.json"),
                       what="config.json ok")
        later = time.time() + 5
        os.utime(locked / "config.json", (later, later))
        app.refresh_report()
        await wait_for(pilot, lambda: "changed on disk" in table.row_text("config.json"), what="changed row")
        assert "✓ computed locally" in table.row_text("model.safetensors")
        assert "1 to re-hash: press v" in str(screen.panel.query_one("#lock-facts").render())
        # Re-verifying finds the same bytes: the row is ok again.
        await pilot.press("v")
        await wait_for(pilot, lambda: screen.panel.job is not None and screen.panel.job.state != "running",
                       timeout=60, what="verify job done")
        await wait_for(pilot, lambda: "✓ computed locally" in table.row_text("config.json"), what="ok after verify")


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
        assert "✓ computed locally" in panel.table.row_text("config.json")
        # The toast comes from the job-ended message, which can land after the row's redraw.
        await wait_for(pilot, lambda: any("Verify failed" in text and "model.safetensors" in text
                                          for text in notifications(app)), what="the failure toast")


async def test_panel_follows_a_download_journal_live(ws: Workspace, tmp_path: Path) -> None:
    """A download job's per-file and total progress (bytes, rate, ETA), tailed as it is written."""
    from weightgate.core.engine.events import JournalWriter

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
    from weightgate.core.engine.events import Event

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
    from terminal import Terminal, tui_command

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
        screen = term.wait_for("Lock · weightgate.lock", "model.safetensors", "tokenizer.json", "✓ computed locally")
        assert "(local)" in screen and "Progress" in screen and "Scan" in screen
        term.send("v")
        screen = term.wait_for("verify succeeded", timeout=60)
        assert "files match the lock" in screen
        term.send("q")
        term.wait_for("tui exited with 0", timeout=20)
    finally:
        term.close()


# --- per-file rows: progress, hash state, scan findings -----------------------------------------


def _big_weights(model: Path, size: int = 96 << 20) -> None:
    """Replace the weights with one large U8 tensor: enough bytes that hashing takes a moment."""
    import json as _json
    import struct

    header = _json.dumps({"__metadata__": {"format": "pt"},
                          "blob": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    header += " " * (-len(header) % 8)
    chunk = os.urandom(1 << 20)
    with open(model / "model.safetensors", "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header.encode())
        for _ in range(size >> 20):
            handle.write(chunk)


async def test_a_real_verify_job_shows_per_file_progress_and_a_mismatch_row(ws: Workspace, tiny_model_dir: Path,
                                                                          tmp_path: Path) -> None:
    from weightgate.core.engine.events import read_events
    from weightgate.core.weights.candidates import add_candidate, choose_model, start_fetch

    model = tmp_path / "big"
    shutil.copytree(tiny_model_dir, model)
    _big_weights(model)
    add_candidate(ws, str(model), "big test weights")
    choose_model(ws, str(model), "the only one")
    start_fetch(ws, str(model))
    weights = model / "model.safetensors"
    with open(weights, "r+b") as handle:   # one flipped byte in the tensor data: same size, other bytes
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    names = locked_names(ws)
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_verification(pilot)
        panel, table = screen.panel, screen.panel.table
        await wait_for(pilot, lambda: table.row_count == len(names), what="files table")
        assert table.shown_columns == ["path", "hash", "progress", "scan"]   # at 120 x 40 beside the sidebar
        assert "—" in table.row_text("model.safetensors")                     # nothing to scan in safetensors
        await pilot.press("v")
        await wait_for(pilot, lambda: panel.job is not None, what="verify job followed")
        job = panel.job
        seen = set()

        def watch():
            seen.add(table.row_text("model.safetensors"))
            return job.state != "running"
        await wait_for(pilot, watch, timeout=90, what="verify job done")
        assert job.state == "failed"
        # Every hashed file had its own progress events, ending at its full size.
        for name in names:
            progress = job.files[name]
            assert progress.total and progress.done == progress.total, (name, progress)
        assert job.files["model.safetensors"].state == "mismatch" and job.files["config.json"].state == "ok"
        assert job.files["model.safetensors"].rate and job.files["model.safetensors"].rate > 0
        # The row shows the file's own bar, share and rate, and the hash state: MISMATCH.
        await wait_for(pilot, lambda: "MISMATCH" in table.row_text("model.safetensors"), what="mismatch row")
        row = table.row_text("model.safetensors")
        assert "100%" in row and "MB/s" in row and "━" in row, row
        assert "✓ computed locally" in table.row_text("config.json")
        assert any("MISMATCH" in text for text in seen), seen   # shown from the job's own per-file event
        # The journal holds per-file events in the download job's form.
        events, _ = read_events(Path(job_dir_of(app, job.job_id)) / "events.jsonl")
        per_file = [e.payload for e in events if e.kind == "progress" and e.payload.get("scope") == "file"]
        assert {p["file"] for p in per_file} == set(names)
        assert any(p["state"] == "hashing" and p["unit"] == "B" and "rate_bps" in p for p in per_file)
        # Once the lock and the report are read again, the row still says MISMATCH (from the evidence).
        await wait_for(pilot, lambda: app.report.item("verify.checksum").status == "fail", what="checksum fails")
        screen.reload()
        shown = []

        def reread():
            shown.append(table.row_text("model.safetensors"))
            return panel._live() is None
        await wait_for(pilot, reread, what="the lock and the report read again")
        assert all("MISMATCH" in text for text in shown), shown   # from the job, then from the evidence


def job_dir_of(app: WeightgateApp, job_id: str) -> Path:
    return Path(app.jobs_dir) / job_id


async def test_download_rows_appear_before_the_lock_with_their_own_progress(ws: Workspace, tmp_path: Path) -> None:
    """A download's per-file events give rows (bar, share, rate, state) before weightgate.lock exists."""
    from weightgate.core.engine.events import JournalWriter

    job_dir = tmp_path / "job"
    job_dir.mkdir()
    journal = JournalWriter(job_dir / "events.jsonl")
    journal.emit("progress", done=1_000_000, total=4_000_000, unit="B", scope="file", state="downloading",
                 file="model-00001-of-00002.safetensors", rate_bps=2e6, message="model-00001-of-00002.safetensors")
    journal.emit("progress", done=0, total=4_000_000, unit="B", scope="file", state="queued",
                 file="model-00002-of-00002.safetensors", rate_bps=0, message="model-00002-of-00002.safetensors")
    journal.emit("progress", done=1_000_000, total=8_000_000, unit="B", scope="total", rate_bps=2e6, eta_s=3.5,
                 message="total")
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_verification(pilot)
        panel, table = screen.panel, screen.panel.table
        panel.follow("20260101-000000-download-abcd", job_dir, "download")
        await wait_for(pilot, lambda: table.row_count == 2, what="download rows")
        first = table.row_text("model-00001-of-00002.safetensors")
        assert "↓ downloading" in first and "25%" in first and "2.0 MB/s" in first, first
        assert "· queued" in table.row_text("model-00002-of-00002.safetensors")
        journal.emit("progress", done=4_000_000, total=4_000_000, unit="B", scope="file", state="verified",
                     file="model-00001-of-00002.safetensors", rate_bps=4e6, message="model-00001-of-00002.safetensors")
        await wait_for(pilot, lambda: "✓ verified" in table.row_text("model-00001-of-00002.safetensors"),
                       what="verified row")
        assert "100%" in table.row_text("model-00001-of-00002.safetensors")


# --- a pickle-only model: scan findings and the convert key ----------------------------------


@pytest.fixture
def pickle_only(ws: Workspace, tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model with its weights as pytorch_model.bin, chosen and locked."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from weightgate.core.weights.candidates import add_candidate, choose_model, start_fetch

    model = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, model)
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    add_candidate(ws, str(model), "pickle-only test model")
    choose_model(ws, str(model), "the only one")
    start_fetch(ws, str(model))
    return model


async def test_convert_key_turns_a_trusted_pickle_into_its_locked_twin(ws: Workspace, pickle_only: Path) -> None:
    import hashlib

    from weightgate.core.weights.pickle_policy import trust_pickle

    pickle_path = pickle_only / "pytorch_model.bin"
    sha = hashlib.sha256(pickle_path.read_bytes()).hexdigest()
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_verification(pilot)
        panel, table = screen.panel, screen.panel.table
        await wait_for(pilot, lambda: table.row_count and "pytorch_model.bin" in table.plain, what="pickle row")
        row = table.row_text("pytorch_model.bin")
        assert "✓ OrderedDict" in row, row    # what the static scan says it would import
        assert "—" in table.row_text("config.json")
        selected = str(panel.query_one("#lock-selected").render())
        assert "torch._utils._rebuild_tensor_v2" in selected and "not trusted" in selected
        # Untrusted: c refuses before any job, with the exact command.
        await wait_for(pilot, lambda: screen.active_bindings["c"].enabled, what="c enabled")
        await pilot.press("c")
        await wait_for(pilot, lambda: any(f"--sha256 {sha}" in n for n in notifications(app)), what="refusal")
        assert panel.job is None
        assert app.report.item("verify.safetensors").status == "fail"

        trust_pickle(ws, pickle_path, sha, "our own export")
        screen.reload()
        await wait_for(pilot, lambda: "c converts it" in str(panel.query_one("#lock-selected").render()),
                       what="trusted")
        await pilot.press("c")
        await wait_for(pilot, lambda: panel.job is not None, what="convert job followed")
        job = panel.job
        assert job.kind == "convert_pickle"
        await wait_for(pilot, lambda: job.state != "running", timeout=120, what="conversion done")
        assert job.state == "succeeded", panel.job_text
        assert "model.safetensors" in panel.job_text and "locked as the twin of pytorch_model.bin" in panel.job_text
        await wait_for(pilot, lambda: "model.safetensors" in (table.plain or ""), what="twin row")
        assert "✓ computed locally" in table.row_text("model.safetensors")
        await wait_for(pilot, lambda: app.report.item("verify.safetensors").status == "pass",
                       what="verify.safetensors passes")
        await wait_for(pilot, lambda: "converted: model.safetensors is locked and is what loads"
                       in str(panel.query_one("#lock-selected").render()), what="converted line")
        await wait_for(pilot, lambda: screen.active_bindings["c"].enabled is False, what="c dimmed once converted")
        # The toast comes from the panel's JobEnded message; on a loaded machine the screen can be
        # redrawn by the report's own refresh first, so wait for it rather than assume the order.
        await wait_for(pilot, lambda: any("Converted to safetensors" in n for n in notifications(app)),
                       what="the converted toast")
