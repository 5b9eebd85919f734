"""core.evaluation.compare and core.evaluation.stats: alignment, order, summaries, statistics, warnings, diff, text."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from compare_helpers import case, make_run, two_runs

from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.core.evaluation import stats
from weightgate.core.evaluation.compare import (
    CHANGED,
    IMPROVEMENT,
    REGRESSION,
    UNCHANGED,
    compare_command,
    compare_runs,
    default_pair,
    render_comparison_text,
)
from weightgate.core.evaluation.word_diff import DELETE, EQUAL, INSERT, marked_text, side, word_diff

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


def test_regressions_come_first_then_improvements_then_changed_then_unchanged(ws):
    a, b = two_runs(ws)
    comparison = compare_runs(a, b)
    statuses = [c.status for c in comparison.cases]
    assert statuses[:4] == [REGRESSION, REGRESSION, IMPROVEMENT, CHANGED]
    assert set(statuses[4:]) == {UNCHANGED}
    assert [c.id for c in comparison.cases[:4]] == ["c001", "c004", "c002", "c003"]
    assert comparison.regressions == 2
    assert comparison.overall.improvements == 1 and comparison.overall.changed == 1
    assert comparison.overall.unchanged == 8


def test_within_a_group_the_biggest_drop_comes_first(ws):
    a = make_run(ws, "a", [case("x", "one", True, score=1.0), case("y", "two", True, score=1.0),
                           case("z", "same", False, score=0.2)], created=1)
    b = make_run(ws, "b", [case("x", "uno", False, score=0.6), case("y", "dos", False, score=0.0),
                           case("z", "other", False, score=0.1)], created=2)
    comparison = compare_runs(a, b)
    assert [(c.id, c.status) for c in comparison.cases] == [("y", REGRESSION), ("x", REGRESSION), ("z", CHANGED)]


def test_cases_in_one_run_only_are_listed_apart_and_left_out(ws):
    a = make_run(ws, "a", [case("x", "1", True), case("only-a", "1", True)], created=1)
    b = make_run(ws, "b", [case("x", "1", True), case("only-b", "1", False)], created=2)
    comparison = compare_runs(a, b)
    assert [c.id for c in comparison.cases] == ["x"]
    assert comparison.only_in_a == ["only-a"] and comparison.only_in_b == ["only-b"]
    assert comparison.overall.cases == 1
    assert any("only in A" in w for w in comparison.warnings)


def test_summary_by_tag_reports_hard_and_edge_apart(ws):
    a, b = two_runs(ws)
    comparison = compare_runs(a, b)
    hard, edge = comparison.focus["hard"], comparison.focus["edge"]
    # hard: c000 c003 c006 c009; edge: c000 c004 c008
    assert (hard.cases, hard.passed_a, hard.passed_b, hard.regressions, hard.changed) == (4, 3, 3, 0, 1)
    assert (edge.cases, edge.passed_a, edge.passed_b, edge.regressions) == (3, 3, 2, 1)
    assert edge.score_a == 1.0 and math.isclose(edge.score_b, 2 / 3)
    assert "hard" not in comparison.by_tag and "edge" not in comparison.by_tag
    assert comparison.by_tag["dates"].cases == 12
    text = render_comparison_text(comparison)
    assert "\nhard " in text and "\nedge " in text


def test_focus_tags_are_always_reported_even_when_absent(ws):
    a = make_run(ws, "a", [case("x", "1", True)], created=1)
    b = make_run(ws, "b", [case("x", "1", True)], created=2)
    comparison = compare_runs(a, b)
    assert comparison.focus["hard"].cases == 0 and comparison.focus["edge"].cases == 0
    assert "hard         no cases" in render_comparison_text(comparison)


def test_mcnemar_exact_matches_a_hand_computed_value(ws):
    # 8 pass->fail and 1 fail->pass: p = 2 * (C(9,0) + C(9,1)) / 2^9 = 20 / 512 = 0.0390625
    cases_a, cases_b = [], []
    for i in range(20):
        regress, improve = i < 8, i == 8
        cases_a.append(case(f"c{i}", "a", not improve))
        cases_b.append(case(f"c{i}", "b" if (regress or improve) else "a", improve or not regress))
    comparison = compare_runs(make_run(ws, "a", cases_a, created=1), make_run(ws, "b", cases_b, created=2))
    sig = comparison.significance
    assert sig.discordant == (8, 1)
    assert sig.mcnemar_p == pytest.approx(20 / 512, abs=1e-12)
    assert comparison.regressions == 8
    assert "p = 0.039" in render_comparison_text(comparison)


def test_exact_tests_against_known_values():
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert stats.mcnemar_exact(3, 3) == 1.0
    # Signed rank, all five differences positive: p = 2 / 2^5.
    result = stats.wilcoxon_signed_rank([0.1, 0.2, 0.3, 0.4, 0.5])
    assert result.exact and result.n == 5 and result.w_plus == 15
    assert result.p_value == pytest.approx(0.0625)
    # Zeros are dropped; ties get midranks: |d| = 1,1,2 -> ranks 1.5,1.5,3; W+ = 3 (the 2) + 1.5.
    result = stats.wilcoxon_signed_rank([0, 1, -1, 2])
    assert result.n == 3 and result.w_plus == 4.5
    # 8 sign patterns of ranks {1.5, 1.5, 3}: |2W+ - 6| >= 3 for every pattern but none... count by hand:
    # sums 0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6 -> |sum - 3| >= 1.5: all except the two 3's -> 6/8.
    assert result.p_value == pytest.approx(6 / 8)
    assert stats.wilcoxon_signed_rank([0.0, 0.0]).p_value == 1.0


def test_signed_rank_normal_approximation_agrees_with_exact_for_a_large_sample():
    diffs = [((i * 37) % 11 - 4.5) / 10 for i in range(60)]
    exact = stats.wilcoxon_signed_rank(diffs)
    old = stats.EXACT_MAX
    try:
        stats.EXACT_MAX = 10
        approx = stats.wilcoxon_signed_rank(diffs)
    finally:
        stats.EXACT_MAX = old
    assert exact.exact and not approx.exact
    assert approx.p_value == pytest.approx(exact.p_value, abs=0.02)


def test_bootstrap_interval_is_seeded_and_covers_the_mean(ws):
    diffs = [0.5, -0.25, 0.0, 1.0, 0.25, 0.0, 0.5, -0.5]
    first, second = stats.bootstrap_mean_ci(diffs), stats.bootstrap_mean_ci(diffs)
    assert first == second
    mean = sum(diffs) / len(diffs)
    assert first.low < mean < first.high
    assert stats.bootstrap_mean_ci([]) is None
    assert stats.bootstrap_mean_ci([0.0, 0.0]) == stats.Interval(0.0, 0.0)


def test_wilson_interval():
    interval = stats.wilson_interval(7, 10)
    assert interval.low == pytest.approx(0.3968, abs=1e-4) and interval.high == pytest.approx(0.8922, abs=1e-4)
    assert stats.wilson_interval(0, 0) is None
    assert stats.wilson_interval(10, 10).high == 1.0


def test_continuous_scores_use_the_signed_rank_test_and_show_a_ci(ws):
    a = make_run(ws, "a", [case(f"c{i}", "x", True, score=0.5) for i in range(8)], created=1)
    b = make_run(ws, "b", [case(f"c{i}", "y", True, score=0.5 + 0.05 * (i + 1)) for i in range(8)], created=2)
    sig = compare_runs(a, b).significance
    assert sig.mcnemar_p == 1.0  # no pass/fail flip
    assert sig.wilcoxon_n == 8 and sig.wilcoxon_p == pytest.approx(2 / 256)
    assert sig.score_delta == pytest.approx(0.225)
    assert 0 < sig.score_ci.low <= sig.score_delta <= sig.score_ci.high


def test_warning_when_eval_set_digests_differ(ws):
    a = make_run(ws, "a", [case("x", "1", True)], created=1, evalset="sha256:" + "1" * 64)
    b = make_run(ws, "b", [case("x", "1", True)], created=2, evalset="sha256:" + "2" * 64)
    comparison = compare_runs(a, b)
    warning = next(w for w in comparison.warnings if "eval-set digests" in w)
    assert "111111111111" in warning and "222222222222" in warning
    assert "WARNING: different eval-set digests" in render_comparison_text(comparison)
    same = compare_runs(a, make_run(ws, "c", [case("x", "1", True)], created=3, evalset="sha256:" + "1" * 64))
    assert not any("digest" in w for w in same.warnings)


def test_warning_when_sets_differ(ws):
    a = make_run(ws, "a", [case("x", "1", True)], created=1)
    b = make_run(ws, "b", [case("x", "1", True)], created=2, set_name="general", evalset="sha256:" + "9" * 64)
    warnings = compare_runs(a, b).warnings
    assert any("different eval sets" in w for w in warnings)


def test_word_diff_segments_and_markers():
    segments = word_diff("The date is 2021-03-04.", "The date is 2021-3-4 today.")
    assert segments[0] == (EQUAL, "The date is 2021-")
    assert (DELETE, "03") in segments and (INSERT, "3") in segments
    assert marked_text(segments) == "The date is 2021-[-03-]{+3+}-[-04-]{+4 today+}."
    # Each side's text comes back exactly from its segments.
    assert "".join(t for _, t in side(segments, "a")) == "The date is 2021-03-04."
    assert "".join(t for _, t in side(segments, "b")) == "The date is 2021-3-4 today."
    assert marked_text(segments, "a") == "The date is 2021-[-03-]-[-04-]."
    # A whitespace gap inside a replacement joins it: one edit, not two.
    assert word_diff("a b", "c d") == [(DELETE, "a b"), (INSERT, "c d")]
    assert word_diff("hello world", "hello brave new world") == [
        (EQUAL, "hello "), (INSERT, "brave new "), (EQUAL, "world")]
    assert word_diff("", "") == []
    assert word_diff("x", "") == [(DELETE, "x")]


def test_case_diffs_carry_segments_and_json_round_trips(ws):
    a, b = two_runs(ws)
    comparison = compare_runs(a, b)
    regression = comparison.case("c001")
    assert regression.output_a == "2021-03-04" and regression.output_b == "March 4th 2021"
    assert "".join(t for op, t in regression.segments if op != INSERT) == regression.output_a
    data = json.loads(json.dumps(comparison.to_dict()))
    assert data["regressions"] == 2
    assert data["cases"][0]["id"] == "c001" and data["cases"][0]["segments"][0][0] in (EQUAL, DELETE, INSERT)
    assert data["focus"]["hard"]["cases"] == 4
    assert data["significance"]["score_ci"]["level"] == 0.95
    assert data["identity_changes"] == ["adapter"]


def test_runs_by_id_prefix_and_default_pair(ws):
    a, b = two_runs(ws)
    make_run(ws, "20240103-000000-general-cccc", [case("g", "1", True)], set_name="general")
    comparison = compare_runs("20240101", "20240102-000000-task", ws=ws)
    assert (comparison.run_a.id, comparison.run_b.id) == (a.id, b.id)
    # The newest run is a general one: its pair is from its own set (none earlier: A is None).
    first, second = default_pair(ws)
    assert first is None and second.id == "20240103-000000-general-cccc"


def test_default_pair_is_baseline_vs_latest(ws):
    a, b = two_runs(ws)
    make_run(ws, "20240101-120000-task-mid0", [case("c000", "1", True)], created=a.created + 1)
    first, second = default_pair(ws)
    assert (first.id, second.id) == (a.id, b.id)


def test_text_report_lists_changed_cases_with_markers(ws):
    a, b = two_runs(ws)
    text = render_comparison_text(compare_runs(a, b))
    first_case = text.index("▼ regression  c001")
    assert first_case < text.index("▲ improvement c002") < text.index("≠ changed     c003")
    assert "{+March 4th +}" in text
    assert "c005" not in text  # unchanged cases are left out by default
    assert "c005" in render_comparison_text(compare_runs(a, b), show_unchanged=True)


def test_compare_and_review_import_neither_textual_rich_nor_torch():
    code = ("import sys, weightgate.core.evaluation.compare, weightgate.core.evaluation.review, weightgate.core.evaluation.stats\n"
            "bad = [m for m in ('textual', 'rich', 'torch', 'transformers') if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_compare_command_text_json_and_fail_on_regression(ws):
    a, b = two_runs(ws)
    text, code = compare_command(ws)  # default: baseline vs latest
    assert code == 0 and text.startswith(f"A  {a.id}")
    text, code = compare_command(ws, "baseline", "latest", fail_on_regression=True)
    assert code == 1 and "2 regression(s)" in text
    text, code = compare_command(ws, b.id[:12], a.id[:12], as_json=True, fail_on_regression=True)
    data = json.loads(text)
    assert data["run_a"]["id"] == b.id and data["regressions"] == 1 and code == 1


def test_compare_command_without_runs_says_what_to_do(ws):
    from weightgate.core.engine.errors import InputError

    with pytest.raises(InputError, match="no run to use as A"):
        compare_command(ws)
