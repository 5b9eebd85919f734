"""No repeated work: an eval, determinism, latency or benchmark request whose identity matches a
complete run reuses it (nothing loaded or generated, "reused run X", evidence recorded as if it
had just run) unless asked to re-run; latency samples until its p95 is stable, in bounded time."""

import random

import pytest
from helpers import add_candidate, set_decision, tiny_workspace

from weightgate.core.engine import timers
from weightgate.core.engine.jobs import follow_job, read_status, start_job
from weightgate.core.evaluation.benchmark import run_benchmark
from weightgate.core.evaluation.determinism import check_determinism
from weightgate.core.evaluation.latency import SamplingRule, measure_latency, p95_interval, percentile
from weightgate.core.evaluation.runner import run_eval
from weightgate.core.evaluation.runs import list_runs, read_run
from weightgate.core.gates import compute_report
from weightgate.core.memory import loading


def test_eval_reuses_a_complete_run_and_its_evidence_holds(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    first = run_eval(ws, "task", batch_size=8)
    assert first["reused"] is None and first["baseline"]["evidence"] == "eval.baseline"
    calls, said = dict(loading.CALLS), []
    again = run_eval(ws, "task", batch_size=8, log=said.append)
    assert loading.CALLS == calls                       # nothing loaded, nothing generated
    assert again["reused"] == again["run"] == first["run"] and again["summary"] == first["summary"]
    assert said[0].startswith(f"reused run {first['run']}")
    assert len(list_runs(ws)) == 1 and read_run(ws, first["run"]).extra["reused"][0]["kind"] == "eval"
    # Another precision, then back: the old run is reused and counts as the newest, so the
    # phase-4 items hold again exactly as after a fresh run.
    set_decision(ws, "precision", "bf16")
    other = run_eval(ws, "task", batch_size=8)
    assert other["reused"] is None and other["run"] != first["run"]
    set_decision(ws, "precision", "fp32")
    fp32 = run_eval(ws, "task", batch_size=8)
    assert fp32["reused"] is None   # "fp32" is another decision than none: another identity
    set_decision(ws, "precision", "bf16")
    back = run_eval(ws, "task", batch_size=8, baseline=True)
    assert back["reused"] == other["run"] and back["baseline"]["evidence"] == "eval.baseline"
    report = compute_report(ws)
    assert report.item("eval.fresh").status == "pass" and other["run"] in report.item("eval.fresh").detail
    assert report.item("eval.baseline").status == "pass"
    # rerun: a new run even though one with this identity exists.
    fresh = run_eval(ws, "task", batch_size=8, rerun=True)
    assert fresh["reused"] is None and fresh["run"] not in (first["run"], other["run"], fp32["run"])
    assert read_run(ws, fresh["run"]).summary["tokens_out"] == 24 * 4


def test_the_eval_job_says_reused_and_reports_its_timing(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)

    def job(params):
        handle = start_job(ws.jobs_dir, "eval", params, workspace=ws.root)
        events = list(follow_job(handle.job_dir, poll_s=0.05))
        assert read_status(handle.job_dir).state == "succeeded"
        return events, events[-1].payload["data"]

    _, made = job({"batch_size": 8})
    timing = made["timing"]
    assert timing["generating_s"] > 0 and timing["loading_s"] > 0 and timing["hashing_s"] > 0
    assert sum(timing[f"{c}_s"] for c in timers.CATEGORIES) <= timing["wall_s"]
    events, reused = job({"batch_size": 8})
    assert reused["reused"] == made["run"]
    assert any(e.kind == "log" and e.payload["message"].startswith(f"reused run {made['run']}") for e in events)
    assert reused["timing"]["generating_s"] == 0 and reused["timing"]["loading_s"] == 0
    _, rerun = job({"batch_size": 8, "rerun": True})
    assert rerun["reused"] is None and rerun["run"] != made["run"] and rerun["timing"]["generating_s"] > 0


def test_timers_count_exclusive_time_per_category():
    before = timers.totals()
    with timers.timed(timers.LOADING):
        with timers.timed(timers.HASHING):
            sum(range(200_000))
        sum(range(200_000))
    spent = timers.since(before)
    assert spent["hashing"] > 0 and spent["loading"] > 0 and spent["generating"] == spent["training"] == 0
    with pytest.raises(ValueError, match="unknown timing category"):
        with timers.timed("thinking"):
            pass


def test_p95_interval_is_seeded_and_narrows_with_more_requests():
    rng = random.Random(7)
    few = [1000 + rng.gauss(0, 50) for _ in range(10)]
    many = few + [1000 + rng.gauss(0, 50) for _ in range(390)]
    assert p95_interval(few) == p95_interval(few)
    low, high = p95_interval(many)
    assert low <= percentile(many, 95) <= high
    assert high - low < (p95_interval(few)[1] - p95_interval(few)[0])


def test_latency_sampling_rule_and_reuse(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir, header={"max_new_tokens": 3})

    def ceiling(ms):
        def change(doc):
            doc["requirements"]["ceilings"]["p95_latency_ms"] = ms
            doc["requirements"]["ceilings"]["min_tokens_per_s"] = 0.01
        return change
    ws.update_config(ceiling(60_000))
    loose = SamplingRule(min_requests=6, max_requests=40, ci_pct=1000.0, time_cap_s=60)
    result = measure_latency(ws, batch_sizes=(1, 2), rule=loose)
    rows = {row["batch_size"]: row for row in result["batch_sizes"]}
    assert [rows[1]["requests"], rows[2]["requests"]] == [6, 6] and {r["stop"] for r in rows.values()} == {"stable"}
    for row in rows.values():
        low, high = row["p95_ci_ms"]
        assert low <= row["latency_ms"]["p95"] <= high + 1e-6 and row["p95_ci_pct"] >= 0
    status = compute_report(ws).item("eval.latency")
    assert status.status == "pass" and "n=6" in status.detail
    # An interval no sample meets: the request cap, or the time cap right after the minimum.
    capped = measure_latency(ws, batch_sizes=(2,), rule=SamplingRule(min_requests=4, max_requests=10, ci_pct=1e-9,
                                                                      time_cap_s=600), record=False)
    assert capped["batch_sizes"][0]["requests"] == 10 and capped["batch_sizes"][0]["stop"] == "max requests"
    timed_out = measure_latency(ws, batch_sizes=(1,), rule=SamplingRule(min_requests=5, max_requests=200,
                                                                         ci_pct=1e-9, time_cap_s=0), record=False)
    assert timed_out["batch_sizes"][0]["requests"] == 5 and timed_out["batch_sizes"][0]["stop"] == "time cap"
    # The same request again: reused, checked against today's ceilings, recorded.
    ws.update_config(ceiling(0.001))
    calls = dict(loading.CALLS)
    again = measure_latency(ws, batch_sizes=(1, 2), rule=loose)
    assert loading.CALLS == calls and again["reused"] and again["batch_sizes"] == result["batch_sizes"]
    assert not again["within"] and again["violations"]
    status = compute_report(ws).item("eval.latency")
    assert status.status == "fail" and f"reused {again['reused']}" in status.detail
    assert measure_latency(ws, batch_sizes=(1, 2), rule=loose, rerun=True)["reused"] is None


def test_determinism_reuses_a_saved_check(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    first = check_determinism(ws, repeats=2, batch_size=8)
    assert first["identical"] and first["reused"] is None
    calls = dict(loading.CALLS)
    again = check_determinism(ws, repeats=2, batch_size=8)
    assert loading.CALLS == calls and again["reused"] and again["report"] == first["report"]
    status = compute_report(ws).item("eval.determinism")
    assert status.status == "pass" and f"reused {again['reused']}" in status.detail
    assert check_determinism(ws, repeats=3, batch_size=8)["reused"] is None   # another key
    assert check_determinism(ws, repeats=2, batch_size=8, rerun=True)["reused"] is None


def test_benchmark_batches_reuses_the_eval_run_then_its_rows(tmp_path, tiny_model_dir):
    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    add_candidate(ws, str(tiny_model_dir), 300_000)
    made = run_eval(ws, "task", batch_size=8)
    calls = loading.CALLS["generate"]
    said = []
    first = run_benchmark(ws, latency_requests=2, batch_size=8, log=said.append)
    row = first["rows"][0]
    # The score comes from the eval run with this identity; only the latency was generated
    # (two warm-ups and two single requests).
    assert row["run"] == made["run"] and row["reused"] is None and row["latency_requests"] == 2
    assert loading.CALLS["generate"] - calls == 4 and any(f"reused run {made['run']}" in s for s in said)
    calls = dict(loading.CALLS)
    second = run_benchmark(ws, latency_requests=2, batch_size=8)
    assert loading.CALLS == calls and second["rows"][0]["reused"]
    assert compute_report(ws).item("select.benchmark").status == "pass"
    # A fresh benchmark generates its eval in batches of the eval batch size: 24 cases, 3 calls.
    calls = loading.CALLS["generate"]
    third = run_benchmark(ws, latency_requests=2, batch_size=8, rerun=True)
    assert third["rows"][0]["run"] != made["run"] and loading.CALLS["generate"] - calls == 3 + 4
