"""Line-numbered JSONL reading: a bad line is reported with file:line:column, never skipped silently."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from weightgate.core.engine.errors import InputError


@dataclass
class JsonlLine:
    number: int
    value: object


def iter_jsonl(path: Path, *, allow_partial_tail: bool = False,
               errors: list[InputError] | None = None) -> Iterator[JsonlLine]:
    """Yield parsed lines; raise InputError naming the first bad line.

    errors: when given, bad lines are appended to it and reading goes on, so one bad line
    does not hide the next.

    allow_partial_tail: a last line without a newline that fails to parse is a write in
    progress (an append-only journal), not corruption; it is ignored.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    for index, raw in enumerate(lines):
        number = index + 1
        is_tail = index == len(lines) - 1
        if is_tail and (raw == b"" or ends_with_newline):
            break
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problem = InputError(f"line is not UTF-8 (byte {exc.start + 1})", path=path, line=number,
                                 column=exc.start + 1, hint="save the file as UTF-8")
        except json.JSONDecodeError as exc:
            if is_tail and allow_partial_tail:
                return
            problem = InputError(f"invalid JSON: {exc.msg}", path=path, line=number, column=exc.colno,
                                 hint="each line must be one complete JSON object; "
                                      "check quotes, commas and brackets")
        else:
            yield JsonlLine(number, value)
            continue
        if errors is None:
            raise problem
        errors.append(problem)
