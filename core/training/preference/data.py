"""Preference data for DPO: read `{"prompt", "chosen", "rejected"}` lines and check them with
phase 5's data checks, so a preference file gets the same report, evidence and prepared split as
an SFT file (core.training.data.prepare does the rest: duplicates, leakage, PII, the split).

Accepted lines (one JSON object each; "id" and "tags" optional, as in SFT data):

    {"prompt": "question", "chosen": "good answer", "rejected": "bad answer"}
    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "chosen": [{"role": "assistant", "content": ...}], "rejected": [{"role": "assistant", ...}]}
    {"chosen": [...whole conversation...], "rejected": [...whole conversation...]}
        (implicit prompt: the two conversations share every message but the last, the answers)

A pair is one training unit. Its token count is the longer of prompt + chosen and prompt +
rejected as the model's chat template renders them (TRL trains on both; neither may be cut).
The prepared lines are TRL's conversational preference format, PII scrubbed:
{"id", "prompt": [messages], "chosen": [assistant], "rejected": [assistant]}.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.jsonl import iter_jsonl
from weightgate.core.engine.workspace import Workspace
from weightgate.core.training.data.formats import _chat
from weightgate.core.training.data.pii import scrub
from weightgate.core.training.data.prepare import (
    DataReport,
    Unit,
    _duplicates,
    _leaks,
    _pii,
    _tags,
    context_limit,
    eval_texts,
    load_tokenizer,
    model_dir_for,
)
from weightgate.core.training.data.settings import data_settings, train_data_path

PREFERENCE = "preference"
KEYS = {"prompt", "chosen", "rejected", "id", "tags"}
EXAMPLE = '{"prompt": "...", "chosen": "the better answer", "rejected": "the worse answer"}'


@dataclass
class PreferenceUnit(Unit):
    """One chosen/rejected pair. `messages` is the prompt (ending with the user's turn); `text`
    holds the pair's canonical JSON, which is what the shared exact-duplicate check compares."""

    chosen: str = ""
    rejected: str = ""
    chosen_tokens: int = 0
    rejected_tokens: int = 0
    prompt_messages: list[dict] = field(default_factory=list)

    def plain_text(self) -> str:
        return "\n".join([*(m["content"] for m in self.prompt_messages), self.chosen, self.rejected])

    def record(self, scrubbed: bool = True) -> dict:
        clean = scrub if scrubbed else (lambda text: text)
        return {"id": self.id,
                "prompt": [{"role": m["role"], "content": clean(m["content"])} for m in self.prompt_messages],
                "chosen": [{"role": "assistant", "content": clean(self.chosen)}],
                "rejected": [{"role": "assistant", "content": clean(self.rejected)}]}


def _answer(value, name: str, problem) -> tuple[str | None, list[InputError]]:
    """A chosen/rejected answer given with an explicit prompt: a string or one assistant message."""
    if isinstance(value, str):
        return (value, []) if value.strip() else (None, [problem(f"'{name}' is empty", EXAMPLE)])
    if (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)
            and value[0].get("role") == "assistant" and isinstance(value[0].get("content"), str)
            and value[0]["content"].strip()):
        return value[0]["content"], []
    return None, [problem(f"'{name}' must be a non-empty string or [{{\"role\": \"assistant\", \"content\": ...}}]",
                          EXAMPLE)]


def _prompt(value, problem) -> tuple[list[dict] | None, list[InputError]]:
    if isinstance(value, str):
        return ([{"role": "user", "content": value}], []) if value.strip() else \
            (None, [problem("'prompt' is empty", EXAMPLE)])
    if not isinstance(value, list) or not value:
        return None, [problem("'prompt' must be a string or a non-empty list of messages", EXAMPLE)]
    # The prompt with a placeholder answer must be a valid conversation (roles, order, content).
    messages, errors = _chat([*value, {"role": "assistant", "content": "answer"}], problem)
    return (messages[:-1], []) if messages is not None else (None, errors)


def _implicit(chosen, rejected, problem) -> tuple[tuple[list[dict], str, str] | None, list[InputError]]:
    """Two whole conversations -> (the shared prompt, chosen answer, rejected answer)."""
    conversations = []
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        messages, errors = _chat(value, problem)
        if messages is None:
            return None, [InputError(f"'{name}': {e.message}", path=e.path, line=e.line, hint=e.hint) for e in errors]
        conversations.append(messages)
    good, bad = conversations
    if good[:-1] != bad[:-1]:
        return None, [problem("without a 'prompt', 'chosen' and 'rejected' must be the same conversation up to "
                              "their last (assistant) message", 'or give the prompt apart: ' + EXAMPLE)]
    return (good[:-1], good[-1]["content"], bad[-1]["content"]), []


def parse_pair(path: Path, number: int, value) -> tuple[PreferenceUnit | None, list[InputError]]:
    def problem(message: str, hint: str) -> InputError:
        return InputError(message, path=path, line=number, hint=hint)

    if not isinstance(value, dict):
        return None, [problem("a preference pair must be a JSON object", EXAMPLE)]
    missing = [key for key in ("chosen", "rejected") if key not in value]
    if missing:
        return None, [problem(f"missing {' and '.join(repr(k) for k in missing)} (keys: "
                              f"{', '.join(sorted(value)) or 'none'})", EXAMPLE)]
    unknown = sorted(set(value) - KEYS)
    if unknown:
        return None, [problem(f"unexpected key {unknown[0]!r} in a preference pair",
                              "a pair holds only: " + ", ".join(sorted(KEYS)))]
    errors: list[InputError] = []
    given_id = value.get("id")
    if given_id is not None and (not isinstance(given_id, (str, int)) or isinstance(given_id, bool)
                                 or not str(given_id).strip()):
        errors.append(problem("'id' must be a non-empty string", '"id": "pair-0001", or leave it out'))
    tags = value.get("tags", [])
    if not (isinstance(tags, list) and all(isinstance(tag, str) and tag.strip() for tag in tags)):
        errors.append(problem("'tags' must be a list of non-empty strings", '"tags": ["common"] or ["edge"]'))
    if "prompt" in value:
        prompt, more = _prompt(value["prompt"], problem)
        errors += more
        chosen, more = _answer(value["chosen"], "chosen", problem)
        errors += more
        rejected, more = _answer(value["rejected"], "rejected", problem)
        errors += more
    else:
        parts, more = _implicit(value["chosen"], value["rejected"], problem)
        errors += more
        prompt, chosen, rejected = parts if parts else (None, None, None)
    if errors:
        return None, errors
    if chosen.strip() == rejected.strip():
        return None, [problem("'chosen' and 'rejected' are the same answer: there is no preference to learn",
                              "make 'rejected' the worse answer, or drop the line")]
    canonical = json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}, sort_keys=True,
                           ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    unit_id = str(given_id) if given_id is not None else f"pair-{digest[:10]}"
    return PreferenceUnit(unit_id, number, None, canonical, list(tags), PREFERENCE, 0, digest,
                          chosen=chosen, rejected=rejected, prompt_messages=prompt), []


def read_pairs(path: Path) -> tuple[list[PreferenceUnit], list[InputError], int]:
    """(pairs, problems, lines read) of a preference file; every problem names its line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("preference data file not found", path=path,
                         hint=f"write it, one pair a line ({EXAMPLE}), or set [data] train_data in weightgate.toml")
    problems: list[InputError] = []
    unreadable: list[InputError] = []
    pairs: list[PreferenceUnit] = []
    lines = 0
    for line in iter_jsonl(path, errors=unreadable):
        lines += 1
        pair, errors = parse_pair(path, line.number, line.value)
        problems.extend(errors)
        if pair is not None:
            pairs.append(pair)
    seen: dict[str, int] = {}
    for pair in pairs:
        if pair.id in seen and not pair.id.startswith("pair-"):
            problems.append(InputError(f"id {pair.id!r} is already used on line {seen[pair.id]}", path=path,
                                       line=pair.line, hint="give every pair its own id"))
        seen.setdefault(pair.id, pair.line)
    problems = sorted(problems + unreadable, key=lambda p: p.line or 0)
    return pairs, problems, lines + len(unreadable)


def count_tokens(pairs: list[PreferenceUnit], tokenizer) -> list[InputError]:
    """Fill each pair's token counts: prompt rendered with the generation prompt, plus each answer
    and its end-of-turn, as TRL tokenizes a conversational pair. Problems when the template fails."""
    problems = []
    prompts, kept = [], []
    for pair in pairs:
        try:
            prompts.append(tokenizer.apply_chat_template(pair.prompt_messages, tokenize=False,
                                                         add_generation_prompt=True))
            kept.append(pair)
        except Exception as exc:  # a template raises on what it cannot format (jinja's raise_exception)
            problems.append(InputError(f"the model's chat template cannot render this prompt: {exc}",
                                       path=None, line=pair.line, hint="match the roles and order the model expects"))
    if not kept:
        return problems
    encode = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt_ids = encode(prompts)
    chosen_ids = encode([pair.chosen for pair in kept])
    rejected_ids = encode([pair.rejected for pair in kept])
    for pair, p, c, r in zip(kept, prompt_ids, chosen_ids, rejected_ids):
        pair.chosen_tokens, pair.rejected_tokens = len(p) + len(c) + 1, len(p) + len(r) + 1   # + end of turn
        pair.tokens = max(pair.chosen_tokens, pair.rejected_tokens)
    return problems


def check_preference_dataset(ws: Workspace, *, tokenizer_dir: Path | None = None,
                             path: Path | None = None) -> DataReport:
    """Every phase-5 data check over a preference file; the report SFT data gets, so the shared
    evidence, prepared split and Fine-tune screen work unchanged. Reads, never writes."""
    config = plain(ws.config())
    settings = data_settings(config, ws.config_path)
    path = Path(path) if path is not None else train_data_path(ws, config)
    pairs, problems, lines = read_pairs(path)
    model_dir = model_dir_for(ws, tokenizer_dir)
    tokenizer = load_tokenizer(model_dir)
    max_tokens = context_limit(model_dir, tokenizer, settings)
    tokenizer.model_max_length = 10 ** 9   # over-long pairs are this module's finding, not a tokenizer warning
    render_problems = [InputError(p.message, path=path, line=p.line, hint=p.hint) for p in count_tokens(pairs, tokenizer)]
    rendered_lines = {p.line for p in render_problems}
    units = [pair for pair in pairs if pair.line not in rendered_lines]
    over_long = [{"id": u.id, "line": u.line, "tokens": u.tokens, "chosen_tokens": u.chosen_tokens,
                  "rejected_tokens": u.rejected_tokens} for u in units if u.tokens > max_tokens]
    exact, near, duplicate_indices = _duplicates(units, settings.near_duplicate_threshold)
    cases, sizes, answers = eval_texts(ws, config)
    leaks, leaked = _leaks(units, cases, settings.leakage_threshold, answers)
    removed = {"duplicate": [units[i].id for i in sorted(duplicate_indices)],
               "leakage": [units[i].id for i in sorted(leaked - duplicate_indices)]}
    report = DataReport(
        path=path, model_dir=model_dir, settings=settings, max_tokens=max_tokens,
        formats={PREFERENCE: len(pairs)} if pairs else {}, examples=lines, units=units,
        problems=problems, render_problems=render_problems, over_long=over_long, exact_duplicates=exact,
        near_duplicates=near, leakage=leaks, leakage_sets=sizes, pii=_pii(units), tags={},
        boilerplate={"documents": 0, "chunks": 0, "lines_removed": 0, "lines": [], "chunk_tokens": []},
        split={"val_fraction": settings.val_fraction, "method": "sha256(content) < fraction"}, removed=removed,
        removed_at=duplicate_indices | leaked)
    report.tags = _tags(report.kept_units(), settings.max_tag_ratio)
    return report
