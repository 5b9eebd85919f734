"""Canonical train/val JSONL -> token ids and labels, and micro-batch collation.

Records are what core.training.data.prepare writes: {"id", "messages": [...]} for chat data (loss on the
assistant tokens only) or {"id", "text"} for raw text (loss on every token).

Assistant spans are found by rendering prefixes with the tokenizer's own chat template: the
text of messages[:i] with the generation prompt, and of messages[:i+1] without it; the
characters in between are assistant turn i (its content and end-of-turn token). This works for
any template whose renders of a conversation's prefixes are prefixes of its full render, and a
template that is not like that is refused, never guessed around. Nothing is truncated: an
example longer than max_seq is an InputError naming its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.jsonl import iter_jsonl

IGNORE = -100
ROLES = ("system", "user", "assistant")


@dataclass
class Example:
    id: str
    input_ids: list[int]
    labels: list[int]
    line: int = 0

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def label_tokens(self) -> int:
        """Tokens that carry loss after the causal shift (label position 0 never does)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


def read_records(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) for every line; a malformed record is an InputError with its line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("training data file not found", path=path,
                         hint="run `weightgate data check` to prepare the train/val split")
    records = []
    seen: set[str] = set()
    for line in iter_jsonl(path):
        value = line.value
        where = dict(path=path, line=line.number)
        if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not value["id"]:
            raise InputError('a record needs a non-empty string "id"', **where,
                             hint='canonical lines are {"id": ..., "messages": [...]} or {"id": ..., "text": ...}')
        if value["id"] in seen:
            raise InputError(f"id {value['id']!r} appears twice", **where, hint="ids must be unique")
        seen.add(value["id"])
        if "messages" in value:
            messages = value["messages"]
            if (not isinstance(messages, list) or not messages
                    or not all(isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
                               for m in messages)):
                raise InputError(f"record {value['id']!r}: messages must be a list of "
                                 '{"role": system|user|assistant, "content": str}', **where)
            if not any(m["role"] == "assistant" for m in messages):
                raise InputError(f"record {value['id']!r} has no assistant message: nothing to learn from",
                                 **where, hint="every chat record needs at least one assistant turn")
        elif not isinstance(value.get("text"), str) or not value["text"]:
            raise InputError(f"record {value['id']!r} has neither messages nor a non-empty text", **where)
        records.append((line.number, value))
    if not records:
        raise InputError("no training records", path=path, hint="the file is empty")
    return records


def _render(tokenizer: Any, messages: list[dict], *, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_char_spans(tokenizer: Any, messages: list[dict], *, record_id: str = "",
                         path: Path | None = None, line: int | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The full render and the [start, end) character spans of every assistant turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("the tokenizer has no chat template, so chat records cannot be rendered",
                         path=path, line=line, hint="use {\"text\": ...} records, or a model with a chat template")
    full = _render(tokenizer, messages, generation_prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:index], generation_prompt=True) if index else ""
        through = _render(tokenizer, messages[:index + 1], generation_prompt=False)
        if not (through.startswith(before) and full.startswith(through)):
            raise InputError(f"record {record_id!r}: the chat template renders a conversation's prefixes "
                             "differently from the whole, so assistant tokens cannot be located", path=path,
                             line=line, hint="use a template whose renders grow by appending (most do), "
                                             "or convert the records to {\"text\": ...}")
        start, end = len(before), len(through)
        # The template's whitespace after the end-of-turn token is formatting, not an answer.
        while end > start and through[end - 1].isspace():
            end -= 1
        spans.append((start, end))
    return full, spans


def encode_record(tokenizer: Any, record: dict, *, max_seq: int | None, path: Path | None = None,
                  line: int | None = None) -> Example:
    rid = record["id"]
    if "messages" in record:
        text, spans = assistant_char_spans(tokenizer, record["messages"], record_id=rid, path=path, line=line)
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        labels = [IGNORE] * len(ids)
        for position, (start, end) in enumerate(encoded["offset_mapping"]):
            # A token belongs to a span when it starts inside it (byte-level BPE never crosses
            # the end-of-turn special token, so tokens do not straddle a span's edge).
            if end > start and any(s <= start < e for s, e in spans):
                labels[position] = ids[position]
    else:
        ids = list(tokenizer(record["text"], add_special_tokens=True)["input_ids"])
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids.append(tokenizer.eos_token_id)
        labels = list(ids)
    if max_seq is not None and len(ids) > max_seq:
        raise InputError(f"record {rid!r} is {len(ids)} tokens, longer than max_seq {max_seq}", path=path, line=line,
                         hint="training never truncates silently: shorten or split the record (weightgate data "
                              "check reports these), or raise [training] max_seq")
    if not any(label != IGNORE for label in labels[1:]):
        raise InputError(f"record {rid!r} has no tokens to learn from after rendering", path=path, line=line)
    return Example(id=rid, input_ids=ids, labels=labels, line=line or 0)


def load_examples(path: Path, tokenizer: Any, *, max_seq: int | None) -> list[Example]:
    return [encode_record(tokenizer, record, max_seq=max_seq, path=Path(path), line=number)
            for number, record in read_records(path)]


def collate(examples: list[Example], pad_id: int) -> dict:
    """Right-padded input_ids, attention_mask and labels (-100 on padding) as tensors."""
    import torch  # lazy: torch only where it runs, never at import

    width = max(example.length for example in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = example.length
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
