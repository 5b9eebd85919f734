"""E opens weightgate.toml (on Evaluation: the eval set) in $EDITOR, driven with Pilot; $EDITOR is a
script that stands in for a person typing (the edits queued in files, one per run). A valid edit
is saved and re-checked; an invalid one is reported as file:line, leaves the file as it was, and
comes back in the editor on the next E so nothing typed is lost."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pilot import notifications, started, wait_for

from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.tui.app import WeightgateApp

EDITOR_SCRIPT = """\
import json, pathlib, sys
queue = pathlib.Path(sys.argv[1])
edits = json.loads(queue.read_text())
edit = edits.pop(0)
queue.write_text(json.dumps(edits))
path = pathlib.Path(sys.argv[2])
seen = queue.with_name("seen.txt")
seen.write_text(seen.read_text() + path.read_text() + "\\n=====\\n" if seen.exists() else path.read_text() + "\\n=====\\n")
path.write_text(path.read_text().replace(edit["old"], edit["new"]) if "old" in edit else path.read_text() + edit["append"])
"""


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


def fake_editor(tmp_path: Path, monkeypatch, edits: list[dict]) -> Path:
    script = tmp_path / "editor.py"
    script.write_text(EDITOR_SCRIPT)
    queue = tmp_path / "edits.json"
    queue.write_text(json.dumps(edits))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script} {queue}")
    return tmp_path / "seen.txt"


async def test_e_edits_weightgate_toml_an_invalid_edit_is_kept_with_its_line_and_a_fix_is_saved(
        ws, tmp_path, monkeypatch) -> None:
    original = ws.config_path.read_text()
    bad_line = len(original.splitlines()) + 2
    seen = fake_editor(tmp_path, monkeypatch, [
        {"append": "\nbroken = = 1\n"},
        {"old": "\nbroken = = 1\n", "new": "\n"},
    ])
    app = WeightgateApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("1")
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "phase-1", what="phase 1")
        await pilot.press("E")
        await wait_for(pilot, lambda: any(n.startswith(f"Not saved: weightgate.toml:{bad_line}") and
                                          "invalid TOML" in n and "E opens it again" in n
                                          for n in notifications(app)), what="the invalid edit reported")
        assert ws.config_path.read_text() == original               # the workspace still reads
        await pilot.press("E")                                      # the kept draft comes back…
        await wait_for(pilot, lambda: any("weightgate.toml saved" in n for n in notifications(app)), what="saved")
        assert seen.read_text().split("=====")[1].count("broken = = 1") == 1   # …with what was typed
        assert ws.config_path.read_text() == original + "\n"
        assert not (ws.state_dir / "drafts" / "weightgate.toml").exists()


async def test_e_on_evaluation_edits_the_eval_set_and_the_checklist_rereads_it(ws, tmp_path, monkeypatch) -> None:
    task = ws.evals_dir / "task.jsonl"
    cases = "".join(json.dumps({"id": f"c{n}", "input": f"{n} + 1 =", "expected": str(n + 1), "scorer": "exact"})
                    + "\n" for n in range(25))
    fake_editor(tmp_path, monkeypatch, [{"append": "{not json\n"}, {"old": "{not json\n", "new": cases}])
    app = WeightgateApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        before = app.report.item("select.evalset").status
        await pilot.press("4")
        await wait_for(pilot, lambda: getattr(app.screen, "TARGET", "") == "phase-4", what="phase 4")
        lines = len(task.read_text().splitlines())
        await pilot.press("E")
        await wait_for(pilot, lambda: any(n.startswith(f"Not saved: evals/task.jsonl:{lines + 1}")
                                          for n in notifications(app)), what="the bad line reported")
        await pilot.press("E")
        await wait_for(pilot, lambda: any("evals/task.jsonl saved" in n for n in notifications(app)), what="saved")
        await wait_for(pilot, lambda: app.report.item("select.evalset").status != before,
                       what="the checklist re-read the set")
