"""Training-data checks and the prepared dataset training reads (the contract with core/training).

    report = check_dataset(ws)                 # every problem, nothing written
    prepared = prepare_dataset(ws)             # refuses on a blocking problem; else writes
                                               # .weightgate/data/<digest[:16]>/{train,val}.jsonl

Checks, in order: schema of every line (core/data_formats.py, with file:line and the fix); raw
text chunked into 512-1024-token pieces with boilerplate lines removed (core/data_text.py);
every example rendered with the model's chat template and counted in its tokens; exact and near
duplicates (core/near_dup.py); leakage of the task and general eval sets into the data; token
length against the context; PII (core/pii.py); the balance of tags; a deterministic 90/10 split.

Blocking (nothing is prepared until they are gone): schema errors, examples the chat template
cannot render, over-long examples (never truncated silently). Fixed in the prepared copy:
duplicates and leaked examples are left out, PII is replaced by placeholders. The original file
is only ever read.

The split: an example goes to validation when the first 8 bytes of the sha256 of its content,
as a fraction of 2^64, fall below val_fraction. Content decides, not position, so appending
examples never moves an existing one between train and validation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace, setting_path
from weightgate.core.evaluation.evalsets import load_evalset
from weightgate.core.memory.loading import read_json
from weightgate.core.training.data.formats import Example, ReadResult, read_dataset
from weightgate.core.training.data.near_dup import leakage, near_duplicate_pairs, normalize
from weightgate.core.training.data.pii import KINDS, find_pii, scrub
from weightgate.core.training.data.settings import DataSettings, data_settings, train_data_path
from weightgate.core.training.data.text import boilerplate_lines, chunk_document, strip_boilerplate
from weightgate.core.weights.verify import verified_snapshot

TEXT_CHUNK_MIN, TEXT_CHUNK_MAX = 512, 1024


@dataclass
class Unit:
    """One training record as it will be written: a chat example or one chunk of raw text."""

    id: str
    line: int
    messages: list[dict] | None
    text: str | None
    tags: list[str]
    format: str
    tokens: int = 0
    digest: str = ""                     # sha256 of the (unscrubbed) content: split and identity

    def plain_text(self) -> str:
        if self.messages is None:
            return self.text or ""
        return "\n".join(m["content"] for m in self.messages)

    def record(self, scrubbed: bool = True) -> dict:
        if self.messages is not None:
            messages = [{"role": m["role"], "content": scrub(m["content"]) if scrubbed else m["content"]}
                        for m in self.messages]
            return {"id": self.id, "messages": messages}
        return {"id": self.id, "text": scrub(self.text or "") if scrubbed else self.text}


@dataclass
class DataReport:
    path: Path
    model_dir: Path | None
    settings: DataSettings
    max_tokens: int
    formats: dict[str, int]
    examples: int
    units: list[Unit]
    problems: list[InputError]            # schema errors (blocking)
    render_problems: list[InputError]     # the chat template cannot render it (blocking)
    over_long: list[dict]                 # blocking
    exact_duplicates: list[dict]
    near_duplicates: list[dict]
    leakage: list[dict]
    leakage_sets: dict[str, int]
    pii: dict
    tags: dict
    boilerplate: dict
    split: dict
    removed: dict[str, list[str]] = field(default_factory=dict)   # reason -> unit ids left out
    # Which units (by position) are left out: ids name them for people, but two copies of one
    # example share an id, and leaving out the copy must keep the first.
    removed_at: set[int] = field(default_factory=set)

    @property
    def blocking(self) -> list[str]:
        reasons = []
        if self.problems:
            reasons.append(f"{len(self.problems)} schema error(s)")
        if self.render_problems:
            reasons.append(f"{len(self.render_problems)} example(s) the chat template cannot render")
        if self.over_long:
            reasons.append(f"{len(self.over_long)} over-long example(s) (more than {self.max_tokens} tokens)")
        if not self.kept_units():
            reasons.append("no examples left to train on")
        return reasons

    def kept_units(self) -> list[Unit]:
        return [unit for index, unit in enumerate(self.units) if index not in self.removed_at]

    def split_units(self) -> tuple[list[Unit], list[Unit]]:
        kept = self.kept_units()
        val = [unit for unit in kept if in_validation(unit.digest, self.settings.val_fraction)]
        if not val and len(kept) >= 2:
            # Too few examples for the fraction to pick one: the lowest hash goes (stable until
            # an example with a lower one is added).
            val = [min(kept, key=lambda unit: unit.digest)]
        in_val = {id(unit) for unit in val}
        return [unit for unit in kept if id(unit) not in in_val], val

    def to_dict(self) -> dict:
        train, val = self.split_units()
        return {
            "path": str(self.path), "model_dir": str(self.model_dir) if self.model_dir else None,
            "settings": self.settings.to_dict(), "max_tokens": self.max_tokens, "formats": self.formats,
            "examples": self.examples, "units": len(self.units),
            "problems": [problem.to_dict() for problem in self.problems],
            "render_problems": [problem.to_dict() for problem in self.render_problems],
            "over_long": self.over_long, "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates, "leakage": self.leakage, "leakage_sets": self.leakage_sets,
            "pii": self.pii, "tags": self.tags, "boilerplate": self.boilerplate,
            "split": {**self.split, "train": len(train), "val": len(val)},
            "removed": self.removed, "blocking": self.blocking,
        }


@dataclass
class PreparedDataset:
    digest: str              # sha256 hex of the prepared train + val files
    train_path: Path
    val_path: Path
    report_path: Path
    counts: dict


def in_validation(content_digest: str, fraction: float) -> bool:
    return int(content_digest[:16], 16) / 2 ** 64 < fraction


def data_dir(ws: Workspace) -> Path:
    return ws.state_dir / "data"


# --- the model's tokenizer ----------------------------------------------------------------------


def model_dir_for(ws: Workspace, tokenizer_dir: Path | None = None) -> Path:
    """The tokenizer's directory: the one given, else the locked model (verified first)."""
    if tokenizer_dir is not None:
        return Path(tokenizer_dir)

    return verified_snapshot(ws)


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer  # lazy: transformers only where it runs, never at import

    return AutoTokenizer.from_pretrained(str(model_dir))


def context_limit(model_dir: Path, tokenizer, settings: DataSettings) -> int:
    """The longest example allowed: the model's context, capped by [training] max_seq."""

    config = read_json(Path(model_dir) / "config.json")
    limits = [value for value in (config.get("max_position_embeddings"), config.get("n_positions"),
                                  config.get("max_sequence_length"))
              if isinstance(value, int) and value > 0]
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 10 ** 7:   # transformers uses 1e30 for "unset"
        limits.append(model_max)
    if settings.max_seq:
        limits.append(settings.max_seq)
    return min(limits) if limits else 2048


# --- the checks ---------------------------------------------------------------------------------


def _ids(units: list[Unit], indices) -> list[dict]:
    return [{"id": units[i].id, "line": units[i].line} for i in indices]


def _render_and_count(read: ReadResult, tokenizer, max_tokens: int) -> tuple[list[Unit], list[InputError], dict]:
    """Chat examples rendered with the chat template and counted; raw text chunked."""

    path = read.path
    units: list[Unit] = []
    problems: list[InputError] = []
    template = getattr(tokenizer, "chat_template", None)
    chats = [example for example in read.examples if example.kind == "chat"]
    if chats and not template:
        problems.append(InputError(f"the model's tokenizer has no chat template, so {len(chats)} chat example(s) "
                                   "cannot be rendered in its prompt format", path=path, line=chats[0].line,
                                   hint='convert them to {"text": ...} lines, or use a model with a chat template'))
    rendered_units = []
    for example in chats if template else []:
        unit, problem = _chat_unit(path, example, tokenizer)
        if problem is not None:
            problems.append(problem)
        else:
            rendered_units.append(unit)
    # One batched call: the tokenizer encodes many texts at once (in Rust, in parallel).
    encoded = tokenizer([unit.text for unit in rendered_units], add_special_tokens=False)["input_ids"] \
        if rendered_units else []
    for unit, ids in zip(rendered_units, encoded):
        unit.tokens, unit.text = len(ids), None
        units.append(unit)
    texts = [example for example in read.examples if example.kind == "text"]
    boilerplate = boilerplate_lines([example.text or "" for example in texts])
    removed_lines = 0

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def split(text: str, limit: int) -> list[str]:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        cuts = [offsets[i][0] for i in range(limit, len(offsets), limit)]
        bounds = [0, *cuts, len(text)]
        return [text[a:b] for a, b in zip(bounds, bounds[1:]) if text[a:b]]

    # Room for the BOS/EOS tokens training adds around raw text.
    chunk_max = min(TEXT_CHUNK_MAX, max_tokens - 2)
    chunk_min = min(TEXT_CHUNK_MIN, max(1, chunk_max // 2))
    chunks = 0
    for example in texts:
        cleaned, removed = strip_boilerplate(example.text or "", boilerplate)
        removed_lines += removed
        if not cleaned.strip():
            problems.append(InputError("the document is nothing but boilerplate lines (repeated across documents)",
                                       path=path, line=example.line, hint="remove it, or give it real content"))
            continue
        for number, (text, _) in enumerate(chunk_document(cleaned, count, split, min_tokens=chunk_min,
                                                          max_tokens=chunk_max)):
            chunk = Example(line=example.line, format=example.format, text=text, tags=list(example.tags))
            unit_id = f"{example.id}-c{number:03d}"
            tokens = len(tokenizer(text, add_special_tokens=True)["input_ids"]) + 1   # + EOS
            units.append(Unit(unit_id, example.line, None, text, list(example.tags), example.format, tokens,
                              chunk.content_digest()))
            chunks += 1
    info = {"documents": len(texts), "chunks": chunks, "lines_removed": removed_lines,
            "lines": sorted(boilerplate)[:20], "chunk_tokens": [chunk_min, chunk_max]}
    return units, problems, info


def _chat_unit(path: Path, example: Example, tokenizer) -> tuple[Unit | None, InputError | None]:
    try:
        rendered = tokenizer.apply_chat_template(example.messages, tokenize=False, add_generation_prompt=False)
    except Exception as exc:  # a template raises on what it cannot format (jinja's raise_exception)
        return None, InputError(f"the model's chat template cannot render this example: {exc}", path=path,
                                line=example.line, hint="match the roles and order the model expects")
    missing = [m["role"] for m in example.messages if m["content"].strip() not in rendered]
    if missing:
        return None, InputError(f"the chat template drops the {missing[0]} message's text", path=path,
                                line=example.line, hint="this model's template does not take that role; "
                                                        "merge it into the user message")
    # The render rides in `text` until the batched token count replaces it (see the caller).
    return Unit(example.id, example.line, example.messages, rendered, list(example.tags), example.format, 0,
                example.content_digest()), None


def _duplicates(units: list[Unit], threshold: float) -> tuple[list[dict], list[dict], set[int]]:
    """Exact duplicate groups (same content after normalizing case, space and punctuation) and
    near-duplicate pairs; the indices a fix leaves out (every later member)."""

    groups: dict[str, list[int]] = {}
    for index, unit in enumerate(units):
        key = json.dumps(unit.record(scrubbed=False).get("messages") or unit.text, sort_keys=True)
        groups.setdefault(hashlib.sha256(normalize(key).encode()).hexdigest(), []).append(index)
    exact, dropped = [], set()
    for members in groups.values():
        if len(members) > 1:
            exact.append({"kept": _ids(units, members[:1])[0], "removed": _ids(units, members[1:])})
            dropped.update(members[1:])
    pairs = near_duplicate_pairs([unit.plain_text() for unit in units], threshold, exclude=dropped)
    near = []
    for pair in pairs:
        near.append({"a": _ids(units, [pair.first])[0], "b": _ids(units, [pair.second])[0],
                     "similarity": pair.similarity})
    # Union of the pairs: of each cluster the first example stays.
    parent = list(range(len(units)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pair in pairs:
        a, b = root(pair.first), root(pair.second)
        parent[max(a, b)] = min(a, b)
    dropped.update(i for i in range(len(units)) if root(i) != i)
    return exact, near, dropped


def eval_texts(ws: Workspace, config: dict) -> tuple[list[tuple[str, str, str]], dict[str, int],
                                                      dict[tuple[str, str], list[str]]]:
    """(set, case id, input and expected text) of every case of the task and general sets that
    exist; the sets' sizes; (set, case id) -> the case's expected answers."""

    cases, sizes, answers = [], {}, {}
    for set_name, setting, default in (("task", "eval_set", "evals/task.jsonl"),
                                       ("general", "general_set", "evals/general.jsonl")):
        path = setting_path(ws, config, setting, default)
        if not path.is_file():
            continue
        evalset = load_evalset(path)
        sizes[set_name] = len(evalset.cases)
        for case in evalset.cases:
            text = case.input if isinstance(case.input, str) else \
                "\n".join(m["content"] for m in case.input if m.get("role") != "system")
            # The expected answer too: a leak is the question together with its answer.
            answer = case.expected[0] if case.expected and isinstance(case.expected[0], str) else ""
            cases.append((set_name, case.id, f"{text}\n{answer}".strip()))
            answers[(set_name, case.id)] = [a for a in case.expected or [] if isinstance(a, str) and a.strip()]
    return cases, sizes, answers


def _leaks(units: list[Unit], cases: list[tuple[str, str, str]], threshold: float,
           answers: dict[tuple[str, str], list[str]]) -> tuple[list[dict], set[int]]:
    """Training examples that contain an eval case. A near match of the question is a leak only
    when one of its answers is in the example too ("capital of Japan? Tokyo" does not leak
    "capital of Italy? Rome", though most of the words are shared)."""

    texts = [unit.plain_text() for unit in units]
    found: dict[tuple[int, str, str], float] = {}
    normalized = [normalize(text) for text in texts]
    for leak in leakage(texts, cases, threshold):
        expected = answers.get((leak.eval_set, leak.case_id))
        if expected and not any(f" {normalize(a)} " in f" {normalized[leak.train]} " for a in expected):
            continue
        found[(leak.train, leak.eval_set, leak.case_id)] = leak.containment
    # A short eval input inside an example verbatim (after normalizing) is a leak whatever
    # the shingles say.
    for set_name, case_id, text in cases:
        wanted = normalize(text)
        if len(wanted.split()) < 3:
            continue
        for index, haystack in enumerate(normalized):
            if wanted in haystack:
                found[(index, set_name, case_id)] = 1.0
    leaks = [{**_ids(units, [index])[0], "set": set_name, "case": case_id, "containment": containment}
             for (index, set_name, case_id), containment in sorted(found.items())]
    return leaks, {index for index, _, _ in found}


def _pii(units: list[Unit]) -> dict:
    counts = {kind: 0 for kind in KINDS}
    findings = []
    for unit in units:
        for finding in find_pii(unit.plain_text()):
            counts[finding.kind] += 1
            shown = finding.text[:3] + "…" if len(finding.text) > 4 else "…"
            findings.append({"id": unit.id, "line": unit.line, "kind": finding.kind, "sample": shown})
    return {"counts": counts, "total": sum(counts.values()), "findings": findings}


def _tags(units: list[Unit], max_ratio: float) -> dict:
    counts: dict[str, int] = {}
    untagged = 0
    for unit in units:
        if not unit.tags:
            untagged += 1
        for tag in unit.tags:
            counts[tag] = counts.get(tag, 0) + 1
    info: dict = {"counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))), "untagged": untagged,
                  "max_ratio": max_ratio, "skewed": False, "ratio": None}
    if len(counts) >= 2:
        most, least = max(counts.items(), key=lambda kv: kv[1]), min(counts.items(), key=lambda kv: kv[1])
        ratio = most[1] / least[1]
        info.update(ratio=round(ratio, 3), most=most[0], least=least[0], skewed=ratio > max_ratio)
    return info


def check_dataset(ws: Workspace, *, tokenizer_dir: Path | None = None, path: Path | None = None) -> DataReport:
    """Every check over the workspace's training data (or `path`); reads, never writes."""
    config = plain(ws.config())
    settings = data_settings(config, ws.config_path)
    path = Path(path) if path is not None else train_data_path(ws, config)
    read = read_dataset(path)
    model_dir = model_dir_for(ws, tokenizer_dir)
    tokenizer = load_tokenizer(model_dir)
    max_tokens = context_limit(model_dir, tokenizer, settings)
    # Over-long examples are this module's finding; the tokenizer need not warn about them too.
    tokenizer.model_max_length = 10 ** 9
    units, render_problems, boilerplate = _render_and_count(read, tokenizer, max_tokens)
    over_long = [{"id": unit.id, "line": unit.line, "tokens": unit.tokens} for unit in units
                 if unit.tokens > max_tokens]
    exact, near, duplicate_indices = _duplicates(units, settings.near_duplicate_threshold)
    cases, sizes, answers = eval_texts(ws, config)
    leaks, leaked = _leaks(units, cases, settings.leakage_threshold, answers)
    removed = {"duplicate": [units[i].id for i in sorted(duplicate_indices)],
               "leakage": [units[i].id for i in sorted(leaked - duplicate_indices)]}
    report = DataReport(
        path=path, model_dir=model_dir, settings=settings, max_tokens=max_tokens, formats=read.format_counts(),
        examples=len(read.examples), units=units, problems=read.problems, render_problems=render_problems,
        over_long=over_long, exact_duplicates=exact, near_duplicates=near, leakage=leaks, leakage_sets=sizes,
        pii=_pii(units), tags={}, boilerplate=boilerplate,
        split={"val_fraction": settings.val_fraction, "method": "sha256(content) < fraction"}, removed=removed,
        removed_at=duplicate_indices | leaked)
    report.tags = _tags(report.kept_units(), settings.max_tag_ratio)
    return report


# --- writing the prepared dataset ---------------------------------------------------------------


def _lines(units: list[Unit]) -> str:
    return "".join(json.dumps(unit.record(), ensure_ascii=False) + "\n" for unit in units)


def write_prepared(ws: Workspace, report: DataReport) -> PreparedDataset:
    """The cleaned, scrubbed, split data under .weightgate/data/<digest[:16]>/ (InputError while
    a blocking problem remains)."""
    if report.blocking:
        raise blocking_error(report)
    train, val = report.split_units()
    train_text, val_text = _lines(train), _lines(val)
    digest = hashlib.sha256(("train\n" + train_text + "val\n" + val_text).encode("utf-8")).hexdigest()
    directory = data_dir(ws) / digest[:16]
    counts = {"examples": report.examples, "units": len(report.units), "train": len(train), "val": len(val),
              "removed_duplicates": len(report.removed.get("duplicate", [])),
              "removed_leaked": len(report.removed.get("leakage", [])), "pii_scrubbed": report.pii["total"]}
    write_atomic(directory / "train.jsonl", train_text)
    write_atomic(directory / "val.jsonl", val_text)
    data = {**report.to_dict(), "digest": digest, "counts": counts}
    write_atomic(directory / "report.json", json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    return PreparedDataset(digest, directory / "train.jsonl", directory / "val.jsonl", directory / "report.json",
                           counts)


def blocking_error(report: DataReport) -> InputError:
    lines = [str(problem) for problem in [*report.problems, *report.render_problems]]
    lines += [f"{report.path}:{row['line']}: example {row['id']} is {row['tokens']} tokens, more than "
              f"{report.max_tokens}\n  hint: shorten or split it; nothing is truncated silently"
              for row in report.over_long]
    first = (report.problems or report.render_problems or [None])[0]
    line = first.line if first is not None else (report.over_long[0]["line"] if report.over_long else None)
    return InputError("the training data cannot be prepared: " + "; ".join(report.blocking) +
                      ("\n" + "\n".join(lines) if lines else ""), path=report.path, line=line,
                      hint="fix these lines (`weightgate data check` lists them all), then run again")


def save_latest_report(ws: Workspace, report: DataReport, prepared: PreparedDataset | None) -> Path:
    path = data_dir(ws) / "report.json"
    data = {**report.to_dict(), "digest": prepared.digest if prepared else None,
            "counts": prepared.counts if prepared else None,
            "prepared": str(prepared.train_path.parent) if prepared else None}
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    return path
