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
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import tomllib

from weightgate.core.demo.journey import JourneyStopped, run_demo_journey
from weightgate.core.demo.workspace import create_demo_workspace
from weightgate.core.engine.checklist import ITEMS
from weightgate.core.engine.workspace import Workspace
from weightgate.core.gates import compute_report
from weightgate.core.registry.store import list_versions, read_aliases


class Journey(NamedTuple):
    root: Path          # the journey's workspace (the test of the journey changes it)
    pristine: Path      # a copy taken when the journey ended, for tests that change one input
    said: list[str]
    results: list
    commit: str


@pytest.fixture(scope="module")
def journey(tmp_path_factory, tiny_model_dir: Path) -> Journey:
    tmp_path = tmp_path_factory.mktemp("journey")
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
    shutil.copytree(tmp_path / "demo", tmp_path / "pristine", symlinks=True)
    return Journey((tmp_path / "demo").resolve(), (tmp_path / "pristine").resolve(), said, results, commit)


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_headless_journey_on_the_tiny_model(journey: Journey) -> None:
    said, results, commit = journey.said, journey.results, journey.commit
    text = "\n".join(said)
    assert [r.phase for r in results] == [1, 2, 3, 4, 5, 6]
    assert all(r.seconds > 0 and r.lines for r in results)
    # The timing table: measured per phase from its jobs and the walkthrough's own timers.
    assert "Where the time went" in text and all(r.timing["wall_s"] == round(r.seconds, 1) for r in results)
    assert results[0].timing["hashing_s"] > 0 and results[1].timing["hashing_s"] > 0      # lock, verify
    assert results[3].timing["generating_s"] > 0 and results[3].timing["loading_s"] > 0  # the evals
    assert results[4].timing["training_s"] > 0                                          # the LoRA run
    assert all(sum(r.timing[f"{c}_pct"] for c in ("generating", "training", "hashing", "loading")) <= 100.5
               for r in results)
    assert "recorded a conscious relaxation" in text
    phase5 = "\n".join(results[4].lines)
    assert "data check found:" in phase5 and "duplicates" in phase5 and "PII" in phase5
    assert "removed 1 over-long example" in phase5 and "trained in" in phase5 and "gate:" in phase5
    ws = Workspace(journey.root)
    name = next(p.name for p in ws.registry_dir.iterdir() if p.is_dir())
    # Shipped as the candidate, checked, promoted: current, and no candidate left.
    assert [v.version for v in list_versions(ws, name)] == ["v1"] and read_aliases(ws, name) == {"current": "v1"}
    phase6 = "\n".join(results[5].lines)
    assert "health " in phase6 and ": ready, cold start" in phase6 and ": pass: no regression" in phase6
    assert f"shipped {name}@v1" in phase6 and "the candidate" in phase6 and f"promoted {name}@v1" in phase6
    # v1 behind `transformers serve`: the canary through it scores what the in-process one did.
    assert f"served {name}@v1 at http://127.0.0.1:" in phase6 and "the in-process canary's score" in phase6
    assert "TTFT p50 " in phase6 and "; stopped" in phase6
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


# --- evidence follows its inputs: each input changed alone on the finished journey ------------

def _set(table: str, key: str, value):
    def change(root: Path) -> None:
        def edit(doc):
            node = doc
            for part in table.split("."):
                if part not in node:
                    node[part] = {}
                node = node[part]
            node[key] = value
        Workspace(root).update_config(edit)
    return change


def _edit_first_expected(relative: str):
    def change(root: Path) -> None:
        path = root / relative
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            case = json.loads(line) if line.strip().startswith("{") else None
            if isinstance(case, dict) and "expected" in case:
                case["expected"] = f"{case['expected']} (edited)"
                lines[number] = json.dumps(case)
                break
        path.write_text("\n".join(lines) + "\n")
    return change


def _append_training_example(root: Path) -> None:
    path = root / "data" / "train.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[0]]) + "\n")   # one more example (a duplicate, as a slip would be)


def _decided(root: Path) -> dict:
    return tomllib.loads((root / "weightgate.toml").read_text())["decisions"]


def _flip_adapter_byte(root: Path) -> None:
    from weightgate.core.engine.fingerprints import find_adapter

    path = find_adapter(Workspace(root), _decided(root)["adapter"]) / "adapter_model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def _relock_other_bytes(root: Path) -> None:
    # The lock naming other bytes for one file: another model, as a re-fetch of a moved revision.
    path = root / "weightgate.lock"
    text = path.read_text()
    at = text.index('sha256 = "') + len('sha256 = "')
    path.write_text(text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1:])


def _reship_under_the_same_number(root: Path) -> None:
    # Version v1 deleted and shipped again: same label, another identity.
    name, _, version = _decided(root)["release"].partition("@")
    manifest = Workspace(root).registry_dir / name / version / "manifest.toml"
    manifest.write_text(manifest.read_text().replace("created = ", "created = 1", 1))


def _touch_first_weight(root: Path) -> None:
    from weightgate.core.engine.lock import read_lock, snapshot_dir

    ws = Workspace(root)
    lock = read_lock(ws)
    path = snapshot_dir(ws, lock) / sorted(f.path for f in lock.files)[0]
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


# One change per input of the table (engine.fingerprints.INPUTS), each as a person would make it.
PERTURBATIONS = {
    "requirements": _set("requirements", "notes", "reviewed with the product owner"),
    "candidates": lambda root: Workspace(root).update_config(lambda doc: doc["candidates"][0].__setitem__(
        "notes", "re-read the model card")),
    "choice": _set("decisions", "model", "someone/another-model"),
    "model": _relock_other_bytes,
    "weights_on_disk": _touch_first_weight,
    "precision": _set("decisions", "precision", "bf16"),
    "adapter": _flip_adapter_byte,
    "evalset.task": _edit_first_expected("evals/task.jsonl"),
    "evalset.general": _edit_first_expected("evals/general.jsonl"),
    "dataset": _append_training_example,
    "train_config": _set("training", "eval_every", 21),
    "gate_config": _set("training", "general_tolerance", 0.99),
    "data_config": _set("data", "notes", "thresholds reviewed"),
    "memory_settings": _set("settings", "headroom", 0.35),
    "quant_settings": _set("settings", "quant_tolerance", 0.06),
    "prices": _set("settings", "price_per_hour", 1.0),
    "release": _reship_under_the_same_number,
}


def _statuses(root: Path) -> dict[str, str]:
    report = compute_report(Workspace(root), record=False)
    return {status.item.id: status.status for phase in report.phases for status in phase.items}


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_every_input_moves_exactly_the_items_that_name_it(journey: Journey, tmp_path: Path) -> None:
    """The dependency table (Item.inputs) proven by perturbation: on the finished journey, change
    one input alone; every item whose status moves names that input, and every recorded item
    that names it no longer passes on the old record. Every record in the log carries exactly
    its item's inputs."""
    from weightgate.core.engine.checklist import FINETUNING_DECISION_INPUTS, get_item
    from weightgate.core.engine.evidence import read_evidence
    from weightgate.core.engine.fingerprints import INPUTS
    from weightgate.core.evaluation.finetune_need import FINETUNING_DECISION
    from weightgate.core.gates import LIVE_CHECKS

    assert set(PERTURBATIONS) == set(INPUTS), "every input of the table is perturbed"
    records = read_evidence(Workspace(journey.pristine))
    assert len(records) > 60
    for record in records:
        declared = FINETUNING_DECISION_INPUTS if record.item == FINETUNING_DECISION else get_item(record.item).inputs
        assert set(record.fingerprints) == set(declared), (record.item, record.kind, sorted(record.fingerprints))
    before = _statuses(journey.pristine)
    assert before["tune.gate"] == "pass" and before["ship.canary"] == "pass"
    # The weights live outside the workspace: the one perturbation of them is undone after.
    weights_restore = []
    for name, change in PERTURBATIONS.items():
        root = tmp_path / name.replace(".", "_")
        shutil.copytree(journey.pristine, root, symlinks=True)
        if name == "weights_on_disk":
            from weightgate.core.engine.lock import read_lock, snapshot_dir
            ws = Workspace(root)
            lock = read_lock(ws)
            weight = snapshot_dir(ws, lock) / sorted(f.path for f in lock.files)[0]
            weights_restore.append((weight, weight.stat()))
        try:
            change(root)
            after = _statuses(root)
        finally:
            for weight, stat in weights_restore:
                os.utime(weight, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            weights_restore.clear()
        naming = {item for item in before if name in get_item(item).inputs}
        moved = {item: (before[item], after[item]) for item in before if before[item] != after[item]}
        assert not {item: m for item, m in moved.items() if item not in naming}, (name, moved)
        recorded = [item for item in naming if item not in LIVE_CHECKS and before[item] in ("pass", "fail")]
        assert recorded or name in ("choice", "candidates", "prices"), name
        for item in recorded:
            assert after[item] in ("stale", "fail", "todo"), (name, item, after[item])
        shutil.rmtree(root)
    # The gate was measured at fp32: at bf16 nobody has gated the adapter.
    root = tmp_path / "why"
    shutil.copytree(journey.pristine, root, symlinks=True)
    PERTURBATIONS["precision"](root)
    done = subprocess.run([sys.executable, "-m", "weightgate", "-w", str(root), "status", "--why", "tune.gate",
                           "--json"], capture_output=True, text=True, timeout=120)
    why = json.loads(done.stdout)
    assert done.returncode == 1 and why["status"] == "stale" and why["changed"] == ["precision"], why
    assert {state["input"] for state in why["inputs"]} == set(get_item("tune.gate").inputs)
    text = subprocess.run([sys.executable, "-m", "weightgate", "-w", str(root), "status", "--why", "tune.gate"],
                          capture_output=True, text=True, timeout=120).stdout
    assert "precision" in text and "<- changed" in text and "[decisions] precision" in text
