"""Checklist engine: item coverage, live checks, evidence, staleness, waivers and gates."""


import pytest
from helpers import add_candidate, choose, fill_requirements, phase1_ready, record_benchmark, write_cases

from weightgate.core.engine import checklist, evidence
from weightgate.core.engine.checklist import ITEMS, PHASES, Mode, Severity
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.evaluation.finetune_need import record_finetuning_decision
from weightgate.core.gates import compute_report


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


# The seeds' items that apply to LLM weights, with the severity the seeds give (or higher).
SEED_ITEMS = {
    "tune.retrieval_first": (Severity.CRITICAL, Mode.ATTEST),      # "prompting and retrieval first"
    "tune.prompting_first": (Severity.CRITICAL, Mode.AUTO),
    "tune.data_size": (Severity.RECOMMENDED, Mode.AUTO),            # "a few hundred" / "1000+"
    "tune.data_review": (Severity.CRITICAL, Mode.ATTEST),           # "ground truth labels are accurate"
    "tune.qlora_nf4": (Severity.RECOMMENDED, Mode.AUTO),            # "Quantization Verification (QLoRA)"
    "tune.loss_curves": (Severity.CRITICAL, Mode.AUTO),             # "Loss Curve Monitoring"
    "tune.balance": (Severity.RECOMMENDED, Mode.AUTO),
    "tune.effective_batch": (Severity.CRITICAL, Mode.AUTO),
    "eval.human_review": (Severity.RECOMMENDED, Mode.AUTO),         # "Human-in-the-Loop Review"
    "eval.determinism": (Severity.RECOMMENDED, Mode.AUTO),
    "ship.serving": (Severity.RECOMMENDED, Mode.AUTO),              # "Inference Engine Optimization"
    "ship.quantization": (Severity.RECOMMENDED, Mode.ATTEST),       # "Quantization for Production"
    "ship.warmup": (Severity.OPTIONAL, Mode.AUTO),                  # "Cold Start Mitigation"
    "ship.fallback": (Severity.RECOMMENDED, Mode.ATTEST),           # "Fallback Logic"
    "ship.monitoring": (Severity.RECOMMENDED, Mode.ATTEST),
}


def test_seed_items_and_their_severities():
    for item_id, (severity, mode) in SEED_ITEMS.items():
        item = checklist.ITEMS_BY_ID[item_id]
        assert (item.severity, item.mode) == (severity, mode), item_id
    assert [len(checklist.items_of(n)) for n in range(1, 7)] == [11, 7, 7, 8, 18, 15]


def test_every_auto_item_has_a_decider():
    """An auto item is decided live, recorded by a job or check, or says what will decide it:
    never a todo with nothing behind it."""
    import pathlib

    from weightgate.core.gates import LIVE_CHECKS

    sources = "\n".join(path.read_text() for path in pathlib.Path(checklist.__file__).parents[1].rglob("*.py"))
    for item in ITEMS:
        if item.mode is not Mode.AUTO or item.id in LIVE_CHECKS:
            continue
        recorded = f'"{item.id}"' in sources.replace(f'Item("{item.id}"', "")
        assert recorded and item.needs, item.id


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
        evidence.waive(ws, "memory.offload", "later")
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


# --- items decided from what other checks and jobs recorded (each phase's checks.py) ------------


def _training_run(ws, run_id="20260101-000000-abcd", *, status="finished", precision="bf16", method="lora",
                  metrics=(), job="job-train-1", prints=None):
    from weightgate.core.engine.events import JournalWriter
    from weightgate.core.engine.fingerprints import Fingerprints
    from weightgate.core.engine.jobs import events_path
    from weightgate.core.training.runs import run_dir, write_run

    directory = run_dir(ws, run_id)
    directory.mkdir(parents=True)
    fingerprints = prints or Fingerprints(ws).of(("train_config", "dataset", "model", "precision"))
    write_run(directory, {"run_id": run_id, "created": 1.0, "status": status, "job_ids": [job],
                          "precision": precision, "method": method, "device": "cpu", "fingerprints": fingerprints})
    (ws.jobs_dir / job).mkdir(parents=True)
    # The job's status: this very process "runs" it while the run is running.
    import os
    import time

    from weightgate.core.engine.jobs import STATUS_FILE, JobStatus
    state = "running" if status == "running" else "succeeded"
    (ws.jobs_dir / job / STATUS_FILE).write_text(JobStatus(job, "train", state, time.time(), time.time(),
                                                           pid=os.getpid()).to_json())
    writer = JournalWriter(events_path(ws.jobs_dir / job))
    for values in metrics:
        writer.emit("metric", {"step": values["step"], "values": values})
    return directory


def test_loss_curves_from_the_training_runs_journal(tmp_path):
    ws = phase1_ready(tmp_path)
    assert compute_report(ws).item("tune.loss_curves").status == "todo"
    train = [{"step": step, "loss": 2.0 / step} for step in range(1, 6)]
    _training_run(ws, status="running", metrics=train)
    status = compute_report(ws).item("tune.loss_curves")
    assert status.status == "todo" and "5 train-loss and 0 validation-loss points so far" in status.detail
    # The run writes on: validation losses arrive (the last one rising); decided once it has ended.
    from weightgate.core.engine.events import JournalWriter
    from weightgate.core.training.runs import run_dir, update_run
    writer = JournalWriter(ws.jobs_dir / "job-train-1" / "events.jsonl")
    writer.emit("metric", {"step": 5, "values": {"step": 5, "val_loss": 0.5}})
    writer.emit("metric", {"step": 6, "values": {"step": 6, "loss": 0.3}})
    writer.emit("metric", {"step": 6, "values": {"step": 6, "val_loss": 0.6}})
    assert "2 validation-loss points so far" in compute_report(ws).item("tune.loss_curves").detail
    update_run(run_dir(ws, "20260101-000000-abcd"), status="finished")
    status = compute_report(ws).item("tune.loss_curves")
    assert status.status == "pass", status.detail
    assert status.values["train_points"] == 6 and status.values["val_points"] == 2
    assert "lowest 0.5000 at step 5" in status.detail and "overfitting" in status.detail
    # A run of other inputs does not count: change the training config and it is todo again.
    ws.update_config(lambda doc: doc.setdefault("training", {}).__setitem__("epochs", 2))
    assert compute_report(ws).item("tune.loss_curves").status == "todo"


def test_loss_curves_of_a_run_whose_job_died(tmp_path):
    ws = phase1_ready(tmp_path)
    directory = _training_run(ws, status="running", metrics=[{"step": 1, "loss": 1.0}])
    from weightgate.core.engine.jobs import STATUS_FILE, JobStatus
    (ws.jobs_dir / "job-train-1" / STATUS_FILE).write_text(
        JobStatus("job-train-1", "train", "running", 1.0, 1.0, pid=2**22 + 12345).to_json())   # no such process
    status = compute_report(ws).item("tune.loss_curves")
    assert status.status == "fail" and "ended interrupted" in status.detail, status.detail
    assert directory.is_dir()


def test_loss_curves_fail_when_a_finished_run_never_validated(tmp_path):
    ws = phase1_ready(tmp_path)
    _training_run(ws, status="finished", metrics=[{"step": 1, "loss": 1.0}])
    status = compute_report(ws).item("tune.loss_curves")
    assert status.status == "fail" and "no validation loss" in status.detail
    assert status.holds_gate


def test_qlora_nf4_from_the_runs_quantization(tmp_path):
    ws = phase1_ready(tmp_path)
    assert compute_report(ws).item("tune.qlora_nf4").status == "todo"       # nothing decided yet
    ws.update_config(lambda doc: doc["decisions"].__setitem__("precision", "bf16"))
    status = compute_report(ws).item("tune.qlora_nf4")
    assert status.status == "not-needed" and not status.holds_gate           # plain LoRA
    ws.update_config(lambda doc: doc["decisions"].__setitem__("precision", "fp4"))
    assert compute_report(ws).item("tune.qlora_nf4").status == "fail"        # QLoRA on FP4
    ws.update_config(lambda doc: doc["decisions"].__setitem__("precision", "nf4"))
    assert compute_report(ws).item("tune.qlora_nf4").status == "todo"        # no run yet
    _training_run(ws, precision="nf4", method="qlora")
    status = compute_report(ws).item("tune.qlora_nf4")
    assert status.status == "pass", status.detail
    assert status.values["quant_type"] == "nf4" and status.values["double_quant"] is True
    assert "double quantization" in status.detail


def test_data_size_from_the_data_check(tmp_path):
    ws = phase1_ready(tmp_path)
    (ws.root / "data").mkdir()
    (ws.root / "data" / "train.jsonl").write_text("{}\n")
    assert compute_report(ws).item("tune.data_size").status == "todo"
    evidence.record_result(ws, "tune.format", "pass", {"examples": 120}, kind="check")
    status = compute_report(ws).item("tune.data_size")
    assert status.status == "fail" and "120" in status.detail and status.holds_gate
    evidence.record_result(ws, "tune.split", "pass", {"train": 450, "val": 50}, kind="check")
    status = compute_report(ws).item("tune.data_size")
    assert status.status == "pass" and "450 training examples" in status.detail
    # Other data: the counts are of another file.
    (ws.root / "data" / "train.jsonl").write_text("{}\n{}\n")
    assert compute_report(ws).item("tune.data_size").status == "todo"


def test_warmup_from_the_health_probe(tmp_path):
    ws = phase1_ready(tmp_path)
    ws.update_config(lambda doc: doc["decisions"].__setitem__("release", "demo@v1"))
    assert compute_report(ws).item("ship.warmup").status == "todo"
    evidence.record_result(ws, "ship.health", "pass", {"cold_start_s": 12.4, "first_request_ms": 900.0,
                                                       "warm_request_ms": 120.0})
    status = compute_report(ws).item("ship.warmup")
    assert status.status == "pass" and "cold start 12.4 s" in status.detail and "warm 120 ms" in status.detail
    ws.update_config(lambda doc: doc["decisions"].__setitem__("release", "demo@v2"))
    assert compute_report(ws).item("ship.warmup").status == "todo"
