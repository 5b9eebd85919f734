"""The Deployment screen on a real registry (the tiny model shipped twice: the base as v1,
promoted, with a LoRA adapter kept separate as v2, the candidate; the workspace walks phase 1
only, so both went through the recorded override): s asking for the override's reason while phase
6 is locked, p promoting the candidate through the same modal, versions with aliases and checksum
state, the manifest facts and serve commands, v naming a flipped byte, h loading a version cold,
b rolling back after the confirmation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import flip_byte, make_adapter, phase1_ready
from pilot import notifications, row_keys, started, wait_for

from weightgate.core.evaluation.runner import run_eval
from weightgate.core.registry.store import read_aliases, read_history
from weightgate.core.release.promote import promote
from weightgate.core.release.ship import ship
from weightgate.core.weights.local_source import lock_local_source
from weightgate.tui.app import WeightgateApp

SIZE = (140, 50)
OVERRIDE = "tests: the Deployment screen on a workspace that walks phase 1 only"


@pytest.fixture
def shipped(tmp_path: Path):
    from tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny-base")
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    ws = phase1_ready(tmp_path / "ws")
    ws.update_config(lambda doc: doc["requirements"]["ceilings"].update(p95_latency_ms=60000, min_tokens_per_s=0.5))
    path = ws.evals_dir / "task.jsonl"
    lines = path.read_text().splitlines()[:4]
    path.write_text(json.dumps({"_set": {"max_new_tokens": 4}}) + "\n" + "\n".join(lines) + "\n")
    lock_local_source(ws, str(model))
    run_eval(ws, "task", device="cpu")
    ship(ws, latency=False, override=OVERRIDE)                           # v1: the base
    promote(ws, override=OVERRIDE)
    shutil.copytree(make_adapter(model, tmp_path / "adapter"), ws.adapters_dir / "lora1")
    ws.update_config(lambda doc: doc["decisions"].update(adapter="lora1", merge=False))
    run_eval(ws, "task", device="cpu")
    ship(ws, latency=False, override=OVERRIDE)                           # v2: the adapter, the candidate
    return ws


@pytest.mark.slow
async def test_versions_verify_health_and_rollback(shipped) -> None:
    ws = shipped
    name = next(p.name for p in ws.registry_dir.iterdir() if p.is_dir())
    assert read_aliases(ws, name) == {"current": "v1", "candidate": "v2"}
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("6")
        await wait_for(pilot, lambda: app.screen.TARGET == "phase-6", what="phase 6")
        screen = app.screen
        table = screen.table
        await wait_for(pilot, lambda: table.row_count == 2, what="two versions")
        assert row_keys(table) == ["v2", "v1"]                           # newest first
        assert "candidate" in str(table.get_row("v2")[1]) and "current" in str(table.get_row("v1")[1])
        detail = screen.query_one("#release-detail")
        await wait_for(pilot, lambda: "candidate " in str(detail.render()), what="the candidate's checks")
        text = str(detail.render())
        assert "✗ shipped with closed gates: select.evalset" in text and "p asks for the override" in text
        # s while phase 6 is locked: the modal names what holds it; escape ships nothing.
        await pilot.press("s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "NoteModal", what="the override modal")
        assert "select.evalset" in str(app.screen.query_one(".explain").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="back")
        assert not any("Job started" in n for n in notifications(app))
        # p: phase 6 has not passed on the candidate: the same modal; a reason promotes it.
        await pilot.press("p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "NoteModal", timeout=30, what="promote modal")
        await pilot.press(*"tui test", "enter")
        await wait_for(pilot, lambda: read_aliases(ws, name).get("current") == "v2", timeout=30, what="promoted")
        assert read_aliases(ws, name) == {"current": "v2", "previous": "v1"}
        # The aliases move inside the promote worker; its notification follows when the worker returns.
        await wait_for(pilot, lambda: any("current is now" in n and "closed gates" in n for n in notifications(app)),
                       what="the promotion's notification")
        await wait_for(pilot, lambda: "current" in str(table.get_row("v2")[1]), what="table follows the promotion")
        assert "previous" in str(table.get_row("v1")[1])
        assert "✓ match" in str(table.get_row("v2")[5])
        await wait_for(pilot, lambda: "adapter" in str(detail.render()), what="v2 detail")
        text = str(detail.render())
        assert "vllm serve" in text and "--enable-lora" in text and "checksums ✓" in text
        # The card's words: the merge decision said once, the local base pinned by the lock, no "@ ?".
        assert "adapter · fp32 · adapter kept separate" in text and "merge separate" not in text
        assert "@ ?" not in text and "(local, pinned by the lock's checksums, no commit)" in text
        # current cannot be rolled back to itself
        assert screen.active_bindings["b"].enabled is False

        table.focus()
        table.move_cursor(row=1)                                         # v1
        await wait_for(pilot, lambda: "v1" in str(detail.render()).split("\n")[0], what="v1 detail")
        flipped = ws.registry_dir / name / "v1" / "model.safetensors"
        original = flip_byte(flipped)
        await pilot.press("v")
        await wait_for(pilot, lambda: any("Checksums differ" in n for n in notifications(app)), timeout=60,
                       what="verify names the file")
        assert any("model.safetensors" in n for n in notifications(app) if "Checksums differ" in n)
        await wait_for(pilot, lambda: "✗" in str(table.get_row("v1")[5]), what="checksum column fails")
        flipped.write_bytes(original)
        await pilot.press("v")
        await wait_for(pilot, lambda: any("Checksums match" in n for n in notifications(app)), timeout=60,
                       what="verified again")

        await pilot.press("h")
        await wait_for(pilot, lambda: any("ready" in n and "v1" in n for n in notifications(app)), timeout=120,
                       what="v1 health")
        assert any("first request" in n for n in notifications(app))

        await wait_for(pilot, lambda: screen.active_bindings["b"].enabled, what="rollback enabled")
        await pilot.press("b")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmModal", what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: read_aliases(ws, name).get("current") == "v1", timeout=30, what="rolled back")
        assert read_aliases(ws, name)["previous"] == "v2"
        assert [m["to"] for m in read_history(ws, name) if m["alias"] == "current"][-1] == "v1"
        assert ws.config()["decisions"]["release"] == f"{name}@v1"
        await wait_for(pilot, lambda: "current" in str(table.get_row("v1")[1]), what="table follows")


def test_the_version_card_words_merge_and_base_once_and_plainly() -> None:
    from weightgate.screens.deployment.versions_panel import detail_text

    row = {"version": "v3", "label": "dates:v3", "relation": "merged", "precision": "fp32", "merge": "merged",
           "base": "/models/tiny", "base_commit": "", "base_kind": "local", "base_revision": "",
           "checksum": ("pass", "12 files")}
    first, base = str(detail_text(row)).split("\n")[:2]
    assert first == "dates:v3  merged · fp32 · adapter merged into the base"   # not "merge merged"
    assert base == "base      /models/tiny (local, pinned by the lock's checksums, no commit)"
    hub = dict(row, relation="base", merge="none", base="org/tiny", base_commit="0123456789abcdef", base_kind="hub")
    first, base = str(detail_text(hub)).split("\n")[:2]
    assert first == "dates:v3  base · fp32" and base == "base      org/tiny @ 0123456789ab"
