"""Phase 6's probes against a running OpenAI-compatible endpoint (`--url`, or `[serving] url` in
weightgate.toml) instead of a version loaded in a subprocess: health, latency, canary. Each records
the same evidence as its in-process twin (ship.health, ship.latency, ship.canary, tied to the
release), with the URL and the model the endpoint served in the values. Torch-free.

Which model: the one /v1/models lists under the release's name (vLLM / SGLang with weightgate's
commands: NAME, the LoRA for an adapter version), else under the version's directory (`transformers
serve` on it), else the only one listed. An endpoint that serves another directory of this
registry is refused: its answers would be recorded as this version's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from weightgate.core.engine.digest import digest_value
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.jobs import list_jobs
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.checks import ceilings_of
from weightgate.core.evaluation.latency import check_rows
from weightgate.core.evaluation.runner import score_case, summarize
from weightgate.core.evaluation.runs import COMPLETE, Run, new_run_id, write_run
from weightgate.core.registry.checks import record_for_release
from weightgate.core.registry.store import VersionRef
from weightgate.core.release import endpoint
from weightgate.core.release.canary import canary_outcome, canary_plan
from weightgate.core.release.load import ReleaseCorrupt
from weightgate.core.release.serve import SERVING_PREFIX

PING = "ping"


def endpoint_url(ws: Workspace, url: str | None) -> str | None:
    """--url, else `[serving] url`, else None (probe in-process)."""
    if not url:
        serving = plain(ws.config()).get("serving")
        url = serving.get("url") if isinstance(serving, dict) else None
    return endpoint.normalize_url(str(url)) if url else None


def served_model(http, url: str, ref: VersionRef) -> str:
    ids = endpoint.models(http, url)
    if not ids:
        raise endpoint.EndpointError(f"{url}/v1/models lists no model")
    mine = str(Path(ref.path).resolve())
    for wanted in (ref.name, mine, str(ref.path)):
        if wanted in ids:
            return wanted
    others = [i for i in ids if Path(i).is_absolute() and Path(i).resolve().parent == Path(mine).parent]
    if others:
        raise InputError(f"{url} serves {others[0]}, not {ref.label} ({mine})",
                         hint=f"probe the endpoint that serves {ref.label}, or name that version")
    if len(ids) == 1:
        return ids[0]
    raise InputError(f"{url} serves {', '.join(ids)}: none is {ref.name!r} or {mine}",
                     hint=f"serve it as {ref.name!r} (weightgate release serve-commands)")


def serve_job_startup(ws: Workspace, url: str) -> dict:
    """What the newest weightgate serve job at `url` journaled when it got ready ({} if none did)."""
    for status in list_jobs(ws.jobs_dir):
        if status.kind != "serve" or status.job_dir is None:
            continue
        events, _ = read_events(status.job_dir / "events.jsonl")
        for event in events:
            if event.kind == "log" and event.payload.get("url") == url and \
                    str(event.payload.get("message", "")).startswith(SERVING_PREFIX):
                return {"job": status.job_id, **event.payload}
    return {}


def endpoint_health(ws: Workspace, ref: VersionRef, url: str, *, record: bool = True) -> dict:
    """GET /health and a ping chat completion; ship.health evidence (ready = both answered)."""
    result: dict = {"version": ref.label, "url": url, "ready": False}
    with endpoint.client() as http:
        result["health"] = endpoint.health(http, url)
        try:
            if not result["health"]["ok"]:
                raise endpoint.EndpointError(f"GET {url}/health: {result['health']['status_code']} "
                                             f"{result['health']['body']}")
            result["model"] = served_model(http, url, ref)
            first = endpoint.chat(http, url, result["model"], [{"role": "user", "content": PING}], 8)
            warm = endpoint.chat(http, url, result["model"], [{"role": "user", "content": PING}], 8)
        except InputError as exc:
            result["detail"] = exc.message
        else:
            result.update(first_request_ms=round(first.seconds * 1000, 1), warm_request_ms=round(warm.seconds * 1000, 1),
                          answer=first.text, answer_tokens=first.tokens, ready=first.tokens > 0)
            result["detail"] = (f"{url}: /health ok, answered {PING!r} with {first.tokens} token(s)" if result["ready"]
                                else f"{url}: the model answered the ping with nothing")
    startup = serve_job_startup(ws, url)
    if startup.get("startup_s") is not None:
        result.update(cold_start_s=startup["startup_s"], serve_job=startup["job"])
    result["status"] = "ready" if result["ready"] else "not ready"
    if record:
        note = f"{result['status']}: {result['detail']}"
        if result["ready"]:
            note += f"; first request {result['first_request_ms']:.0f} ms"
        result["recorded"] = record_for_release(ws, ref, "ship.health", result["ready"], dict(result), note)
    return result


def _conversations(ws: Workspace, ref: VersionRef):
    """The task set's chat messages as the in-process eval builds them, and the plan (settings, cases)."""
    plan, shipped, manifest, subset = canary_plan(ws, ref)
    return plan, shipped, manifest, subset, [plan.messages(case) for case in plan.cases]


def endpoint_latency(ws: Workspace, ref: VersionRef, url: str, *, concurrency=None, requests: int | None = None,
                     record: bool = True, progress=None) -> dict:
    """TTFT (first streamed token) and tokens/s at concurrency 1 and the serving batch
    ([requirements] batch_size), p50 / p95 against [requirements.ceilings]; ship.latency evidence."""
    ceilings = ceilings_of(plain(ws.config()))
    levels = sorted(set(concurrency or {1, int(ceilings.get("batch_size") or 1)}))
    plan, _, _, _, conversations = _conversations(ws, ref)
    with endpoint.client() as http:
        model = served_model(http, url, ref)
    max_tokens = int(plan.settings.get("max_new_tokens") or 64)
    rows = endpoint.measure_concurrency(url, model, conversations, max_tokens, levels, requests=requests,
                                        progress=progress)
    checked, violations = check_rows(rows, ceilings)
    missing = [key for key in ("p95_latency_ms", "min_tokens_per_s") if key not in ceilings]
    summary = "; ".join(f"c{row['concurrency']}: ttft p50 {row['ttft_ms']['p50']:.0f} / p95 {row['ttft_ms']['p95']:.0f} "
                        f"ms, latency p95 {row['latency_ms']['p95']:.0f} ms, {row['tokens_per_s']['p50']:.1f} tok/s"
                        for row in rows)
    result = {"version": ref.label, "url": url, "model": model, "batch_sizes": rows, "checked": checked,
              "violations": violations, "ceilings": ceilings, "missing_ceilings": missing,
              "within": not violations and not missing, "max_new_tokens": max_tokens, "summary": summary}
    if record:
        note = (("within ceilings: " if result["within"] else
                 "; ".join(violations + [f"set [requirements.ceilings] {k}" for k in missing]) + " | ")
                + f"{url}: " + summary)
        result["recorded"] = record_for_release(ws, ref, "ship.latency", result["within"],
                                                {k: v for k, v in result.items() if k != "summary"}, note)
    return result


def endpoint_canary(ws: Workspace, ref: VersionRef, url: str, *, record: bool = True, log=None) -> dict:
    """The task set (its canary-tagged cases if any) through the endpoint, greedy, scored with the set's
    scorers into a run of its own, compared case by case with the shipped results; ship.canary evidence."""
    log = log or (lambda message: None)
    outcome: dict = {"version": ref.label, "ok": False, "url": url}
    try:
        plan, shipped, manifest, subset, conversations = _conversations(ws, ref)
    except ReleaseCorrupt as exc:
        outcome.update(detail=exc.message, corrupt=True)
        if record:
            outcome["recorded"] = record_for_release(ws, ref, "ship.canary", False, dict(outcome), exc.message)
        return outcome
    max_tokens = int(plan.settings.get("max_new_tokens") or 64)
    created = time.time()
    with endpoint.client() as http:
        model = served_model(http, url, ref)
        outcome["model"] = model
        log(f"canary: {len(plan.cases)} case(s){' tagged canary' if subset else ''} on {ref.label} through {url}")
        results, began = [], time.perf_counter()
        for case, messages in zip(plan.cases, conversations):
            answer = endpoint.chat(http, url, model, messages, max_tokens)
            results.append(score_case(case, json.dumps(messages, ensure_ascii=False), answer.text.strip(), 0,
                                      answer.tokens, answer.seconds, {"finish_reason": answer.finish_reason}))
    components = {**plan.identity["components"], "endpoint": url}
    identity = {**plan.identity, "components": components, "digest": digest_value(components)}
    run = Run(id=new_run_id(plan.set_name, created), name=f"canary {ref.label} via {url}", created=created,
              set=plan.set_name, evalset_path=plan.evalset_rel, identity=identity,
              environment={"endpoint": url, "model": model},
              config={"kind": "canary", "release": ref.label, "endpoint": url, "model": model,
                      "max_new_tokens": max_tokens, "batch_size": 1},
              summary=summarize(results, time.perf_counter() - began), status=COMPLETE)
    write_run(ws, run, results)
    return canary_outcome(ws, ref, manifest, plan, shipped, run, subset, outcome, record=record)
