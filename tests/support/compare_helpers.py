"""Eval runs written through core.evaluation.runs (the shared run format) for compare and review tests."""

from __future__ import annotations

import time
from typing import Iterable

from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.runs import COMPLETE, CaseResult, Run, write_run

EVALSET = "sha256:" + "e" * 64


def case(case_id: str, output: str, passed: bool, *, score: float | None = None, tags: Iterable[str] = (),
         prompt: str | None = None, expected: str = "2021-03-04") -> CaseResult:
    return CaseResult(id=case_id, prompt=prompt or f"Rewrite as YYYY-MM-DD: {case_id}", output=output,
                      expected=[expected], scorer="exact", score=float(passed) if score is None else score,
                      passed=passed, tags=list(tags), tokens_in=10, tokens_out=5, seconds=0.01)


def make_run(ws: Workspace, run_id: str, cases: list[CaseResult], *, name: str = "", set_name: str = "task",
             evalset: str = EVALSET, created: float | None = None, baseline: bool = False,
             components: dict | None = None, status: str = COMPLETE) -> Run:
    passed = sum(c.passed for c in cases)
    summary = {"cases": len(cases), "passed": passed,
               "score": sum(c.score for c in cases) / len(cases) if cases else 0.0, "by_tag": {}}
    identity = {"digest": "sha256:" + run_id.encode().hex()[:64].ljust(64, "0"),
                "components": {"model": "sha256:model", "precision": "sha256:bf16", "adapter": "absent",
                               "evalset": evalset, "prompt": "sha256:p", "chat_template": "sha256:t",
                               "generation": {"do_sample": False}, "batch_size": 4, **(components or {})}}
    run = Run(id=run_id, name=name or run_id, created=created if created is not None else time.time(),
              set=set_name, evalset_path=f"evals/{set_name}.jsonl", identity=identity, environment={},
              config={}, summary=summary, status=status, baseline=baseline)
    write_run(ws, run, cases)
    return run


def two_runs(ws: Workspace, n: int = 12) -> tuple[Run, Run]:
    """A baseline and a newer run over the same n cases: c001 and c004 regress, c002 improves,
    c003 changes its output but still fails, the rest are identical. Tags: every third case
    hard, every fourth edge."""
    cases_a, cases_b = [], []
    for i in range(n):
        cid = f"c{i:03d}"
        tags = (["hard"] if i % 3 == 0 else []) + (["edge"] if i % 4 == 0 else []) + ["dates"]
        right = "2021-03-04"
        a_out, a_pass, b_out, b_pass = right, True, right, True
        if i in (1, 4):
            b_out, b_pass = "March 4th 2021", False
        elif i == 2:
            a_out, a_pass = "2021-3-4", False
        elif i == 3:
            a_out, a_pass, b_out, b_pass = "04/03/2021", False, "2021/03/04", False
        cases_a.append(case(cid, a_out, a_pass, tags=tags))
        cases_b.append(case(cid, b_out, b_pass, tags=tags))
    now = time.time()
    a = make_run(ws, "20240101-000000-task-aaaa", cases_a, name="baseline bf16", baseline=True, created=now - 60)
    b = make_run(ws, "20240102-000000-task-bbbb", cases_b, name="lora v1", created=now,
                 components={"adapter": "sha256:adapter1"})
    return a, b


def real_runs(ws: Workspace, model_dir, *, cases: int = 8) -> tuple[Run, Run]:
    """Two real runs of the tiny model through the eval engine (core.evaluation.runner): A generates 3
    new tokens per case, B 6. The eval set's expected answers are then set from the real outputs
    (A's for cases 0-2, B's for case 3) and both runs are re-scored by the engine without
    generating again, so A -> B has three regressions and one improvement, on one eval-set
    digest. A is marked baseline."""
    import json

    from weightgate.core.evaluation.plan import Target, plan_eval
    from weightgate.core.evaluation.runner import execute, rescore
    from weightgate.core.evaluation.runs import set_baseline

    path = ws.evals_dir / "task.jsonl"
    rows = [{"id": f"date-{n:02d}", "input": f"Rewrite as YYYY-MM-DD: March {n + 1}, 2021",
             "expected": "(set below)", "scorer": "exact",
             "tags": ["hard"] if n % 2 == 0 else (["edge"] if n % 3 == 0 else ["easy"])} for n in range(cases)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    target = Target(model_dir=model_dir, model_id="tiny-model", label="tiny")
    generated = []
    for tokens in (3, 6):
        plan = plan_eval(ws, "task", target=target, overrides={"max_new_tokens": tokens}, batch_size=4)
        generated.append(execute(plan, name=f"tiny, {tokens} new tokens"))
    short, long = ({c.id: c.output for c in run.cases} for run in generated)
    differing = [row["id"] for row in rows if short[row["id"]] != long[row["id"]]]
    assert len(differing) >= 4, "the tiny model's 3- and 6-token outputs should differ"
    for row in rows:
        case_id = row["id"]
        index = differing.index(case_id) if case_id in differing else None
        row["expected"] = [short[case_id] if index in (0, 1, 2) else long[case_id] if index == 3 else "never"]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    a = rescore(ws, generated[0].id, name="tiny 3 tokens")
    b = rescore(ws, generated[1].id, name="tiny 6 tokens")
    set_baseline(ws, a.id)
    return read_run_pair(ws, a.id, b.id)


def read_run_pair(ws: Workspace, a: str, b: str) -> tuple[Run, Run]:
    from weightgate.core.evaluation.runs import read_run

    return read_run(ws, a), read_run(ws, b)
