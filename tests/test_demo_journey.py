"""`weightgate demo --headless` end to end, on the tiny model instead of the demo model (the
same steps, each a real detached job, in a minute or two): the demo workspace, its planted
training-data problems found and the blocking one removed, a LoRA run, the gate, a shipped v1
that passes the health check and the canary. The tiny model learns nothing useful, so the
phases' gates are not expected to open; every step must run and report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.demo_journey import run_demo_journey
from core.gates import compute_report
from core.registry import list_versions, read_aliases
from core.workspace import Workspace


@pytest.mark.timeout(900)
def test_headless_journey_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    said: list[str] = []
    results = run_demo_journey(tmp_path / "demo", say=said.append, model=model)
    text = "\n".join(said)
    assert [r.phase for r in results] == [1, 2, 3, 4, 5, 6]
    assert all(r.seconds > 0 and r.lines for r in results)
    assert "recorded a conscious relaxation" in text
    phase5 = "\n".join(results[4].lines)
    assert "data check found:" in phase5 and "duplicates" in phase5 and "PII" in phase5
    assert "removed 1 over-long example" in phase5 and "trained in" in phase5 and "gate:" in phase5
    ws = Workspace((tmp_path / "demo").resolve())
    name = next(p.name for p in ws.registry_dir.iterdir() if p.is_dir())
    assert [v.version for v in list_versions(ws, name)] == ["v1"] and read_aliases(ws, name)["current"] == "v1"
    phase6 = "\n".join(results[5].lines)
    assert "health " in phase6 and ": ready, cold start" in phase6 and "canary" in phase6
    report = compute_report(ws)
    assert report.item("ship.health").status == "pass"
    assert report.item("ship.rollback").status == "waived" and report.item("ship.monitoring").status == "pass"
    assert report.item("tune.best_checkpoint").status == "pass"
    assert "Done in" in said[-1]
