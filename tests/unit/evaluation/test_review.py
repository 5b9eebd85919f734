"""core.evaluation.review: blind sessions, answers saved at once, resume after a crash, the reveal, evidence."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from compare_helpers import case, make_run, two_runs

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.core.evaluation.review import (
    complete_review,
    latest_open_review,
    list_reviews,
    open_review,
    reveal,
    start_review,
    winner_of,
)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


def ten_case_runs(ws: Workspace):
    """Ten cases whose outputs all differ; B is right on the even ones, A on the odd ones."""
    cases_a = [case(f"c{i}", f"A says {i}", i % 2 == 1) for i in range(10)]
    cases_b = [case(f"c{i}", f"B says {i}", i % 2 == 0) for i in range(10)]
    a = make_run(ws, "run-a", cases_a, name="base", created=1, baseline=True)
    b = make_run(ws, "run-b", cases_b, name="tuned", created=2)
    return a, b


def answer_for(session, index: int, winner: str) -> str:
    """The key a reviewer would press (about the LEFT output) to make `winner` win."""
    left = session.cases[index].left
    if winner == "tie":
        return "tie"
    return "better" if left == winner else "worse"


def test_winner_conversion():
    assert winner_of("better", "a") == "a" and winner_of("better", "b") == "b"
    assert winner_of("worse", "a") == "b" and winner_of("worse", "b") == "a"
    assert winner_of("tie", "a") == "tie"
    with pytest.raises(ValueError):
        winner_of("meh", "a")


def test_session_only_shows_differing_cases_with_a_seeded_side_and_no_names(ws):
    a, b = two_runs(ws)
    session = start_review(ws, a.id, b.id, reviewer="ana", seed=7)
    assert [c.id for c in session.cases] == ["c001", "c002", "c003", "c004"]
    assert len(session.identical) == 8
    again = start_review(ws, a.id, b.id, reviewer="ana", seed=7)
    assert [c.left for c in again.cases] == [c.left for c in session.cases]
    stored = json.loads((session.dir / "session.json").read_text())
    assert stored["run_a"] == a.id and stored["run_b"] == b.id and stored["seed"] == 7
    view = session.view(0)
    assert view.progress == "case 1 of 4"
    assert {view.left, view.right} == {"2021-03-04", "March 4th 2021"}
    shown = json.dumps(asdict(view))
    for secret in (a.id, b.id, a.name, b.name, "baseline", "lora"):
        assert secret not in shown


def test_left_and_right_follow_the_session_order(ws):
    a, b = ten_case_runs(ws)
    session = start_review(ws, a, b, seed=3)
    lefts = {c.left for c in session.cases}
    assert lefts == {"a", "b"}  # ten cases with seed 3: both sides appear on the left
    for index, rc in enumerate(session.cases):
        view = session.view(index)
        assert view.left.startswith("A says" if rc.left == "a" else "B says")


def test_every_answer_is_on_disk_when_answer_returns(ws):
    a, b = ten_case_runs(ws)
    session = start_review(ws, a, b, seed=1)
    session.answer("c0", "better")
    lines = session.answers_path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["case"] == "c0"
    with pytest.raises(ValueError):
        session.answer("c1", "maybe")
    with pytest.raises(InputError):
        session.answer("nope", "tie")


def test_interrupted_review_resumes_at_case_4_and_counts_each_case_once(ws):
    a, b = ten_case_runs(ws)
    session = start_review(ws, a.id, b.id, reviewer="ana", seed=11)
    review_id = session.id
    for index in range(3):
        assert session.next_index() == index
        session.answer(session.cases[index].id, answer_for(session, index, "b"))
    # A crash while the 4th answer was being written: half a line, no newline.
    with open(session.answers_path, "ab") as handle:
        handle.write(b'{"case": "c3", "left": "bet')
    del session

    resumed = open_review(ws, review_id)
    assert resumed.answered == 3
    assert resumed.next_index() == 3
    assert resumed.view(resumed.next_index()).progress == "case 4 of 10"
    assert latest_open_review(ws).id == review_id
    # Writing the next answer cuts the torn tail first: the file stays one JSON object a line.
    resumed.answer("c3", answer_for(resumed, 3, "a"))
    lines = resumed.answers_path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    # Case 2 answered again after reopening: the last answer counts, once.
    resumed.answer("c2", answer_for(resumed, 2, "tie"))
    for index in range(4, 10):
        resumed.answer(resumed.cases[index].id, answer_for(resumed, index, "b" if index < 8 else "tie"))
    assert resumed.done and resumed.next_index() is None

    final = open_review(ws, review_id)
    result = reveal(final)
    assert result.answered == 10 == result.total
    assert (result.wins_b, result.wins_a, result.ties) == (2 + 4, 1, 1 + 2)
    assert result.wins_a + result.wins_b + result.ties == 10


def test_reveal_win_rate_counts_ties_half_with_a_wilson_interval(ws):
    a, b = ten_case_runs(ws)
    session = start_review(ws, a, b, seed=5)
    plan = ["b"] * 6 + ["a"] * 2 + ["tie"] * 2
    with pytest.raises(InputError):
        reveal(session)
    for index, winner in enumerate(plan):
        session.answer(session.cases[index].id, answer_for(session, index, winner))
    result = reveal(session)
    assert (result.wins_b, result.wins_a, result.ties) == (6, 2, 2)
    assert result.win_rate_b == pytest.approx(0.7)       # (6 + 2/2) / 10
    assert result.ci_low == pytest.approx(0.3968, abs=1e-4) and result.ci_high == pytest.approx(0.8922, abs=1e-4)
    assert result.sign_test_p == pytest.approx(2 * (1 + 8 + 28) / 256)  # 6 vs 2, ties dropped
    assert result.run_a == {"id": "run-a", "name": "base"} and result.run_b == {"id": "run-b", "name": "tuned"}
    assert "ties count half" in result.text() and "A = run-a (base)" in result.text()
    assert result.left_won == sum(1 for i, w in enumerate(plan) if w != "tie" and session.cases[i].left == w)


def test_partial_reveal_is_marked_incomplete(ws):
    a, b = ten_case_runs(ws)
    session = start_review(ws, a, b, seed=5)
    session.answer(session.cases[0].id, "tie")
    result = reveal(session, partial=True)
    assert not result.complete and result.answered == 1 and result.win_rate_b == 0.5


def test_complete_review_records_evidence_once(ws):
    from weightgate.core.engine.checklist import get_item
    from weightgate.core.engine.evidence import read_evidence
    from weightgate.core.engine.fingerprints import Fingerprints

    a, b = ten_case_runs(ws)
    session = start_review(ws, a, b, reviewer="ana", seed=2)
    for index in range(10):
        session.answer(session.cases[index].id, answer_for(session, index, "b"))
    result = complete_review(ws, session)
    complete_review(ws, open_review(ws, session.id))  # reopening a finished review records nothing new
    records = [r for r in read_evidence(ws) if r.item == "eval.human_review"]
    assert len(records) == 1
    record = records[0]
    assert record.status == "pass" and record.values["win_rate_b"] == 1.0 == result.win_rate_b
    assert record.values["review_id"] == session.id and record.values["run_b"] == "run-b"
    # Run B's identity recorded model/precision/adapter digests other than today's: the
    # evidence says so and stays stale until the workspace matches what was reviewed.
    today = Fingerprints(ws).of(get_item("eval.human_review").inputs)
    assert record.fingerprints["model"] == "sha256:model" != today["model"]
    assert "model" in record.values["stale_inputs"]
    assert json.loads((session.dir / "result.json").read_text())["wins_b"] == 10


def test_evidence_is_fresh_when_run_b_matches_todays_inputs(ws):
    from weightgate.core.engine.checklist import get_item
    from weightgate.core.engine.evidence import read_evidence
    from weightgate.core.engine.fingerprints import Fingerprints

    item = get_item("eval.human_review")
    today = Fingerprints(ws).of(item.inputs)
    components = {"model": today["model"], "precision": today["precision"], "adapter": today["adapter"],
                  "evalset": today["evalset.task"]}
    a = make_run(ws, "run-a", [case("x", "one", True)], created=1, components=components)
    b = make_run(ws, "run-b", [case("x", "two", True)], created=2, components=components)
    session = start_review(ws, a, b, seed=0)
    session.answer("x", "tie")
    complete_review(ws, session)
    record = [r for r in read_evidence(ws) if r.item == item.id][-1]
    assert record.fingerprints == today and record.values["stale_inputs"] == []


def test_list_reviews_and_latest_open(ws):
    a, b = ten_case_runs(ws)
    first = start_review(ws, a, b, seed=1)
    for index in range(10):
        first.answer(first.cases[index].id, "tie")
    second = start_review(ws, a, b, seed=2)
    infos = list_reviews(ws)
    assert [i.id for i in infos] == [first.id, second.id]
    assert infos[0].done and not infos[1].done
    assert latest_open_review(ws).id == second.id


def test_a_review_needs_two_runs_with_differences(ws):
    a = make_run(ws, "run-a", [case("x", "same", True)], created=1)
    b = make_run(ws, "run-b", [case("x", "same", True)], created=2)
    with pytest.raises(InputError, match="nothing to review"):
        start_review(ws, a, b)
    with pytest.raises(InputError, match="two different runs"):
        start_review(ws, a, a)


def test_reviews_text_reveals_only_finished_reviews(ws):
    from weightgate.core.evaluation.review import render_reviews_text

    assert "no reviews yet" in render_reviews_text(ws)
    a, b = ten_case_runs(ws)
    done = start_review(ws, a, b, reviewer="ana", seed=1)
    for index in range(10):
        done.answer(done.cases[index].id, answer_for(done, index, "b"))
    open_one = start_review(ws, a, b, reviewer="bo", seed=2)
    open_one.answer(open_one.cases[0].id, "tie")
    text = render_reviews_text(ws)
    finished, unfinished = text.split("\n\n")
    assert done.id in finished and "win rate of B over A: 100.0%" in finished and "A = run-a (base)" in finished
    assert open_one.id in unfinished and "1 of 10 answered" in unfinished and "run-a" not in unfinished
