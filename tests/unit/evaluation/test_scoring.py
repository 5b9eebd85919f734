"""Scorers, eval-set validation (line-numbered errors, the _set header) and the run format.
Torch-free and fast."""

import json

import pytest

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.evaluation import evalsets, scoring
from weightgate.core.evaluation.evalsets import load_evalset
from weightgate.core.evaluation.runs import (
    ANY,
    COMPLETE,
    CaseResult,
    Run,
    baseline_run,
    find_run,
    list_runs,
    new_run_id,
    read_run,
    set_baseline,
    write_run,
)
from weightgate.core.evaluation.scoring import schema_errors, score_output


def score(scorer, output, expected, options=None):
    result = score_output(scorer, output, expected if isinstance(expected, list) else [expected], options)
    assert 0.0 <= result.score <= 1.0
    return result


def test_every_declared_scorer_is_implemented():
    assert set(evalsets.SCORERS) == set(scoring.SCORERS)


def test_exact_and_normalized():
    assert score("exact", " 2021-03-03\n", "2021-03-03").passed
    assert not score("exact", "2021-03-03.", "2021-03-03").passed
    assert score("normalized", "  Tokyo. ", "tokyo").passed
    assert score("normalized", "The   ANSWER:  yes!", "the answer yes").passed
    assert not score("normalized", "Kyoto", "Tokyo").passed
    assert score("exact", "b", ["a", "b"]).passed   # any acceptable answer


def test_contains_family():
    assert score("contains", "The capital is Tokyo.", "tokyo").passed
    assert not score("contains", "The capital is Tokyo.", "tokyo", {"options": {"case_sensitive": True}}).passed
    assert score("contains_any", "It is cold", ["hot", "cold"]).passed
    partial = score("contains_all", "red and green", ["red", "green", "blue"])
    assert not partial.passed and partial.score == pytest.approx(2 / 3)
    assert score("contains_all", "red, green, blue", ["red", "green", "blue"]).passed


def test_regex():
    assert score("regex", "Answer: 2021-03-03", r"\d{4}-\d{2}-\d{2}").passed
    assert not score("regex", "Answer: 2021-03-03", r"\d{4}-\d{2}-\d{2}", {"options": {"fullmatch": True}}).passed
    assert score("regex", "YES", "yes", {"options": {"ignore_case": True}}).passed


def test_json_valid_and_schema():
    assert score("json_valid", '{"a": 1}', []).passed
    assert score("json_valid", 'Here:\n```json\n{"a": 1}\n```', []).passed
    assert not score("json_valid", "{a: 1}", []).passed
    schema = {"type": "object", "required": ["date"], "additionalProperties": False,
              "properties": {"date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                             "n": {"type": "integer", "minimum": 0}}}
    assert score("json_schema", '{"date": "2021-03-03", "n": 2}', schema).passed
    bad = score("json_schema", '{"date": "March 3", "extra": 1}', schema)
    assert not bad.passed and "does not match" in bad.detail
    assert schema_errors({"n": -1}, schema) and schema_errors([1, "x"], {"type": "array", "items": {"type": "integer"}})
    assert not schema_errors(3, {"anyOf": [{"type": "string"}, {"type": "integer"}]})
    assert schema_errors(True, {"type": "integer"})   # a boolean is not an integer in JSON Schema
    assert schema_errors("b", {"enum": ["a"]}) and not schema_errors(1.0, {"const": 1})


def test_numeric_with_tolerance():
    assert score("numeric", "The answer is 4.", 4).passed
    assert score("numeric", "about 3.1416", 3.14159, {"options": {"tolerance": 0.001}}).passed
    assert not score("numeric", "about 3.2", 3.14159, {"options": {"tolerance": 0.001}}).passed
    assert score("numeric", "1,000 people", "1000").passed
    assert score("numeric", "2 steps, so 7", 7, {"options": {"pick": "last"}}).passed
    assert score("numeric", "105", 100, {"options": {"rel_tolerance": 0.05}}).passed
    assert not score("numeric", "no number", 1).passed


def test_choice():
    assert score("choice", "B", "B").passed
    assert score("choice", "(b) because...", "B").passed
    assert score("choice", "The answer is C.", "C").passed
    assert not score("choice", "A. Paris", "B").passed
    options = {"options": {"choices": ["Paris", "Rome", "Oslo"]}}
    assert score("choice", "Rome", "B", options).passed
    assert score("choice", "B", "Rome", options).passed   # expected given by the option's text


def write_lines(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def case(n, **extra):
    return {"id": f"c{n}", "input": f"question {n}", "expected": "x", **extra}


def test_bad_eval_set_reports_every_problem_with_its_line(tmp_path):
    path = write_lines(tmp_path / "set.jsonl", [
        case(1),
        case(2, scorer="fuzzy"),                             # line 2: unknown scorer
        case(3, scorer="regex", expected="([0-9]"),          # line 3: bad regex
        case(1),                                             # line 4: duplicate id
        case(5, scorer="json_schema", expected={"type": "obj"}),   # line 5: bad schema
        case(6, scorer="numeric", expected="many"),          # line 6: not a number
        "{broken",                                           # line 7: not JSON
        {"_set": {"system": "late"}},                        # line 8: header not first
        case(9, scorer="json_schema", expected={"type": "object", "if": {}}),  # unsupported keyword
    ])
    evalset = load_evalset(path)
    by_line = {p.line: p.message for p in evalset.problems}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "unknown scorer 'fuzzy'" in by_line[2]
    assert "bad regex" in by_line[3]
    assert "duplicate id 'c1'" in by_line[4] and "line 1" in by_line[4]
    assert "unknown type 'obj'" in by_line[5]
    assert "numeric expects numbers" in by_line[6]
    assert "first line" in by_line[8]
    assert "unsupported keyword 'if'" in by_line[9]
    assert all(str(p).startswith(f"{path}:{p.line}") for p in evalset.problems)
    assert [c.id for c in evalset.cases] == ["c1"]


def test_set_header_options(tmp_path):
    header = {"_set": {"system": "You rewrite dates.", "max_new_tokens": 12,
                       "few_shot": [{"input": "July 4, 1976", "output": "1976-07-04"}]}}
    evalset = load_evalset(write_lines(tmp_path / "set.jsonl", [header, case(1), case(2)]))
    assert evalset.ok and len(evalset.cases) == 2
    assert evalset.options.system == "You rewrite dates." and evalset.options.max_new_tokens == 12
    assert evalset.options.few_shot == [{"input": "July 4, 1976", "output": "1976-07-04"}]
    assert [c.line for c in evalset.cases] == [2, 3]

    bad = load_evalset(write_lines(tmp_path / "bad.jsonl", [
        {"_set": {"sytem": "typo", "max_new_tokens": 0, "few_shot": [{"input": "x"}]}}, case(1)]))
    messages = " | ".join(p.message for p in bad.problems)
    assert {p.line for p in bad.problems} == {1}
    assert "unknown set option 'sytem'" in messages and "max_new_tokens" in messages and "few_shot" in messages


# --- the run format -----------------------------------------------------------------------------


def make_run(ws, name="r", components=None, status=COMPLETE, created=None, **extra):
    run = Run(id=new_run_id("task", created), name=name, created=created or 1.0, set="task",
              evalset_path="evals/task.jsonl", identity={"digest": f"sha256:{name}", "components": components or {}},
              environment={}, config={}, summary={"score": 0.5, "cases": 1}, status=status, extra=extra)
    write_run(ws, run, [CaseResult("c1", "p", "o", ["o"], "exact", 1.0, True, ["hard"], 3, 2, 0.1,
                                   {"detail": "equals"})])
    return run


def test_runs_roundtrip_prefix_and_baseline(tmp_path):
    ws = init_workspace(tmp_path)
    a = make_run(ws, "a", {"model": "m1", "precision": "p"}, created=100.0, future_key=1)
    b = make_run(ws, "b", {"model": "m2", "precision": "p"}, created=200.0)
    again = read_run(ws, a.id)
    assert again.to_dict() == a.to_dict() and again.extra == {"future_key": 1}   # unknown keys survive
    assert again.cases[0].to_dict() == {"id": "c1", "prompt": "p", "output": "o", "expected": ["o"],
                                        "scorer": "exact", "score": 1.0, "passed": True, "tags": ["hard"],
                                        "tokens_in": 3, "tokens_out": 2, "seconds": 0.1, "detail": "equals"}
    assert [r.id for r in list_runs(ws)] == [b.id, a.id]
    assert find_run(ws, a.id[:-2]).id == a.id   # created 100 s apart: unique prefixes
    with pytest.raises(InputError, match="matches 2 runs"):
        find_run(ws, "1970")
    with pytest.raises(InputError, match="no run matches"):
        find_run(ws, "nope")
    assert baseline_run(ws) is None
    set_baseline(ws, a.id)
    assert baseline_run(ws, model="m1").id == a.id
    assert baseline_run(ws, model="m2") is None and baseline_run(ws, model=ANY, precision="p").id == a.id
