"""`weightgate demo --headless` end to end, on the tiny model instead of the demo model (the
same steps, each a real detached job, in a minute or two): the demo workspace, its planted
training-data problems found and the blocking one removed, a LoRA run, the gate, a shipped v1
that passes the health check and the canary. The tiny model learns nothing useful, so the test
sets the keep-or-reject gate's margin to 0 (a person would not); with that, its phases' gates
open, and it ships a candidate through them, health-checks it, runs its canary and promotes it.
Every step must run and report, the manifest must carry the run's lineage and the checklist of
all six phases, and `weightgate release audit` must find a revoked waiver and an edited
attestation. The workspace is a git repository, as a
team's would be, so the manifest records its commit and dirty flag."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from weightgate.core.demo.journey import JourneyStopped, run_demo_journey
from weightgate.core.demo.workspace import create_demo_workspace
from weightgate.core.engine.checklist import ITEMS
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
    # Shipped as the candidate, checked, promoted: current, and no candidate left.
    assert [v.version for v in list_versions(ws, name)] == ["v1"] and read_aliases(ws, name) == {"current": "v1"}
    phase6 = "\n".join(results[5].lines)
    assert "health " in phase6 and ": ready, cold start" in phase6 and ": pass: no regression" in phase6
    assert f"shipped {name}@v1" in phase6 and "the candidate" in phase6 and f"promoted {name}@v1" in phase6
    manifest = tomllib.loads((ws.registry_dir / name / "v1" / "manifest.toml").read_text())
    assert manifest["release"]["relation"] in ("adapter", "merged")
    assert manifest["adapter"]["present"] is True and manifest["adapter"]["config"]["r"] == 16
    assert manifest["dataset"]["source"] == "data-check"
    assert manifest["dataset"]["counts"]["train"] + manifest["dataset"]["counts"]["val"] > 300
    assert manifest["training"]["seed"] == 42 and manifest["training"]["run"]["status"] == "finished"
    assert {run["set"] for run in manifest["evals"]} >= {"task", "general"}
    # the journey wrote its decisions into the committed weightgate.toml: the version says so
    assert manifest["code"] == {"git": True, "commit": commit, "dirty": True}
    # The checklist at promotion: every item of the six phases, with its status and evidence.
    checklist = manifest["checklist"]
    assert checklist["stage"] == "promote" and [p["number"] for p in checklist["phases"]] == [1, 2, 3, 4, 5, 6]
    assert [item["id"] for item in checklist["items"]] == [item.id for item in ITEMS]
    assert all(item["status"] in ("pass", "fail", "stale", "todo", "waived", "not-needed")
               for item in checklist["items"])
    shipped = {item["id"]: item for item in checklist["items"]}
    assert shipped["ship.health"]["status"] == "pass" and shipped["ship.canary"]["status"] == "pass"
    assert shipped["ship.rollback"]["status"] == "waived" and "demo walkthrough" in shipped["ship.rollback"]["note"]
    assert manifest["gates"] == {"open": True, "held_by": []} and "override" not in manifest["promotion"]
    assert [p["state"] for p in checklist["phases"]] == ["passed"] * 6
    assert not compute_report(ws, record=False).overrides
    card = (ws.registry_dir / name / "v1" / "README.md").read_text()
    assert "## Checklist" in card and "| 6 Deployment |" in card and "ship.rollback waived:" in card

    def audit() -> tuple[int, dict]:
        done = subprocess.run([sys.executable, "-m", "weightgate", "-w", str(ws.root), "release", "audit", "v1",
                               "--json"], capture_output=True, text=True, timeout=120)
        return done.returncode, json.loads(done.stdout)

    code, found = audit()
    assert code == 0 and found["holds"], found["findings"]
    assert any(line.startswith("eval task: run ") for line in found["checked"])
    # A waiver revoked after the release: the audit names it and exits 1.
    subprocess.run([sys.executable, "-m", "weightgate", "-w", str(ws.root), "revoke", "ship.fallback", "--note",
                    "no fallback after all"], check=True, capture_output=True)
    code, found = audit()
    assert code == 1 and [(f["area"], f["subject"]) for f in found["findings"]] == [("checklist", "ship.fallback")]
    assert "waiver revoked" in found["findings"][0]["detail"]
    # An attested note edited in the evidence log: the record the snapshot names is gone.
    log = ws.evidence_path
    lines = log.read_text().splitlines()
    edited = [n for n, line in enumerate(lines) if '"item": "ship.monitoring"' in line and '"kind": "attest"' in line]
    record = json.loads(lines[edited[-1]])
    record["note"] = "monitoring: none, really"
    lines[edited[-1]] = json.dumps(record, sort_keys=True)
    log.write_text("\n".join(lines) + "\n")
    code, found = audit()
    assert code == 1 and ("checklist", "ship.monitoring") in [(f["area"], f["subject"]) for f in found["findings"]]
    assert "no longer in the evidence log" in next(f["detail"] for f in found["findings"]
                                                    if f["subject"] == "ship.monitoring")
    report = compute_report(ws)
    assert report.item("ship.health").status == "pass"
    assert report.item("ship.rollback").status == "waived"
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
