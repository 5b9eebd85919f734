"""`weightgate demo --headless` end to end, on the tiny model instead of the demo model (the
same steps, each a real detached job, in a minute or two): the demo workspace, its planted
training-data problems found and the blocking one removed, a LoRA run, the gate, a shipped v1
that passes the health check and the canary. The tiny model learns nothing useful, so the test
sets the gate's margin to 0 (a person would not) and does not expect the phases' gates to open;
every step must run and report, and the manifest must carry the run's lineage. The workspace is
a git repository, as a team's would be, so the manifest records its commit and dirty flag."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib

from weightgate.core.demo.journey import JourneyStopped, run_demo_journey
from weightgate.core.demo.workspace import create_demo_workspace
from weightgate.core.engine.workspace import Workspace
from weightgate.core.gates import compute_report
from weightgate.core.registry.store import list_versions, read_aliases


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_headless_journey_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    ws, _ = create_demo_workspace(tmp_path / "demo")

    def gate_that_keeps_anything(doc):
        doc["training"]["task_margin"] = 0.0
        doc["training"]["general_tolerance"] = 1.0
    ws.update_config(gate_that_keeps_anything)
    git = ["git", "-C", str(ws.root), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "demo workspace"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
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
    assert "health " in phase6 and ": ready, cold start" in phase6 and ": pass: no regression" in phase6
    manifest = tomllib.loads((ws.registry_dir / name / "v1" / "manifest.toml").read_text())
    assert manifest["release"]["relation"] in ("adapter", "merged")
    assert manifest["adapter"]["present"] is True and manifest["adapter"]["config"]["r"] == 16
    assert manifest["dataset"]["source"] == "data-check"
    assert manifest["dataset"]["counts"]["train"] + manifest["dataset"]["counts"]["val"] > 300
    assert manifest["training"]["seed"] == 42 and manifest["training"]["run"]["status"] == "finished"
    assert {run["set"] for run in manifest["evals"]} >= {"task", "general"}
    # the journey wrote its decisions into the committed weightgate.toml: the version says so
    assert manifest["code"] == {"git": True, "commit": commit, "dirty": True}
    report = compute_report(ws)
    assert report.item("ship.health").status == "pass"
    assert report.item("ship.rollback").status == "waived" and report.item("ship.monitoring").status == "pass"
    assert report.item("tune.best_checkpoint").status == "pass"
    assert "Done in" in said[-1]


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_headless_journey_stops_when_the_gate_rejects_the_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    """With the seeds' gate (the task must rise by 0.05) the tiny model's adapter is rejected: the
    walkthrough stops there, says why, and ships nothing."""
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    said: list[str] = []
    with pytest.raises(JourneyStopped) as stopped:
        run_demo_journey(tmp_path / "demo", say=said.append, model=model)
    assert "the gate rejected the adapter, so nothing is shipped" in stopped.value.message
    assert "weightgate eval compare" in (stopped.value.hint or "")
    assert any(line.startswith("  ✓ gate: rejected") for line in said)
    ws = Workspace((tmp_path / "demo").resolve())
    assert not ws.registry_dir.exists() or not any(ws.registry_dir.iterdir())
