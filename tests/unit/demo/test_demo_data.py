"""The demo's training data generator: the same bytes for a seed, every training format used, and
held-out date formats (scripts/demo_heldout.jsonl) that no training request contains."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

from weightgate.core.demo.data import (
    COUNT,
    FORMATS,
    HELDOUT_FORMATS,
    SEED,
    date_format_counts,
    demo_examples,
    demo_train_lines,
    heldout_cases,
    heldout_lines,
)
from weightgate.core.demo.evalsets import DATE_CASES

HELDOUT_FILE = Path(__file__).resolve().parents[3] / "scripts" / "demo_heldout.jsonl"


def _requests(examples: list[dict]) -> list[str]:
    return [e["messages"][0]["content"] for e in examples]


def test_same_seed_same_bytes_other_seed_other_data() -> None:
    assert demo_train_lines() == demo_train_lines(COUNT, SEED)
    assert "\n".join(demo_train_lines(seed=SEED + 1)) != "\n".join(demo_train_lines())
    assert len(demo_examples(plant=False)) == COUNT


def test_every_training_format_is_used() -> None:
    counts = date_format_counts()
    assert set(counts) == {name for name, *_ in FORMATS} | {"named_day"}
    assert min(counts.values()) >= 1
    assert sum(counts.values()) == sum(1 for e in demo_examples(plant=False) if e["tags"] != ["general"])


def test_heldout_formats_are_absent_from_training_and_the_eval_set() -> None:
    patterns = {name: re.compile(pattern) for name, _, pattern in HELDOUT_FORMATS}
    training = _requests(demo_examples())
    found = [(name, text[:60]) for text in training for name, pattern in patterns.items() if pattern.search(text)]
    assert not found, found
    eval_written = [written for _, written, _, _ in DATE_CASES]
    assert not [w for w in eval_written for p in patterns.values() if p.search(w)]


def test_heldout_cases_are_their_format_with_right_answers_on_unseen_dates() -> None:
    patterns = {name: re.compile(pattern) for name, _, pattern in HELDOUT_FORMATS}
    cases = heldout_cases()
    assert Counter(name for _, name, _, _ in cases) == {name: 6 for name in patterns}
    seen_dates = {e["messages"][-1]["content"] for e in demo_examples()} | {a for _, _, a, _ in DATE_CASES}
    for case_id, name, written, answer in cases:
        assert patterns[name].search(written), (case_id, written)
        assert answer not in seen_dates, case_id
        date = dt.date.fromisoformat(answer)
        assert str(date.year) in written and (str(date.day) in written or name.endswith(("words", "word"))), written
    assert len({written for _, _, written, _ in cases}) == len(cases)


def test_committed_heldout_file_is_the_generators() -> None:
    """scripts/demo_heldout.py --write regenerates it; a change of the data must be committed."""
    assert HELDOUT_FILE.read_text(encoding="utf-8") == "\n".join(heldout_lines()) + "\n"
    rows = [json.loads(line) for line in HELDOUT_FILE.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"_set": {"max_new_tokens": 16}}
    assert all(row["scorer"] == "exact" for row in rows[1:])
