"""Eval-set files (JSONL): schema, validation with file:line and the fix, case counts and tags.

An optional first line `{"_set": {...}}` holds options of the whole set (see SetOptions and
evals/README.md): a system prompt, few-shot examples and max_new_tokens. It is part of the file,
so changing it changes the eval-set digest, and with it every result's freshness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.jsonl import iter_jsonl
from weightgate.core.evaluation.scoring import check_case

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


SET_KEY = "_set"
SET_OPTIONS = ("system", "few_shot", "max_new_tokens")
MAX_NEW_TOKENS_LIMIT = 8192


@dataclass
class SetOptions:
    """The `{"_set": {...}}` header: how every case of the set is prompted."""

    system: str | None = None                 # system prompt, sent before every case
    few_shot: list[dict] = field(default_factory=list)   # [{"input": ..., "output": ...}] turns
    max_new_tokens: int | None = None         # None: the workspace default
    line: int = 0                             # where the header is (0: no header)

    def to_dict(self) -> dict:
        return {"system": self.system, "few_shot": self.few_shot, "max_new_tokens": self.max_new_tokens}


@dataclass
class EvalSet:
    path: Path
    cases: list[EvalCase]
    problems: list[InputError]
    options: SetOptions = field(default_factory=SetOptions)

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
    options = SetOptions()
    first = True
    for line in iter_jsonl(path, errors=problems):
        if isinstance(line.value, dict) and SET_KEY in line.value:
            if first:
                options, errors = _parse_header(path, line.number, line.value)
            else:
                errors = [InputError(f"the {SET_KEY!r} header must be the first line", path=path,
                                     line=line.number, hint="move it to line 1; a set has one header")]
            problems.extend(errors)
            first = False
            continue
        first = False
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
    return EvalSet(path, cases, problems, options)


def _parse_header(path: Path, number: int, value: dict) -> tuple[SetOptions, list[InputError]]:
    def problem(message: str, hint: str) -> InputError:
        return InputError(message, path=path, line=number, hint=hint)

    header = value[SET_KEY]
    extra = [key for key in value if key != SET_KEY]
    if not isinstance(header, dict):
        return SetOptions(line=number), [problem(f"{SET_KEY!r} must be an object",
                                                 '{"_set": {"system": "...", "max_new_tokens": 32}}')]
    errors = [problem(f"unexpected key {key!r} beside {SET_KEY!r}", "the header line holds only _set")
              for key in extra]
    unknown = [key for key in header if key not in SET_OPTIONS]
    if unknown:
        errors.append(problem(f"unknown set option {unknown[0]!r}", "set options: " + ", ".join(SET_OPTIONS)))
    system = header.get("system")
    if system is not None and not isinstance(system, str):
        errors.append(problem("'system' must be a string", '"system": "You rewrite dates."'))
    few_shot = header.get("few_shot", [])
    if not isinstance(few_shot, list) or not all(
            isinstance(shot, dict) and isinstance(shot.get("input"), str) and isinstance(shot.get("output"), str)
            and set(shot) <= {"input", "output"} for shot in few_shot):
        errors.append(problem("'few_shot' must be a list of {\"input\": \"...\", \"output\": \"...\"}",
                              '"few_shot": [{"input": "July 4, 1976", "output": "1976-07-04"}]'))
        few_shot = []
    limit = header.get("max_new_tokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= MAX_NEW_TOKENS_LIMIT):
        errors.append(problem(f"'max_new_tokens' must be an integer from 1 to {MAX_NEW_TOKENS_LIMIT}",
                              '"max_new_tokens": 32'))
        limit = None
    return SetOptions(system=system if isinstance(system, str) else None, few_shot=list(few_shot),
                      max_new_tokens=limit, line=number), errors


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
    options = {key: val for key, val in value.items()
               if key not in ("id", "input", "expected", "scorer", "tags")}
    if "options" in options and not isinstance(options["options"], dict):
        errors.append(problem("'options' must be an object", '"options": {"tolerance": 0.01}'))
    if not errors and scorer in SCORERS:
        errors += [problem(message, hint) for message, hint in check_case(scorer, expected_list, options)]
    if errors:
        return None, errors
    return EvalCase(str(case_id), prompt, expected_list, scorer, tags, number, options), []
