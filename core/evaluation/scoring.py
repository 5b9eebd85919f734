"""Scorers: does a model output match a case's expected answer(s)? Each returns a score in [0, 1]
and a pass/fail, plus a short detail saying why.

Scorer options sit in a case's `"options": {...}` (plain extra keys of the case are read too):
    exact          output (stripped) equals an expected answer
    normalized     the same after lower-casing and dropping punctuation and extra whitespace
    contains       an expected answer appears in the output (case-insensitive unless
                   options.case_sensitive)
    contains_all   every expected string appears; the score is the fraction found
    contains_any   at least one expected string appears
    regex          an expected pattern matches (re.search; options.ignore_case, options.fullmatch)
    json_valid     the output (or its ```json fenced block) parses as JSON
    json_schema    ... and validates against the schema in `expected` (a subset of JSON Schema:
                   type, enum, const, properties, required, additionalProperties, items,
                   min/maxItems, min/maxLength, pattern, minimum, maximum, exclusiveMinimum,
                   exclusiveMaximum, anyOf, oneOf, allOf, not; annotations are ignored)
    numeric        a number in the output (options.pick "first" | "last") within
                   options.tolerance (absolute, default 1e-6) or options.rel_tolerance
    choice         the option letter the output picks ("B", "(B)", "B. ...", "Answer: B", or the
                   text of an option listed in options.choices) equals the expected letter

A bad regex or schema is found when the eval set is loaded (`check_case`), with its line, never
in the middle of a run. Torch-free: re-scoring saved outputs needs no model.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")
FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
LETTER_FIRST = re.compile(r"^\W*\(?([A-Za-z])\)?(?=[\s.):,\]]|$)")
LETTER_ANSWER = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*:?\s*\(?([A-Za-z])\)?(?![A-Za-z])",
                           re.IGNORECASE)


@dataclass
class Score:
    score: float
    passed: bool
    detail: str = ""


def scorer_options(options: dict | None) -> dict:
    """A case's scorer options: its `options` object, over any other extra keys of the case."""
    options = dict(options or {})
    nested = options.pop("options", None)
    if isinstance(nested, dict):
        options.update(nested)
    return options


def score_output(scorer: str, output: str, expected: list, options: dict | None = None) -> Score:
    """Score one output. `expected` is the case's list of acceptable answers (or patterns, or
    one schema); `options` are the case's options (see scorer_options)."""
    try:
        function = SCORERS[scorer]
    except KeyError:
        raise ValueError(f"unknown scorer {scorer!r}") from None
    result = function(output or "", list(expected), scorer_options(options))
    result.score = min(1.0, max(0.0, float(result.score)))
    return result


# --- text -----------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Case, punctuation and whitespace insensitive: 'Tokyo.' == ' tokyo' (unicode-aware)."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


def _exact(output: str, expected: list, options: dict) -> Score:
    got = output.strip()
    for answer in expected:
        if got == str(answer).strip():
            return Score(1.0, True, f"equals {str(answer)!r}")
    return Score(0.0, False, "no expected answer equals the output")


def _normalized(output: str, expected: list, options: dict) -> Score:
    got = normalize(output)
    for answer in expected:
        if got == normalize(str(answer)):
            return Score(1.0, True, f"equals {str(answer)!r} after normalizing")
    return Score(0.0, False, f"normalized output {got[:60]!r} matches no expected answer")


def _fold(text: str, options: dict) -> str:
    return str(text) if options.get("case_sensitive") else str(text).casefold()


def _found(output: str, expected: list, options: dict) -> list[bool]:
    haystack = _fold(output, options)
    return [_fold(answer, options) in haystack for answer in expected]


def _contains_any(output: str, expected: list, options: dict) -> Score:
    found = _found(output, expected, options)
    if any(found):
        return Score(1.0, True, f"contains {str(expected[found.index(True)])!r}")
    return Score(0.0, False, "contains none of the expected strings")


def _contains_all(output: str, expected: list, options: dict) -> Score:
    found = _found(output, expected, options)
    if not found:
        return Score(0.0, False, "nothing expected")
    missing = [str(answer) for answer, hit in zip(expected, found) if not hit]
    score = sum(found) / len(found)
    return Score(score, not missing, "contains all" if not missing else f"missing {missing[:3]!r}")


# --- patterns -------------------------------------------------------------------------------


def _regex_flags(options: dict) -> int:
    return re.IGNORECASE if options.get("ignore_case") else 0


def _regex(output: str, expected: list, options: dict) -> Score:
    text = output.strip()
    for pattern in expected:
        compiled = re.compile(str(pattern), _regex_flags(options))
        match = compiled.fullmatch(text) if options.get("fullmatch") else compiled.search(text)
        if match:
            return Score(1.0, True, f"matches /{pattern}/")
    return Score(0.0, False, "no pattern matches")


# --- JSON -----------------------------------------------------------------------------------


def parse_json_output(output: str) -> tuple[bool, Any]:
    """The output as JSON, or its first ```json fenced block (models often wrap answers)."""
    candidates = [output.strip()]
    candidates += [block.strip() for block in FENCE.findall(output)]
    for text in candidates:
        if not text:
            continue
        try:
            return True, json.loads(text)
        except ValueError:
            continue
    return False, None


def _json_valid(output: str, expected: list, options: dict) -> Score:
    ok, _ = parse_json_output(output)
    return Score(1.0 if ok else 0.0, ok, "valid JSON" if ok else "not valid JSON")


def _json_schema(output: str, expected: list, options: dict) -> Score:
    ok, value = parse_json_output(output)
    if not ok:
        return Score(0.0, False, "not valid JSON")
    errors = schema_errors(value, expected[0] if expected else {})
    if errors:
        return Score(0.0, False, "; ".join(errors[:3]))
    return Score(1.0, True, "valid against the schema")


JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
                         or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "examples", "default", "format"}
SCHEMA_KEYWORDS = {"type", "enum", "const", "properties", "required", "additionalProperties", "items",
                   "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
                   "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "not"}


def schema_problems(schema: Any, where: str = "schema") -> list[str]:
    """What is wrong with a schema (empty when usable). Unsupported keywords are refused rather
    than ignored: a constraint that is silently not enforced would pass wrong outputs."""
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, dict):
        return [f"{where} must be a JSON object"]
    problems = []
    for key, value in schema.items():
        if key in ANNOTATIONS:
            continue
        if key not in SCHEMA_KEYWORDS:
            problems.append(f"{where}: unsupported keyword {key!r}")
            continue
        if key == "type":
            names = value if isinstance(value, list) else [value]
            bad = [name for name in names if name not in JSON_TYPES]
            if bad:
                problems.append(f"{where}.type: unknown type {bad[0]!r}")
        elif key == "properties":
            if not isinstance(value, dict):
                problems.append(f"{where}.properties must be an object")
            else:
                for name, sub in value.items():
                    problems += schema_problems(sub, f"{where}.properties.{name}")
        elif key in ("items", "not", "additionalProperties"):
            if not (key == "additionalProperties" and isinstance(value, bool)):
                problems += schema_problems(value, f"{where}.{key}")
        elif key in ("anyOf", "oneOf", "allOf"):
            if not isinstance(value, list) or not value:
                problems.append(f"{where}.{key} must be a non-empty list of schemas")
            else:
                for index, sub in enumerate(value):
                    problems += schema_problems(sub, f"{where}.{key}[{index}]")
        elif key == "required":
            if not (isinstance(value, list) and all(isinstance(name, str) for name in value)):
                problems.append(f"{where}.required must be a list of property names")
        elif key == "enum":
            if not isinstance(value, list):
                problems.append(f"{where}.enum must be a list")
        elif key == "pattern":
            try:
                re.compile(str(value))
            except re.error as exc:
                problems.append(f"{where}.pattern: bad regex ({exc})")
        elif key in ("minItems", "maxItems", "minLength", "maxLength"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{where}.{key} must be a non-negative integer")
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{where}.{key} must be a number")
    return problems


def schema_errors(value: Any, schema: Any, where: str = "$") -> list[str]:
    """Why `value` does not satisfy `schema` (empty when it does)."""
    if schema is True:
        return []
    if schema is False:
        return [f"{where}: no value is allowed here"]
    errors: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        if not any(JSON_TYPES[name](value) for name in names):
            return [f"{where}: expected {'/'.join(names)}, got {_json_type(value)}"]
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        errors.append(f"{where}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{where}: must be {schema['const']!r}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: missing required {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(item, properties[name], f"{where}.{name}")
            elif extra is False:
                errors.append(f"{where}: unexpected property {name!r}")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, f"{where}.{name}")
    if isinstance(value, list):
        if "items" in schema:
            for index, item in enumerate(value):
                errors += schema_errors(item, schema["items"], f"{where}[{index}]")
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: more than {schema['maxItems']} items")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: does not match /{schema['pattern']}/")
    if JSON_TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: above {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{where}: not above {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errors.append(f"{where}: not below {schema['exclusiveMaximum']}")
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, where)
    if "anyOf" in schema and not any(not schema_errors(value, sub, where) for sub in schema["anyOf"]):
        errors.append(f"{where}: matches none of anyOf")
    if "oneOf" in schema:
        hits = sum(1 for sub in schema["oneOf"] if not schema_errors(value, sub, where))
        if hits != 1:
            errors.append(f"{where}: matches {hits} of oneOf (exactly 1 needed)")
    if "not" in schema and not schema_errors(value, schema["not"], where):
        errors.append(f"{where}: matches a schema it must not")
    return errors


def _same(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0, but True is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if JSON_TYPES[name](value):
            return name
    return type(value).__name__


# --- numbers and choices --------------------------------------------------------------------


def parse_number(text: Any) -> float | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    match = NUMBER.search(str(text))
    return float(match.group().replace(",", "")) if match else None


def _numeric(output: str, expected: list, options: dict) -> Score:
    found = NUMBER.findall(output)
    if not found:
        return Score(0.0, False, "no number in the output")
    picked = found[-1] if options.get("pick") == "last" else found[0]
    got = float(picked.replace(",", ""))
    tolerance = float(options.get("tolerance", 1e-6))
    relative = float(options.get("rel_tolerance", 0.0))
    for answer in expected:
        want = parse_number(answer)
        if want is not None and math.isclose(got, want, abs_tol=tolerance, rel_tol=relative):
            return Score(1.0, True, f"{got:g} is within tolerance of {want:g}")
    return Score(0.0, False, f"{got:g} is not within tolerance of {expected!r}")


def _choices(options: dict) -> dict[str, str]:
    """options.choices as letter -> text: a list ["Paris", "Rome"] is lettered A, B, ..."""
    choices = options.get("choices")
    if isinstance(choices, dict):
        return {str(k).strip().upper(): str(v) for k, v in choices.items()}
    if isinstance(choices, list):
        return {chr(ord("A") + i): str(v) for i, v in enumerate(choices)}
    return {}


def picked_letter(output: str, options: dict | None = None) -> str | None:
    choices = _choices(options or {})
    text = output.strip()
    match = LETTER_FIRST.match(text) or LETTER_ANSWER.search(text)
    if match and (not choices or match.group(1).upper() in choices):
        return match.group(1).upper()
    got = normalize(text)
    for letter, option in choices.items():   # the model answered with the option's text
        if normalize(option) and got.startswith(normalize(option)):
            return letter
    return None


def _choice(output: str, expected: list, options: dict) -> Score:
    picked = picked_letter(output, options)
    if picked is None:
        return Score(0.0, False, "no option picked")
    choices = _choices(options)
    wanted = set()
    for answer in expected:
        answer = str(answer).strip()
        if len(answer) == 1 and answer.isalpha():
            wanted.add(answer.upper())
        else:   # the expected option given by its text
            wanted.update(letter for letter, text in choices.items() if normalize(text) == normalize(answer))
    passed = picked in wanted
    return Score(1.0 if passed else 0.0, passed, f"picked {picked}" + ("" if passed else f", expected {sorted(wanted)}"))


SCORERS: dict[str, Callable[[str, list, dict], Score]] = {
    "exact": _exact,
    "normalized": _normalized,
    "contains": _contains_any,
    "contains_all": _contains_all,
    "contains_any": _contains_any,
    "regex": _regex,
    "json_valid": _json_valid,
    "json_schema": _json_schema,
    "numeric": _numeric,
    "choice": _choice,
}


# --- load-time checks -----------------------------------------------------------------------


def check_case(scorer: str, expected: list, options: dict | None) -> list[tuple[str, str]]:
    """Problems that would make this case fail to score, as (message, hint): found when the eval
    set is loaded, so a typo in a regex is a line-numbered error, not a crash mid-run."""
    options = scorer_options(options)
    problems: list[tuple[str, str]] = []
    if scorer == "regex":
        for pattern in expected:
            try:
                re.compile(str(pattern), _regex_flags(options))
            except re.error as exc:
                problems.append((f"bad regex {str(pattern)!r}: {exc}",
                                 "escape special characters (\\\\. \\\\( \\\\[) and close every group"))
    elif scorer == "json_schema":
        if len(expected) != 1:
            problems.append(("json_schema needs exactly one schema in 'expected'",
                             '"expected": {"type": "object", "required": ["date"]}'))
        else:
            for message in schema_problems(expected[0]):
                problems.append((f"bad schema: {message}", "supported: " + ", ".join(sorted(SCHEMA_KEYWORDS))))
    elif scorer == "numeric":
        bad = [answer for answer in expected if parse_number(answer) is None]
        if bad:
            problems.append((f"numeric expects numbers, got {bad[0]!r}", '"expected": 42 or "expected": [3.14]'))
        for key in ("tolerance", "rel_tolerance"):
            value = options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                problems.append((f"options.{key} must be a non-negative number", f'"options": {{"{key}": 0.01}}'))
        if options.get("pick", "first") not in ("first", "last"):
            problems.append(("options.pick must be \"first\" or \"last\"", '"options": {"pick": "last"}'))
    elif scorer == "choice":
        choices = _choices(options)
        for answer in expected:
            text = str(answer).strip()
            single = len(text) == 1 and text.isalpha()
            if not single and not any(normalize(option) == normalize(text) for option in choices.values()):
                problems.append((f"choice expects an option letter, got {text!r}",
                                 '"expected": "B" (or list the options in "options": {"choices": [...]})'))
    elif scorer in ("exact", "normalized", "contains", "contains_all", "contains_any"):
        if any(isinstance(answer, (dict, list)) for answer in expected):
            problems.append((f"{scorer} compares text; 'expected' holds an object or a list",
                             "give strings, or use json_schema for structured answers"))
    return problems
