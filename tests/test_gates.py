"""Checklist engine: item coverage, live checks, evidence, staleness, waivers and gates."""

import json

import pytest

from core import checklist, evidence
from core.checklist import ITEMS, PHASES, Mode, Severity
from core.errors import InputError
from core.gates import compute_report, record_finetuning_decision
from core.workspace import init_workspace
from tests.helpers import add_candidate, choose, fill_requirements, phase1_ready, record_benchmark, write_cases


def test_six_phases_and_item_table():
    assert [p.key for p in PHASES] == ["selection", "verification", "memory", "evaluation",
                                       "finetuning", "deployment"]
    ids = [item.id for item in ITEMS]
    assert len(ids) == len(set(ids))
    for item in ITEMS:
        assert item.title and item.why and item.phase in range(1, 7)
        assert item.id.split(".")[0] in ("select", "verify", "memory", "eval", "tune", "ship")
        # Every auto item names the inputs its evidence depends on.
        assert item.inputs, item.id
    # The DESIGN.md table, item by item (a missing one fails here).
    for required in ("select.task", "select.threshold", "select.ceilings", "select.deployment",
                     "select.evalset", "select.shortlist", "select.training_quality",
                     "select.domain_fit", "select.benchmark", "select.choice",
                     "verify.safetensors", "verify.checksum", "verify.pickle", "verify.remote_code",
                     "verify.source", "verify.license",
                     "memory.weights", "memory.kv_cache", "memory.fits", "memory.largest_precision",
                     "memory.measured", "memory.quant_quality",
                     "eval.size", "eval.hard_edge", "eval.baseline", "eval.fresh", "eval.determinism",
                     "eval.latency",
                     "tune.prompting_first", "tune.format", "tune.dedup", "tune.leakage",
                     "tune.token_lengths", "tune.pii", "tune.split", "tune.lora_config",
                     "tune.checkpoint_restore", "tune.best_checkpoint", "tune.gate",
                     "ship.version", "ship.checksums", "ship.manifest", "ship.merge", "ship.health",
                     "ship.latency", "ship.license", "ship.rollback", "ship.canary"):
        assert required in ids, required
    assert checklist.ITEMS_BY_ID["select.training_quality"].mode is Mode.ATTEST
    assert checklist.ITEMS_BY_ID["verify.checksum"].severity is Severity.CRITICAL


def test_fresh_workspace_phase_one_open_rest_locked(tmp_path):
    report = compute_report(init_workspace(tmp_path))
    states = [p.state for p in report.phases]
    assert states[0] == "open"
    assert states[1:] == ["locked"] * 5
    phase2 = report.phase(2)
    held = {s.item.id for s in phase2.held_by}
    assert {"select.task", "select.threshold", "select.ceilings", "select.evalset"} <= held
    assert all(s.item.phase == 1 for s in phase2.held_by)
    # Later auto items say which capability decides them.
    assert report.item("verify.checksum").status == "todo"
    assert "needs" in report.item("verify.checksum").detail
    # The JSON form carries the same.
    data = report.to_dict()
    assert [p["number"] for p in data["phases"]] == [1, 2, 3, 4, 5, 6]
    assert data["phases"][1]["held_by"][0]["id"].startswith("select.")


def test_requirement_checks_todo_fail_pass(tmp_path):
    ws = init_workspace(tmp_path)
    report = compute_report(ws)
    assert report.item("select.task").status == "todo"
    ws.update_config(lambda doc: doc["requirements"].__setitem__("task", "dates"))
    assert compute_report(ws).item("select.task").status == "fail"
    ws.update_config(lambda doc: doc["requirements"].__setitem__("quality_threshold", 7))
    assert compute_report(ws).item("select.threshold").status == "fail"
    ws.update_config(lambda doc: doc["requirements"]["deployment"].__setitem__("hosting", "cloudy"))
    report = compute_report(ws)
    assert report.item("select.deployment").status == "fail"
    assert "hosting must be one of" in report.item("select.deployment").detail
    fill_requirements(ws)
    report = compute_report(ws)
    for item_id in ("select.task", "select.threshold", "select.ceilings", "select.deployment",
                    "select.intended_use"):
        assert report.item(item_id).status == "pass", (item_id, report.item(item_id).detail)


def test_eval_set_checks_read_the_file(tmp_path):
    ws = phase1_ready(tmp_path)
    report = compute_report(ws)
    assert report.item("select.evalset").status == "pass"
    assert report.item("select.evalset").values["cases"] == 24
    assert report.item("eval.hard_edge").status == "pass"
    write_cases(ws.evals_dir / "task.jsonl", 24, tags=("easy",))
    assert compute_report(ws).item("eval.hard_edge").status == "fail"
    write_cases(ws.evals_dir / "task.jsonl", 12)
    assert compute_report(ws).item("select.evalset").status == "fail"
    # A malformed line names the file and line.
    path = ws.evals_dir / "task.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = '{"id": "x", "input": "broken'
    path.write_text("\n".join(lines) + "\n")
    status = compute_report(ws).item("select.evalset")
    assert status.status == "fail"
    assert "task.jsonl:4" in status.detail


def test_live_checks_are_recorded_as_evidence_once(tmp_path):
    ws = phase1_ready(tmp_path)
    compute_report(ws)
    first = evidence.read_evidence(ws)
    assert {r.item for r in first} >= {"select.task", "select.evalset"}
    assert all(r.fingerprints for r in first)
    compute_report(ws)
    assert len(evidence.read_evidence(ws)) == len(first)  # unchanged inputs: nothing new


def test_attest_stale_when_fingerprint_changes(tmp_path):
    ws = phase1_ready(tmp_path)
    evidence.attest(ws, "select.domain_fit", "model card says trained on web text incl. dates")
    assert compute_report(ws).item("select.domain_fit").status == "pass"

    # The attestation was about the candidates; changing them makes it stale.
    def add_candidate(doc):
        import tomlkit
        array = tomlkit.aot()
        array.append(tomlkit.table())
        array[0]["source"] = "org/other-model"
        doc["candidates"] = array
    ws.update_config(add_candidate)
    status = compute_report(ws).item("select.domain_fit")
    assert status.status == "stale"
    assert status.stale_inputs == ["candidates"]
    assert status.holds_gate


def test_recorded_evidence_turns_stale_with_eval_set(tmp_path):
    ws = phase1_ready(tmp_path)
    evidence.record_result(ws, "select.benchmark", "pass", {"score": 0.93})
    assert compute_report(ws).item("select.benchmark").status == "pass"
    write_cases(ws.evals_dir / "task.jsonl", 25)
    status = compute_report(ws).item("select.benchmark")
    assert status.status == "stale"
    assert "evalset.task" in status.stale_inputs


def test_gate_opens_when_phase_one_holds(tmp_path):
    ws = phase1_ready(tmp_path)
    report = compute_report(ws)
    assert report.phase(2).locked
    held = {s.item.id for s in report.phase(2).held_by}
    assert held == {"select.shortlist", "select.training_quality", "select.domain_fit",
                    "select.benchmark", "select.choice"}
    # Candidates first: the attestations below are about them.
    add_candidate(ws, "org/small", 135_000_000)
    choose(ws, "org/small")
    evidence.attest(ws, "select.training_quality", "read the tech report")
    evidence.waive(ws, "select.domain_fit", "general task, no domain")
    record_benchmark(ws, "org/small")
    evidence.record_result(ws, "select.benchmark", "pass", {"measured": True})
    report = compute_report(ws)
    assert report.phase(1).state == "passed"
    assert report.phase(2).state == "open"
    assert report.phase(3).locked
    assert report.current_phase == 2
    assert report.item("select.domain_fit").status == "waived"
    # A newer benchmark in which the choice misses the latency ceiling closes the gate again.
    record_benchmark(ws, "org/small", p95_latency_ms=9000.0)
    report = compute_report(ws)
    assert report.phase(2).locked
    assert "p95 latency" in report.item("select.choice").detail


def test_waive_rules(tmp_path):
    ws = phase1_ready(tmp_path)
    with pytest.raises(InputError, match="critical"):
        evidence.waive(ws, "select.task", "no time")
    with pytest.raises(InputError, match="reason"):
        evidence.waive(ws, "select.domain_fit", "  ")
    with pytest.raises(InputError, match="optional"):
        evidence.waive(ws, "eval.human_review", "later")
    with pytest.raises(InputError, match="note"):
        evidence.attest(ws, "select.domain_fit", "")
    with pytest.raises(InputError, match="automatically"):
        evidence.attest(ws, "select.task", "looks fine")
    with pytest.raises(InputError, match="no checklist item"):
        evidence.attest(ws, "select.nope", "x")


def test_waiver_on_live_item_and_revoke(tmp_path):
    ws = phase1_ready(tmp_path)
    ws.evals_dir.joinpath("general.jsonl").unlink(missing_ok=True)
    assert compute_report(ws).item("eval.general_set").status == "todo"
    evidence.waive(ws, "eval.general_set", "we will not fine-tune")
    assert compute_report(ws).item("eval.general_set").status == "waived"
    evidence.revoke(ws, "eval.general_set")
    assert compute_report(ws).item("eval.general_set").status == "todo"


def test_finetuning_not_needed_marks_phase_five(tmp_path):
    ws = phase1_ready(tmp_path)
    record_finetuning_decision(ws, needed=False, values={"baseline": 0.95, "threshold": 0.9})
    report = compute_report(ws)
    assert report.phase(5).state in ("locked", "not-needed")
    assert all(s.status == "not-needed" for s in report.phase(5).items)
    assert not any(s.item.phase == 5 for s in report.phase(6).held_by)
    # A change of precision makes the decision stale: phase 5 is back in play.
    ws.update_config(lambda doc: doc["decisions"].__setitem__("precision", "nf4"))
    report = compute_report(ws)
    assert any(s.status != "not-needed" for s in report.phase(5).items)


def test_torn_evidence_line_is_ignored(tmp_path):
    ws = phase1_ready(tmp_path)
    evidence.attest(ws, "select.domain_fit", "ok")
    with open(ws.evidence_path, "a") as handle:
        handle.write('{"item": "select.training_quality", "sta')  # crash mid-append
    report = compute_report(ws)
    assert report.item("select.domain_fit").status == "pass"
    assert report.item("select.training_quality").status == "todo"
    # The next append cuts the torn tail instead of gluing onto it.
    evidence.attest(ws, "select.training_quality", "read the tech report")
    report = compute_report(ws)
    assert report.item("select.training_quality").status == "pass"
    assert report.item("select.domain_fit").status == "pass"


def test_corrupt_evidence_line_is_reported_with_line(tmp_path):
    ws = phase1_ready(tmp_path)
    evidence.attest(ws, "select.domain_fit", "ok")
    with open(ws.evidence_path, "a") as handle:
        handle.write("not json at all\n")
    evidence.attest(ws, "select.training_quality", "ok")
    with pytest.raises(InputError) as info:
        compute_report(ws)
    assert info.value.line == len(ws.evidence_path.read_text().splitlines()) - 1
