"""Eval-set files (JSONL): schema, validation with file:line and the fix, case counts and tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.errors import InputError
from core.jsonl import iter_jsonl

SCORERS = ("exact", "normalized", "contains", "contains_all", "contains_any", "regex",
           "json_valid", "json_schema", "numeric", "choice")
ROLES = ("system", "user", "assistant")


@dataclass
class EvalCase:
    id: str
    input: str | list[dict]
    expected: list
    scorer: str = "exact"
    tags: list[str] = field(default_factory=list)
    line: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class EvalSet:
    path: Path
    cases: list[EvalCase]
    problems: list[InputError]

    @property
    def ok(self) -> bool:
        return not self.problems

    def tag_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for case in self.cases:
            for tag in case.tags:
                counts[tag] = counts.get(tag, 0) + 1
        return counts


def load_evalset(path: Path) -> EvalSet:
    """Read every line; collect every problem (one bad line does not hide the next)."""
    cases: list[EvalCase] = []
    problems: list[InputError] = []
    seen: dict[str, int] = {}
    for line in iter_jsonl(path, errors=problems):
        case, errors = _parse_case(path, line.number, line.value)
        problems.extend(errors)
        if case is None:
            continue
        if case.id in seen:
            problems.append(InputError(f"duplicate id {case.id!r} (first on line {seen[case.id]})",
                                       path=path, line=line.number, hint="give every case a unique id"))
            continue
        seen[case.id] = line.number
        cases.append(case)
    return EvalSet(path, cases, problems)


def _parse_case(path: Path, number: int, value) -> tuple[EvalCase | None, list[InputError]]:
    def problem(message: str, hint: str) -> InputError:
        return InputError(message, path=path, line=number, hint=hint)

    if not isinstance(value, dict):
        return None, [problem("a case must be a JSON object", 'e.g. {"id": "c1", "input": "...", "expected": "..."}')]
    errors = []
    for key in ("id", "input", "expected"):
        if key not in value:
            errors.append(problem(f"missing {key!r}", f"add \"{key}\": ... to this case"))
    if errors:
        return None, errors
    case_id = value["id"]
    if not isinstance(case_id, (str, int)) or isinstance(case_id, bool) or str(case_id).strip() == "":
        errors.append(problem("'id' must be a non-empty string", 'e.g. "id": "date-007"'))
    prompt = value["input"]
    if isinstance(prompt, str):
        if not prompt.strip():
            errors.append(problem("'input' is empty", "put the prompt text in 'input'"))
    elif isinstance(prompt, list):
        for position, message in enumerate(prompt):
            if not (isinstance(message, dict) and message.get("role") in ROLES
                    and isinstance(message.get("content"), str)):
                errors.append(problem(f"'input' message {position} needs a role ({', '.join(ROLES)}) "
                                      "and string content", '{"role": "user", "content": "..."}'))
                break
    else:
        errors.append(problem("'input' must be a string or a list of chat messages",
                              '"input": "..." or "input": [{"role": "user", "content": "..."}]'))
    expected = value["expected"]
    expected_list = expected if isinstance(expected, list) else [expected]
    scorer = value.get("scorer", "exact")
    if scorer not in SCORERS:
        errors.append(problem(f"unknown scorer {scorer!r}", "use one of: " + ", ".join(SCORERS)))
    if not expected_list and scorer != "json_valid":
        errors.append(problem("'expected' is empty", "give at least one acceptable answer"))
    tags = value.get("tags", [])
    if not (isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)):
        errors.append(problem("'tags' must be a list of strings", '"tags": ["hard", "edge"]'))
        tags = []
    if errors:
        return None, errors
    options = {key: val for key, val in value.items()
               if key not in ("id", "input", "expected", "scorer", "tags")}
    return EvalCase(str(case_id), prompt, expected_list, scorer, tags, number, options), []
