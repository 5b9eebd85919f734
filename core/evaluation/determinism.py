"""Temperature-0 repeats: run the eval set's generation N times with one loaded model and say
whether every output token is identical, or where the first divergence is (repeat, case, token).

Structured-output tasks need the same answer for the same prompt; nondeterministic kernels,
batch-dependent arithmetic or a sampling setting left on show up here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from weightgate.core.engine.digest import digest_value
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import FAIL, PASS, record_result
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.generation import environment, generate_all, render
from weightgate.core.evaluation.plan import plan_eval
from weightgate.core.evaluation.reports import find_report, save_report
from weightgate.core.evaluation.runner import load_target
from weightgate.core.memory.loading import default_device

DEFAULT_REPEATS = 3


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first token position where two outputs differ (a prefix differs at its end)."""
    for position, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return position
    return None if len(a) == len(b) else min(len(a), len(b))


def check_determinism(ws: Workspace, *, repeats: int = DEFAULT_REPEATS, set_name: str = "task",
                      batch_size: int | None = None, limit: int | None = None, overrides: dict | None = None,
                      seeds: list[int] | None = None, device: str | None = None, loaded=None,
                      progress: Callable[[dict], None] | None = None, record: bool = True,
                      rerun: bool = False) -> dict:
    """Repeat generation `repeats` times. `overrides`/`seeds` exist to inject nondeterminism
    (sampling with a different seed per repeat) in tests; evidence is recorded only for a plain
    temperature-0 check of the workspace's model.

    A saved check with the same key (run identity, repeats, overrides, seeds, environment:
    versions, device, threads) is reused ("reused": its report) unless `rerun`, and its
    evidence recorded again as if it had just run."""

    if repeats < 2:
        raise InputError(f"determinism needs at least 2 repeats, got {repeats}")
    if seeds is not None and len(seeds) != repeats:
        raise InputError(f"{len(seeds)} seeds for {repeats} repeats")
    device = device or default_device()
    plan = plan_eval(ws, set_name, batch_size=batch_size, limit=limit, device=device,
                     overrides=overrides, kind="determinism")
    key = digest_value({"identity": plan.identity["digest"], "repeats": repeats, "overrides": dict(overrides or {}),
                        "seeds": seeds, "environment": environment(device)})
    previous = None if rerun else find_report(ws, "determinism", key)
    if previous is not None:
        result = {k: v for k, v in previous.items() if k != "evidence"}
        result["reused"] = Path(previous["report"]).stem
    else:
        result = _repeat(plan, repeats, overrides, seeds, loaded, progress)
        result["reuse_key"], result["reused"] = key, None
        report = save_report(ws, "determinism", result)
        result["report"] = str(report.relative_to(ws.root))
    divergence = result["divergence"]
    if record and plan.target.workspace_model and not overrides and seeds is None:
        if divergence is None:
            note = f"{repeats} repeats of {len(plan.cases)} cases identical (batch {plan.batch_size})"
        else:
            note = (f"repeat {divergence['repeat']} diverges at case {divergence['case']}, "
                    f"token {divergence['position']}")
        if result["reused"]:
            note += f" (reused {result['reused']})"
        record_result(ws, "eval.determinism", PASS if divergence is None else FAIL,
                      {key: result.get(key) for key in ("identical", "repeats", "cases", "batch_size", "divergence",
                                                        "report", "reused")}, note=note)
        result["evidence"] = "eval.determinism"
    return result


def _repeat(plan, repeats: int, overrides: dict | None, seeds: list[int] | None, loaded, progress) -> dict:
    """Generate the plan's prompts `repeats` times with one loaded model; the first divergence."""
    loaded = loaded or load_target(plan.ws, plan.target, plan.device)
    prompts = [render(loaded.tokenizer, plan.messages(case)) for case in plan.cases]
    began = time.perf_counter()
    outputs = []
    for index in range(repeats):
        settings = dict(plan.settings)
        if seeds is not None:
            settings["seed"] = seeds[index]
        outputs.append(generate_all(loaded, prompts, settings, plan.batch_size))
        if progress is not None:
            elapsed = time.perf_counter() - began
            progress({"done": index + 1, "total": repeats, "eta_s": elapsed / (index + 1) * (repeats - index - 1)})
    divergence = None
    for repeat in range(1, repeats):
        for case, first, other in zip(plan.cases, outputs[0], outputs[repeat]):
            position = first_difference(first.token_ids, other.token_ids)
            if position is not None:
                divergence = {
                    "repeat": repeat + 1, "case": case.id, "position": position,
                    "token_first": first.token_ids[position] if position < len(first.token_ids) else None,
                    "token_other": other.token_ids[position] if position < len(other.token_ids) else None,
                    "output_first": first.text, "output_other": other.text}
                break
        if divergence:
            break
    return {"identical": divergence is None, "repeats": repeats, "cases": len(plan.cases),
            "batch_size": plan.batch_size, "identity": plan.identity["digest"], "divergence": divergence,
            "overrides": dict(overrides or {}), "seeds": seeds, "precision": loaded.precision["name"],
            "seconds": round(time.perf_counter() - began, 3), "time": time.time()}
