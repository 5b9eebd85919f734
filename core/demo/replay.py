"""Self-distilled general replay for the demo's training data: the base model's own greedy
answers to general questions, kept where they state the right fact.

    records, dropped = distill(model_dir, REPLAY_QUESTIONS)
    write_replay(path, records, dropped, provenance)   # core/demo/templates/replay.jsonl

Run by scripts/demo_replay.py when the questions change; core.demo.data reads the file, so
building the demo's data needs no model and gives the same bytes on every machine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.evaluation import generation
from weightgate.core.memory.loading import load_model

# Long enough to finish most answers; the general set reads 32 tokens of each.
MAX_NEW_TOKENS = 64
BATCH_SIZE = 16


def states_fact(answer: str, fact: str) -> bool:
    """Whether `answer` states `fact`: a number as a whole number (9, not 19), a symbol of one or
    two letters as a word (Ag, not Again), anything else as a case-insensitive substring."""
    if fact.isdigit():
        return re.search(rf"(?<![\d.]){fact}(?![\d])", answer) is not None
    if len(fact) <= 2:
        return re.search(rf"\b{re.escape(fact)}\b", answer) is not None
    return fact.casefold() in answer.casefold()


def whole_sentences(text: str) -> str:
    """A generation cut off by the token budget, up to its last complete sentence (one that does
    not train the model to stop mid-sentence); the text itself when it has no sentence end."""
    cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind(".\n"))
    return text[:cut + 1].strip() if cut > 0 else text.strip()


@dataclass
class Dropped:
    question: str
    fact: str
    answer: str


def distill(model_dir: str | Path, questions: list[tuple[str, str]], *, max_new_tokens: int = MAX_NEW_TOKENS,
            batch_size: int = BATCH_SIZE, precision: str = "fp32") -> tuple[list[dict], list[Dropped]]:
    """Answer every (question, fact) greedily with the model's chat template, as an eval run
    does; keep {"question", "answer"} when the answer (cut to whole sentences if the budget
    ran out) states the fact; return the rest as Dropped."""
    loaded = load_model(model_dir, precision, device="cpu")
    settings = generation.generation_settings(Path(model_dir), max_new_tokens=max_new_tokens)
    prompts = [generation.render(loaded.tokenizer, generation.build_messages(q)) for q, _ in questions]
    outputs = generation.generate_all(loaded, prompts, settings, batch_size)
    kept, dropped = [], []
    for (question, fact), output in zip(questions, outputs):
        answer = output.text.strip() if output.finished else whole_sentences(output.text)
        if answer and states_fact(answer, fact):
            kept.append({"question": question, "answer": answer})
        else:
            dropped.append(Dropped(question, fact, answer))
    return kept, dropped


def write_replay(path: Path, kept: list[dict], dropped: list[Dropped], provenance: dict) -> None:
    """One header line (how the answers were made, what was dropped), then one line per answer."""
    header = {"_replay": {**provenance, "kept": len(kept),
                          "dropped": [{"question": d.question, "fact": d.fact, "answer": d.answer[:120]}
                                      for d in dropped]}}
    lines = [json.dumps(header, ensure_ascii=False)] + [json.dumps(record, ensure_ascii=False) for record in kept]
    write_atomic(Path(path), "\n".join(lines) + "\n")
