"""The demo's eval sets and training data, as `weightgate demo` writes them: sizes and tags the
issue asks for, exact scoring of ISO dates, and training data that never contains an eval date."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from core.demo import DATE_CASES, create_demo_workspace
from core.demo_data import GENERAL_REPLAY, PLANTED, demo_examples
from core.evalsets import load_evalset
from core.scoring import score_output


def test_demo_eval_sets_have_the_cases_and_tags_asked_for(tmp_path: Path) -> None:
    ws, created = create_demo_workspace(tmp_path / "demo")
    assert created
    task = load_evalset(ws.evals_dir / "task.jsonl")
    general = load_evalset(ws.evals_dir / "general.jsonl")
    assert task.ok and general.ok, task.problems + general.problems
    assert len(task.cases) >= 30 and len(general.cases) >= 20
    tags = task.tag_counts()
    assert tags.get("hard", 0) >= 5 and tags.get("edge", 0) >= 5
    assert task.options.max_new_tokens == 16 and general.options.max_new_tokens == 32
    assert all(case.expected and dt.date.fromisoformat(case.expected[0]) for case in task.cases)


def test_demo_task_cases_pass_only_on_the_exact_iso_date(tmp_path: Path) -> None:
    ws, _ = create_demo_workspace(tmp_path / "demo")
    row = json.loads((ws.evals_dir / "task.jsonl").read_text().splitlines()[1])
    assert score_output(row["scorer"], "2021-03-03", [row["expected"]], {}).passed
    for near_miss in ("2021/03/03", "2021 03 03", "2021-3-3", "03-03-2021", "The date is 2021-03-03."):
        assert not score_output(row["scorer"], near_miss, [row["expected"]], {}).passed, near_miss


def test_demo_training_data_sizes_mix_and_no_eval_dates() -> None:
    examples = demo_examples()
    assert 300 <= len(examples) <= 500
    eval_dates = {answer for _, _, answer, _ in DATE_CASES}
    answers = [e["messages"][1]["content"] for e in examples]
    assert not eval_dates & set(answers)
    tags = [tag for e in examples for tag in e["tags"]]
    assert tags.count("general") == len(GENERAL_REPLAY) and len(GENERAL_REPLAY) >= 0.1 * len(examples)
    assert {"common", "edge", "hard"} <= set(tags)
    ids = {e["id"] for e in examples}
    planted = PLANTED["exact_duplicates"] + PLANTED["near_duplicates"] + list(PLANTED["pii"]) + PLANTED["over_long"]
    assert set(planted) <= ids
    # The copies the planted duplicates are made of are dates, not general replay.
    by_id = {e["id"]: e for e in examples}
    assert all(by_id[f"demo-00{n}0"]["tags"] != ["general"] for n in (1, 2, 3, 4))
