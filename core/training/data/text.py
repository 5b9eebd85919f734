"""Raw text for training: boilerplate lines removed, then chunks of 512-1024 tokens.

Boilerplate is a line that repeats across many documents (headers, footers, licence banners):
learning it teaches the model nothing and over-weights it. A line counts as boilerplate when it
appears in at least BOILERPLATE_MIN_DOCS documents and in at least BOILERPLATE_FRACTION of them.

Chunks end at line breaks where possible; a single line longer than the maximum is cut at token
boundaries. Nothing is dropped: every remaining token of a document lands in exactly one chunk.
"""

from __future__ import annotations

from typing import Callable

BOILERPLATE_MIN_DOCS = 3
BOILERPLATE_FRACTION = 0.3
CHUNK_MIN_TOKENS = 512
CHUNK_MAX_TOKENS = 1024

CountFn = Callable[[str], int]                       # text -> token count
SplitFn = Callable[[str, int], list[str]]            # text, max tokens -> pieces of at most that many


def _norm(line: str) -> str:
    return " ".join(line.split()).lower()


def boilerplate_lines(documents: list[str], *, min_docs: int = BOILERPLATE_MIN_DOCS,
                      fraction: float = BOILERPLATE_FRACTION) -> dict[str, int]:
    """Normalized line -> how many documents hold it, for lines that count as boilerplate."""
    seen: dict[str, int] = {}
    for document in documents:
        for line in {_norm(line) for line in document.splitlines() if line.strip()}:
            seen[line] = seen.get(line, 0) + 1
    needed = max(min_docs, fraction * len(documents))
    return {line: count for line, count in seen.items() if count >= needed}


def strip_boilerplate(document: str, boilerplate: dict[str, int]) -> tuple[str, int]:
    """The document without its boilerplate lines, and how many lines were removed."""
    kept, removed = [], 0
    for line in document.splitlines():
        if line.strip() and _norm(line) in boilerplate:
            removed += 1
        else:
            kept.append(line)
    return "\n".join(kept).strip("\n"), removed


def chunk_document(text: str, count: CountFn, split: SplitFn, *, min_tokens: int = CHUNK_MIN_TOKENS,
                   max_tokens: int = CHUNK_MAX_TOKENS) -> list[tuple[str, int]]:
    """(chunk text, tokens) pieces of min_tokens..max_tokens each (the last may be shorter).

    Lines are counted once each and summed (+1 for each newline) while packing, so a long
    document is tokenized a constant number of times; every chunk is then counted exactly and
    one that came out over the maximum (merges across a newline) is packed again, smaller."""
    pieces: list[tuple[str, int]] = []
    for line in text.split("\n"):
        tokens = count(line)
        if tokens > max_tokens:
            pieces.extend((part, count(part)) for part in split(line, max_tokens))
        else:
            pieces.append((line, tokens))
    groups: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    size = 0
    for piece, tokens in pieces:
        if current and size + 1 + tokens > max_tokens:
            groups.append(current)
            current, size = [], 0
        size += tokens + (1 if current else 0)
        current.append((piece, tokens))
        if size >= min_tokens:
            groups.append(current)
            current, size = [], 0
    if current:
        if groups and sum(t for _, t in groups[-1]) + len(groups[-1]) + size <= max_tokens:
            groups[-1].extend(current)   # a short tail joins the chunk before it when both fit
        else:
            groups.append(current)
    chunks: list[tuple[str, int]] = []
    for group in groups:
        joined = "\n".join(piece for piece, _ in group).strip("\n")
        if not joined.strip():
            continue
        tokens = count(joined)
        if tokens > max_tokens and len(group) > 1:
            chunks.extend(chunk_document(joined, count, split, min_tokens=min_tokens // 2,
                                         max_tokens=max_tokens - (tokens - max_tokens) - 1))
        else:
            chunks.append((joined, tokens))
    return chunks
