"""A word-level diff of two outputs, as Compare shows them: tokens are words, runs of spaces and
single punctuation marks; control characters are made visible so a stray newline or tab is
seen, not guessed.
"""

from __future__ import annotations

import difflib
import re

EQUAL, DELETE, INSERT = "equal", "delete", "insert"   # what a segment of a word diff is

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """(op, text) segments turning `a` into `b`: op is "equal", "delete" or "insert".

    Tokens are words, single punctuation marks and whitespace runs, so "2021-03-04" vs
    "2021-3-4" marks only the parts that differ. Adjacent segments of one op are merged.
    """
    ta, tb = _TOKEN.findall(a or ""), _TOKEN.findall(b or "")
    segments: list[tuple[str, str]] = []

    def add(op: str, text: str) -> None:
        if not text:
            return
        if segments and segments[-1][0] == op:
            segments[-1] = (op, segments[-1][1] + text)
        else:
            segments.append((op, text))

    matcher = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add(EQUAL, "".join(ta[i1:i2]))
        else:
            add(DELETE, "".join(ta[i1:i2]))
            add(INSERT, "".join(tb[j1:j2]))
    return _join_replacements(segments)


def _join_replacements(segments: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A whitespace-only equal run inside a replacement joins it, so "[-a b-]{+c d+}" reads as
    one edit instead of "[-a-]{+c+} [-b-]{+d+}". Each side's text is unchanged."""
    out: list[tuple[str, str]] = []
    deleted, inserted, held = "", "", ""

    def flush() -> None:
        nonlocal deleted, inserted, held
        if deleted:
            out.append((DELETE, deleted))
        if inserted:
            out.append((INSERT, inserted))
        if held:
            out.append((EQUAL, held))
        deleted, inserted, held = "", "", ""

    for op, text in segments:
        if op == EQUAL:
            if deleted and inserted and not held and not text.strip():
                held = text
                continue
            flush()
            out.append((op, text))
            continue
        if held:
            deleted, inserted, held = deleted + held, inserted + held, ""
        if op == DELETE:
            deleted += text
        else:
            inserted += text
    flush()
    merged: list[tuple[str, str]] = []
    for op, text in out:
        if merged and merged[-1][0] == op:
            merged[-1] = (op, merged[-1][1] + text)
        else:
            merged.append((op, text))
    return merged


_CONTROL = {code: 0x2400 + code for code in range(32) if code not in (9, 10)} | {127: 0x2421}


def visible(text: str) -> str:
    """Control characters (small models emit them) as their Unicode pictures (␅), so they
    neither garble a terminal nor vanish; newlines and tabs stay."""
    return text.translate(_CONTROL)


def side(segments: list[tuple[str, str]], which: str) -> list[tuple[str, str]]:
    """The segments one side shows: A keeps equal + delete, B keeps equal + insert."""
    drop = INSERT if which == "a" else DELETE
    return [(op, text) for op, text in segments if op != drop]


def marked_text(segments: list[tuple[str, str]], which: str | None = None) -> str:
    """The diff without colour: [-removed-] and {+added+} (git's word-diff markers).
    which: "a" or "b" for one side only, None for the unified form."""
    parts = []
    for op, text in segments if which is None else side(segments, which):
        if op == DELETE:
            parts.append(f"[-{text}-]")
        elif op == INSERT:
            parts.append(f"{{+{text}+}}")
        else:
            parts.append(text)
    return "".join(parts)
