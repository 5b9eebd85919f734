"""Phase 1 benchmarking on tiny models: the table, select.benchmark, and select.choice passing only
for a chosen candidate that clears every requirement (or with a recorded relaxation)."""

import json

import pytest
from helpers import add_candidate, rewrite_cases, set_decision, tiny_workspace

from weightgate.core.evaluation.benchmark import render_table, run_benchmark
from weightgate.core.evaluation.checks import requirement_failures
from weightgate.core.gates import compute_report
from weightgate.core.weights.candidates import choose_model

ROW = {"source": "m", "score": 0.95, "p95_latency_ms": 900.0, "tokens_per_s": 40.0, "memory_gib": 1.0,
       "cost_per_1k_tasks": 0.1}


def config(**ceilings) -> dict:
    base = {"p95_latency_ms": 1500, "min_tokens_per_s": 25, "memory_budget_gib": 8, "cost_per_1k_tasks": 0.2}
    return {"requirements": {"quality_threshold": 0.9, "ceilings": {**base, **ceilings}}}


def test_requirement_failures_name_every_miss():
    assert requirement_failures(ROW, config()) == []
    misses = requirement_failures({**ROW, "score": 0.5, "p95_latency_ms": 2000.0, "tokens_per_s": 10.0,
                                   "memory_gib": 9.0, "cost_per_1k_tasks": 0.3}, config())
    assert [m.split()[0] for m in misses] == ["score", "p95", "10.0", "memory", "cost"]
    assert requirement_failures({**ROW, "cost_per_1k_tasks": None}, config()) == [
        "cost unknown: set [settings] price_per_hour (or price_per_1k_tokens)"]
    assert requirement_failures(ROW, config(cost_per_1k_tasks=0)) == []   # 0: no ceiling set
    assert requirement_failures({"source": "x", "error": "GGUF"}, config()) == ["not benchmarked: GGUF"]


@pytest.fixture
def two_candidates(tmp_path, tiny_model_dir):
    from tiny_model import build_tiny_model

    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    second = build_tiny_model(tmp_path / "second", seed=1, num_hidden_layers=3)
    add_candidate(ws, str(tiny_model_dir), 300_000)
    add_candidate(ws, str(second), 400_000)

    def loose(doc):   # timing ceilings a busy CI machine always meets: the verdicts below are about score,
        doc["requirements"]["ceilings"]["p95_latency_ms"] = 60_000   # cost and memory
        doc["requirements"]["ceilings"]["min_tokens_per_s"] = 0.5
    ws.update_config(loose)
    return ws, str(tiny_model_dir), str(second)


def test_benchmark_table_and_the_choice(two_candidates):
    ws, first, second = two_candidates
    report = run_benchmark(ws, latency_requests=2, batch_size=8)
    rows = {row["source"]: row for row in report["rows"]}
    assert list(rows) == [first, second]
    for row in rows.values():
        assert row["cases"] == 24 and row["score"] == 0.0 and row["run"]
        assert row["p50_latency_ms"] > 0 and row["p95_latency_ms"] >= row["p50_latency_ms"]
        assert row["tokens_per_s"] > 0 and row["memory_gib"] > 0
        assert row["cost_per_task"] is None   # no price configured
        assert "score 0.000 < threshold 0.9" in row["failures"]
    assert rows[second]["memory_gib"] > rows[first]["memory_gib"]   # a third layer
    assert "score" in render_table(report) and first[-20:] in render_table(report)
    status = compute_report(ws)
    assert status.item("select.benchmark").status == "pass"
    assert status.item("select.choice").status == "todo"   # nothing chosen yet

    choose_model(ws, first, "smallest")
    choice = compute_report(ws).item("select.choice")
    assert choice.status == "fail" and "score 0.000 < threshold 0.9" in choice.detail
    set_decision(ws, "relaxation", "demo only: accuracy is not the point here")
    choice = compute_report(ws).item("select.choice")
    assert choice.status == "pass" and "relaxed consciously" in choice.detail

    # Clearing every requirement for real: cases every output passes, and a price to cost them.
    ws.update_config(lambda doc: doc["decisions"].remove("relaxation"))
    rewrite_cases(ws, lambda row: {**row, "expected": ".*", "scorer": "regex"})
    stale = compute_report(ws)
    assert stale.item("select.benchmark").status == "stale"
    assert stale.item("select.choice").status == "fail" and "stale" in stale.item("select.choice").detail

    def price(doc):
        doc["settings"]["price_per_hour"] = 2.0
    ws.update_config(price)
    report = run_benchmark(ws, latency_requests=2, batch_size=8)
    row = report["rows"][0]
    assert row["score"] == 1.0 and row["cost_per_task"] == pytest.approx(2.0 * row["seconds_per_task"] / 3600, rel=1e-2)
    choice = compute_report(ws).item("select.choice")
    assert choice.status == "pass" and "clears every requirement" in choice.detail, choice.detail

    # A tighter requirement later: the same benchmark no longer clears it.
    def tight(doc):
        doc["requirements"]["ceilings"]["memory_budget_gib"] = 1e-6
    ws.update_config(tight)
    choice = compute_report(ws).item("select.choice")
    assert choice.status == "fail" and "memory" in choice.detail


def test_a_candidate_that_cannot_run_fails_select_benchmark(two_candidates, tmp_path):
    ws, first, _ = two_candidates
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    add_candidate(ws, str(gguf), 500_000)
    report = run_benchmark(ws, latency_requests=2, limit=3)
    assert [bool(row.get("error")) for row in report["rows"]] == [False, False, True]
    assert "GGUF" in report["rows"][2]["error"]
    assert "evidence" not in report   # --limit: a partial benchmark is no evidence
    report = run_benchmark(ws, latency_requests=2)
    status = compute_report(ws).item("select.benchmark")
    assert status.status == "fail" and "model.gguf" in status.detail
    assert json.loads((ws.root / report["report"]).read_text())["rows"][2]["failures"][0].startswith("not benchmarked")
