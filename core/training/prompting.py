"""Prompting tried first (tune.prompting_first): a few-shot variant of the task eval run.

    outcome = run_fewshot(ws, shots=3)    # an eval run of the task set with few-shot turns

The shots: N examples of the training data that are not in the eval set (single-turn chat
examples whose question and answer match no eval case), picked by content hash, so the same data
gives the same shots. When the task set brings its own `few_shot` turns (its `_set` header), every
run of it, the baseline too, is already few-shot: the variant is then the set without them, so a
zero-shot and a few-shot score still sit side by side. Either way the variant's identity differs
from the baseline's in its prompt; its `config.kind` is "fewshot": never a baseline, never
counted by eval.fresh.

tune.prompting_first is decided live (torch-free): it passes when a complete few-shot run exists
for today's model, precision and task set; its detail gives both scores.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.plan import make_identity, plan_eval
from weightgate.core.evaluation.runner import execute
from weightgate.core.evaluation.runs import run_with_identity
from weightgate.core.memory.loading import default_device
from weightgate.core.training.checks import FEWSHOT_KIND, ZERO_SHOT, zero_shot_baseline
from weightgate.core.training.data.formats import read_dataset
from weightgate.core.training.data.near_dup import leakage, normalize
from weightgate.core.training.data.prepare import eval_texts
from weightgate.core.training.data.settings import train_data_path

DEFAULT_SHOTS = 3


def training_shots(ws: Workspace, count: int, config: dict | None = None) -> list[dict]:
    """`count` single-turn examples of the training data that match no eval case."""

    config = config if config is not None else plain(ws.config())
    path = train_data_path(ws, config)
    read = read_dataset(path)
    single = [example for example in read.examples if example.messages is not None
              and [m["role"] for m in example.messages] == ["user", "assistant"]]
    cases, _, _ = eval_texts(ws, config)
    texts = [example.plain_text() for example in single]
    leaked = {leak.train for leak in leakage(texts, cases, 0.5)}
    inputs = {normalize(text) for _, _, text in cases}
    usable = [example for index, example in enumerate(single)
              if index not in leaked and normalize(example.plain_text()) not in inputs]
    usable.sort(key=lambda example: example.content_digest())
    if len(usable) < count:
        raise InputError(f"only {len(usable)} training example(s) can serve as few-shot examples, {count} wanted",
                         path=path, hint="add few_shot turns to the task set's _set header, or ask for fewer shots")
    return [{"input": example.messages[0]["content"], "output": example.messages[1]["content"]}
            for example in usable[:count]]


def plan_fewshot(ws: Workspace, *, shots: int = DEFAULT_SHOTS, batch_size: int | None = None, device: str = "cpu"):
    """The few-shot variant's plan: the task set's own turns, else `shots` training examples."""

    plan = plan_eval(ws, "task", batch_size=batch_size, device=device, kind=FEWSHOT_KIND)
    if plan.evalset.options.few_shot:
        # The set prompts with its own turns, so its baseline is the few-shot run already: the
        # variant is the same set without them, and the two scores still sit side by side.
        turns, source = [], ZERO_SHOT
    else:
        turns, source = training_shots(ws, shots), "training data"
    options = dataclasses.replace(plan.evalset.options, few_shot=list(turns))
    plan.evalset = dataclasses.replace(plan.evalset, options=options)
    plan.identity = make_identity(target=plan.target, evalset=plan.evalset, cases=plan.cases, device=device,
                                  settings=plan.settings, batch_size=plan.batch_size, limit=plan.limit)
    return plan, source


def run_fewshot(ws: Workspace, *, shots: int = DEFAULT_SHOTS, batch_size: int | None = None,
                device: str | None = None, progress: Callable[[dict], None] | None = None,
                log: Callable[[str], None] | None = None) -> dict:
    """Run (or reuse) the few-shot variant and say how it compares with the zero-shot baseline."""

    log = log or (lambda message: None)
    device = device or default_device()
    baseline = zero_shot_baseline(ws)
    if batch_size is None and baseline is not None:
        batch_size = int(baseline.components.get("batch_size") or 0) or None
    plan, source = plan_fewshot(ws, shots=shots, batch_size=batch_size, device=device)
    count = len(plan.evalset.options.few_shot)
    run = run_with_identity(ws, "task", plan.identity["digest"])
    if run is None:
        label = "without the set's few-shot turns" if source == ZERO_SHOT else f"{count} from the {source}"
        log(f"{len(plan.cases)} cases, {label}")
        run = execute(plan, name=f"task: {'zero-shot' if source == ZERO_SHOT else 'few-shot'} variant ({label})",
                      progress=progress, extra_config={"few_shot_source": source, "shots": count})
    else:
        log(f"reusing run {run.id} (same identity)")
    return {"run": run.id, "score": run.score, "source": source, "shots": count,
            "baseline": baseline.id if baseline else None, "baseline_score": baseline.score if baseline else None}
