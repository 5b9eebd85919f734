"""Training-data formats: read a file, check each line's schema, convert to canonical examples.

Accepted, one JSON object a line (formats may be mixed in one file):
    chat      {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
    alpaca    {"instruction": "...", "input": "..." (optional), "output": "..."}
    sharegpt  {"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}, ...]}
    text      {"text": "..."}: raw text, chunked later (core/data_text.py)
and a `.txt` file: raw text, documents separated by a form feed or by two blank lines.
Any line may carry "id" (a string) and "tags" (a list of strings).

Every bad line is an InputError with file:line, what is wrong and the fix; reading goes on so
one bad line does not hide the next. Chat-like formats become {"messages": [...]}, the only
shape training reads (core/training/data.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.jsonl import iter_jsonl

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "bot": "assistant", "system": "system"}
CHAT, ALPACA, SHAREGPT, TEXT = "chat", "alpaca", "sharegpt", "text"
FORMATS = (CHAT, ALPACA, SHAREGPT, TEXT)
META_KEYS = ("id", "tags")
# Documents in a .txt file: a form feed, or two blank lines (three newlines in a row).
TXT_DOCUMENT_BREAK = re.compile(r"\f|\n[ \t]*\n[ \t]*\n")


@dataclass
class Example:
    """One training example as read: chat messages, or one raw-text document (chunked later)."""

    line: int                                  # 1-based line of the file (a .txt document: its first line)
    format: str                                # chat | alpaca | sharegpt | text
    messages: list[dict] | None = None
    text: str | None = None
    given_id: str | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "text" if self.messages is None else "chat"

    def content(self) -> object:
        return {"messages": self.messages} if self.messages is not None else {"text": self.text}

    def content_digest(self) -> str:
        """sha256 of the content alone (not id, tags, line): the split and default ids use it."""
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def id(self) -> str:
        return self.given_id or "ex-" + self.content_digest()[:12]

    def plain_text(self, roles: tuple[str, ...] = ROLES) -> str:
        """The words a person reads, for similarity, PII and leakage checks."""
        if self.messages is None:
            return self.text or ""
        return "\n".join(m["content"] for m in self.messages if m["role"] in roles)


@dataclass
class ReadResult:
    path: Path
    examples: list[Example]
    problems: list[InputError]

    def format_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for example in self.examples:
            counts[example.format] = counts.get(example.format, 0) + 1
        return counts


def read_dataset(path: Path) -> ReadResult:
    """Every example of a .jsonl (or .txt) file and every problem, each with its line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("training data file not found", path=path,
                         hint="write it (one JSON object a line: chat messages, Alpaca or ShareGPT), or set "
                              "[settings] train_data in weightgate.toml")
    if path.suffix.lower() == ".txt":
        return _read_txt(path)
    problems: list[InputError] = []
    examples: list[Example] = []
    for line in iter_jsonl(path, errors=problems):
        example, errors = parse_line(path, line.number, line.value)
        problems.extend(errors)
        if example is not None:
            examples.append(example)
    _check_ids(path, examples, problems)
    problems.sort(key=lambda p: p.line or 0)
    return ReadResult(path, examples, problems)


def _read_txt(path: Path) -> ReadResult:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return ReadResult(path, [], [InputError(f"not UTF-8 text (byte {exc.start + 1})", path=path,
                                                hint="save the file as UTF-8")])
    examples, start = [], 0
    for match in [*TXT_DOCUMENT_BREAK.finditer(text), None]:
        end = match.start() if match else len(text)
        document = text[start:end]
        if document.strip():
            # The document's first non-blank line, so a report points at the right place.
            offset = start + (len(document) - len(document.lstrip("\n \t\f")))
            examples.append(Example(line=text.count("\n", 0, offset) + 1, format=TEXT, text=document.strip("\n")))
        start = match.end() if match else len(text)
    problems = [] if examples else [InputError("the file holds no text", path=path, hint="write some text into it")]
    return ReadResult(path, examples, problems)


def _check_ids(path: Path, examples: list[Example], problems: list[InputError]) -> None:
    seen: dict[str, int] = {}
    for example in examples:
        if example.given_id is None:
            continue
        if example.given_id in seen:
            problems.append(InputError(f"duplicate id {example.given_id!r} (first on line {seen[example.given_id]})",
                                       path=path, line=example.line, hint="give every example a unique id, or none"))
        else:
            seen[example.given_id] = example.line


def detect_format(value: dict) -> str | None:
    if "messages" in value:
        return CHAT
    if "conversations" in value:
        return SHAREGPT
    if "instruction" in value or ("output" in value and "input" in value):
        return ALPACA
    if "text" in value:
        return TEXT
    return None


def parse_line(path: Path, number: int, value) -> tuple[Example | None, list[InputError]]:
    """One line -> an Example (None when the line is unusable) and its problems."""
    def problem(message: str, hint: str) -> InputError:
        return InputError(message, path=path, line=number, hint=hint)

    if not isinstance(value, dict):
        return None, [problem("a training example must be a JSON object",
                              '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}')]
    fmt = detect_format(value)
    if fmt is None:
        keys = ", ".join(sorted(value)) or "none"
        return None, [problem(f"unknown format (keys: {keys})",
                              'use {"messages": [...]}, {"instruction", "input", "output"}, '
                              '{"conversations": [{"from", "value"}]} or {"text": "..."}')]
    errors: list[InputError] = []
    given_id = value.get("id")
    if given_id is not None and (not isinstance(given_id, (str, int)) or isinstance(given_id, bool)
                                 or not str(given_id).strip()):
        errors.append(problem("'id' must be a non-empty string", '"id": "ex-0001", or leave it out'))
        given_id = None
    tags = value.get("tags", [])
    if not (isinstance(tags, list) and all(isinstance(tag, str) and tag.strip() for tag in tags)):
        errors.append(problem("'tags' must be a list of non-empty strings", '"tags": ["common"] or ["edge"]'))
        tags = []
    messages, text, more = _content(fmt, value, problem)
    errors.extend(more)
    if errors:
        return None, errors
    return Example(line=number, format=fmt, messages=messages, text=text,
                   given_id=str(given_id) if given_id is not None else None, tags=list(tags)), []


def _content(fmt: str, value: dict, problem) -> tuple[list[dict] | None, str | None, list[InputError]]:
    known = {CHAT: {"messages"}, SHAREGPT: {"conversations"}, ALPACA: {"instruction", "input", "output", "system"},
             TEXT: {"text"}}[fmt] | set(META_KEYS)
    unknown = sorted(set(value) - known)
    if unknown:
        return None, None, [problem(f"unexpected key {unknown[0]!r} in a {fmt} example",
                                    f"{fmt} examples hold only: " + ", ".join(sorted(known)))]
    if fmt == TEXT:
        text = value["text"]
        if not isinstance(text, str) or not text.strip():
            return None, None, [problem("'text' must be a non-empty string", '{"text": "the document ..."}')]
        return None, text, []
    if fmt == CHAT:
        converted, errors = _chat(value["messages"], problem)
        return converted, None, errors
    if fmt == SHAREGPT:
        return _sharegpt(value["conversations"], problem)
    return _alpaca(value, problem)


def _chat(messages, problem) -> tuple[list[dict] | None, list[InputError]]:
    example = '[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]'
    if not isinstance(messages, list) or not messages:
        return None, [problem("'messages' must be a non-empty list", example)]
    out = []
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            return None, [problem(f"message {position} must be {{\"role\": ..., \"content\": ...}} only", example)]
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return None, [problem(f"message {position} has role {role!r}", "roles: " + ", ".join(ROLES))]
        if not isinstance(content, str) or not content.strip():
            return None, [problem(f"message {position} ({role}) has no text content",
                                  '"content" is a non-empty string')]
        out.append({"role": role, "content": content})
    return _conversation_problems(out, problem)


def _conversation_problems(messages: list[dict], problem) -> tuple[list[dict] | None, list[InputError]]:
    """The shape every chat template expects: an optional system message first, then user and
    assistant turns alternating, starting with the user and ending with the assistant."""
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if any(m["role"] == "system" for m in turns):
        return None, [problem("a system message may only come first", "move it to the start, or merge it")]
    if not turns or turns[-1]["role"] != "assistant":
        return None, [problem("the conversation must end with an assistant message (the answer to learn)",
                              "add the assistant's answer as the last message")]
    for position, message in enumerate(turns):
        wanted = "user" if position % 2 == 0 else "assistant"
        if message["role"] != wanted:
            index = position + (len(messages) - len(turns))
            return None, [problem(f"message {index} is {message['role']!r} where {wanted!r} was expected "
                                  "(turns must alternate user, assistant)", "merge consecutive turns of one role")]
    return messages, []


def _sharegpt(conversations, problem) -> tuple[list[dict] | None, str | None, list[InputError]]:
    example = '[{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}]'
    if not isinstance(conversations, list) or not conversations:
        return None, None, [problem("'conversations' must be a non-empty list", example)]
    messages = []
    for position, turn in enumerate(conversations):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            return None, None, [problem(f"turn {position} needs 'from' and 'value'", example)]
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            return None, None, [problem(f"turn {position} is from {turn['from']!r}",
                                        "from: human, gpt or system (user/assistant/model also accepted)")]
        if not isinstance(turn["value"], str) or not turn["value"].strip():
            return None, None, [problem(f"turn {position} has no text 'value'", '"value" is a non-empty string')]
        messages.append({"role": role, "content": turn["value"]})
    converted, errors = _conversation_problems(messages, problem)
    return converted, None, errors


def _alpaca(value: dict, problem) -> tuple[list[dict] | None, str | None, list[InputError]]:
    errors = []
    for key in ("instruction", "output"):
        if not isinstance(value.get(key), str) or not value[key].strip():
            errors.append(problem(f"'{key}' must be a non-empty string",
                                  '{"instruction": "...", "input": "" , "output": "..."}'))
    for key in ("input", "system"):
        if key in value and not isinstance(value[key], str):
            errors.append(problem(f"'{key}' must be a string", f'"{key}": "..." or leave it out'))
    if errors:
        return None, None, errors
    prompt = value["instruction"].strip()
    if value.get("input", "").strip():
        prompt += "\n\n" + value["input"].strip()
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": value["output"]}]
    if value.get("system", "").strip():
        messages.insert(0, {"role": "system", "content": value["system"]})
    return messages, None, []
