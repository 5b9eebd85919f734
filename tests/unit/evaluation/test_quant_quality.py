"""memory.quant_quality on the tiny model: the task set at fp32 (the reference that fits) and at the
quantized choice (nf4), compared. The expected answers are set to the fp32 model's own outputs,
so every case passes at the reference and any case nf4 changes is a real regression."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import rewrite_cases, tiny_workspace

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import latest_by_item, read_evidence
from weightgate.core.evaluation.quant_quality import check_quant_quality
from weightgate.core.evaluation.runs import list_runs, read_cases, run_dir
from weightgate.core.memory.checks import record_fit

ROOT = Path(__file__).resolve().parents[3]


def quantized_workspace(root: Path, model_dir: Path, tolerance: float):
    ws = tiny_workspace(root, model_dir, {"max_new_tokens": 6})

    def change(doc):
        doc["requirements"]["ceilings"]["memory_budget_gib"] = 4
        doc["settings"]["quant_tolerance"] = tolerance
    ws.update_config(change)
    record_fit(ws, "nf4", device="cpu")
    return ws


def test_a_quantization_that_changes_hard_cases_fails_and_the_runs_are_reused(tmp_path, tiny_model_dir):
    ws = quantized_workspace(tmp_path / "ws", tiny_model_dir, 0.0)
    first = check_quant_quality(ws, device="cpu", record=False)
    assert first.reference == "fp32" and first.chosen == "nf4"
    reference_outputs = {case.id: case.output for case in read_cases(run_dir(ws, first.reference_run))}
    # The reference's own outputs become the expected answers: fp32 passes everything.
    rewrite_cases(ws, lambda row: {**row, "expected": reference_outputs[row["id"]], "scorer": "exact"})

    result = check_quant_quality(ws, device="cpu")
    groups = result.groups
    assert groups["all"]["pass_rate_reference"] == 1.0
    changed = result.regressed_cases
    # A random tiny model quantized to NF4 changes some greedy outputs.
    assert changed, "nf4 changed no output of the tiny model; the test needs one that it does"
    assert result.status == "fail" and "tolerance 0%" in result.note
    assert all(c["quantized"] != reference_outputs[c["id"]] for c in changed)
    record = latest_by_item(read_evidence(ws))["memory.quant_quality"]
    assert record.status == "fail" and record.values["reference_run"] == result.reference_run

    # Same identities again: both runs are reused, nothing is generated.
    before = {r.id for r in list_runs(ws, "task")}
    logs = []
    again = check_quant_quality(ws, device="cpu", log=logs.append, record=False)
    assert {r.id for r in list_runs(ws, "task")} == before
    assert sum("reusing run" in line for line in logs) == 2
    assert (again.reference_run, again.quantized_run) == (result.reference_run, result.quantized_run)

    # A tolerance wider than the loss passes, with the numbers in the note.
    def widen(doc):
        doc["settings"]["quant_tolerance"] = 0.99
    ws.update_config(widen)
    lenient = check_quant_quality(ws, device="cpu")
    assert lenient.status == "pass" and "->" in lenient.note
    assert latest_by_item(read_evidence(ws))["memory.quant_quality"].status == "pass"


def test_unquantized_choice_passes_and_bad_settings_are_refused(tmp_path, tiny_model_dir):
    ws = quantized_workspace(tmp_path / "ws", tiny_model_dir, 0.05)
    record_fit(ws, "fp32", device="cpu")
    assert check_quant_quality(ws, device="cpu", record=False).note.startswith("fp32 is not quantized")

    def bad(doc):
        doc["settings"]["quant_tolerance"] = "lots"
    ws.update_config(bad)
    with pytest.raises(InputError, match="quant_tolerance"):
        check_quant_quality(ws, device="cpu")

    def reference_quantized(doc):
        doc["settings"]["quant_tolerance"] = 0.05
        doc["settings"]["quant_reference"] = "int8"
    ws.update_config(reference_quantized)
    record_fit(ws, "nf4", device="cpu")
    with pytest.raises(InputError, match="itself quantized"):
        check_quant_quality(ws, device="cpu")


def test_no_reference_fits_names_the_fix(tmp_path, tiny_model_dir):
    ws = quantized_workspace(tmp_path / "ws", tiny_model_dir, 0.05)

    def tiny_budget(doc):
        doc["requirements"]["ceilings"]["memory_budget_gib"] = 0.0001
    ws.update_config(tiny_budget)
    with pytest.raises(InputError, match="no unquantized precision fits") as caught:
        check_quant_quality(ws, device="cpu")
    assert "quant_reference" in caught.value.hint


def wg(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "weightgate", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


@pytest.mark.slow
def test_cli_estimate_fit_and_quant_check(tmp_path, tiny_model_dir):
    estimate = wg("memory", "estimate", str(tiny_model_dir), "--context", "256", "--batch", "2", "--train", "lora",
                  "--budget-gib", "1", "--json")
    assert estimate.returncode == 0, estimate.stderr
    data = json.loads(estimate.stdout)
    assert data["choice"]["precision"] == "fp32" and [e["precision"] for e in data["inference"]][:2] == ["fp32", "bf16"]
    assert data["training"] and data["context"] == 256
    bad = wg("memory", "estimate", str(tiny_model_dir), "--train", "full")
    assert bad.returncode == 2 and "lora or qlora" in bad.stderr

    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    no_precision = wg("-w", str(ws.root), "memory", "quant-check", "--json")
    assert no_precision.returncode == 2 and "weightgate memory fit" in no_precision.stderr

    def budget(doc):
        doc["requirements"]["ceilings"]["memory_budget_gib"] = 4
    ws.update_config(budget)
    fit = wg("-w", str(ws.root), "memory", "fit", "--json")
    assert fit.returncode == 0, fit.stderr
    assert json.loads(fit.stdout)["precision"] == "fp32"
    assert 'precision = "fp32"' in ws.config_path.read_text()
    text = wg("-w", str(ws.root), "memory", "fit", "nf4")
    assert text.returncode == 1 and "fp32 fits too" in text.stdout   # quantizing further than needed fails the item
    check = wg("-w", str(ws.root), "memory", "quant-check", "--attach")
    assert check.returncode in (0, 1), check.stderr
    assert "compare them: weightgate eval compare" in check.stdout
    assert latest_by_item(read_evidence(ws))["memory.quant_quality"].values["chosen"] == "nf4"
