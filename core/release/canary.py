"""`weightgate release canary VERSION`: re-run the task eval set (its `canary`-tagged cases when it has
any) against the version loaded from the registry, and compare case by case (core.evaluation.compare) with
the results shipped inside it (eval/task/). For cron: a regression (a case that passed at ship
time and fails now) or a file that no longer matches SHA256SUMS fails it.

Upstream: when the base is a hub repo and the hub is reachable, the revision the lock followed
is resolved again; a branch that moved since the lock means the base changed upstream, and the
version should be re-evaluated on the new base (the canary itself ran on the pinned bytes).
"""

from __future__ import annotations

import json

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.compare import compare_runs, read_run_dir
from weightgate.core.evaluation.plan import Target, make_identity, plan_eval
from weightgate.core.evaluation.runner import execute
from weightgate.core.registry.checks import record_for_release
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.store import VersionRef
from weightgate.core.release.load import ReleaseCorrupt, load_dirs, verified_version
from weightgate.core.weights.hub import resolve_revision

CANARY_TAG = "canary"


def upstream_state(manifest: dict, endpoint: str | None = None) -> dict:
    """{"checked": bool, "moved": bool, "commit", "now", "detail"}; never raises."""
    base = manifest.get("base", {})
    if base.get("kind") != "hub" or not base.get("commit"):
        return {"checked": False, "moved": False, "detail": f"{base.get('kind', '?')} base: no upstream to check"}

    revision = base.get("revision") or "main"
    try:
        now = resolve_revision(base["repo"], revision, endpoint=endpoint)
    except InputError as exc:
        return {"checked": False, "moved": False, "detail": f"upstream not checked: {exc.message}"}
    moved = now != base["commit"]
    detail = (f"{base['repo']}@{revision} moved upstream: {base['commit'][:12]} (locked) -> {now[:12]}; "
              "re-evaluate on the new revision (weightgate weights fetch, weightgate eval run) before shipping it"
              if moved else f"{base['repo']}@{revision} still at the locked {now[:12]}")
    return {"checked": True, "moved": moved, "revision": revision, "commit": base["commit"], "now": now,
            "detail": detail}


def run_canary(ws: Workspace, ref: VersionRef, *, device: str | None = None, endpoint: str | None = None,
               log=None, record: bool = True) -> dict:
    log = log or (lambda message: None)
    outcome: dict = {"version": ref.label, "ok": False}
    try:
        prepared = canary_plan(ws, ref, device=device)
    except ReleaseCorrupt as exc:
        outcome.update(detail=exc.message, corrupt=True)
        _record(ws, ref, False, outcome, record)
        return outcome
    plan, shipped, manifest, subset = prepared
    log(f"canary: {len(plan.cases)} case(s){' tagged canary' if subset else ''} on {ref.label} "
        f"(batch {plan.batch_size})")
    run = execute(plan, name=f"canary {ref.label}", extra_config={"release": ref.label})
    return canary_outcome(ws, ref, manifest, plan, shipped, run, subset, outcome, endpoint=endpoint, record=record)


def canary_plan(ws: Workspace, ref: VersionRef, *, device: str | None = None):
    """(plan, shipped run view, manifest, subset?) after verifying the version (ReleaseCorrupt names a changed file)."""
    verified_version(ref)
    manifest = read_manifest(ref.path)
    shipped_dir = ref.path / "eval" / "task"
    shipped = read_run_dir(shipped_dir)
    batch = int(shipped.components.get("batch_size") or 1)
    # Same batches on the same kind of device as the shipped run, so equal outputs are expected.
    device = device or str(shipped_run_config(shipped_dir).get("device") or "cpu")
    model_dir, adapter = load_dirs(ref, manifest, ws.root)
    target = Target(model_dir=model_dir, model_id=f"registry:{ref.label}:{manifest['release']['content_digest']}",
                    label=ref.label, precision=manifest["precision"]["name"], adapter=adapter,
                    adapter_decision=ref.label if adapter else None)
    plan = plan_eval(ws, "task", batch_size=batch, device=device, target=target, kind="canary")
    subset = [case for case in plan.cases if CANARY_TAG in case.tags]
    if subset:
        plan.cases = subset
        plan.identity = make_identity(target=target, evalset=plan.evalset, cases=subset, device=device,
                                      settings=plan.settings, batch_size=batch, limit=None)
    return plan, shipped, manifest, bool(subset)


def canary_outcome(ws: Workspace, ref: VersionRef, manifest: dict, plan, shipped, run, subset: bool, outcome: dict,
                   *, endpoint: str | None = None, record: bool = True) -> dict:
    """Compare the canary run case by case with the shipped results; record ship.canary."""
    comparison = compare_runs(shipped, run)
    wanted = {case.id for case in plan.cases}
    missing = sorted(wanted - {case["id"] for case in shipped.cases})
    regressions = [case.id for case in comparison.by_status("regression")]
    changed = [case.id for case in comparison.cases if case.status in ("changed", "improvement")]
    upstream = upstream_state(manifest, endpoint)
    outcome.update(run=run.id, cases=len(plan.cases), subset=subset, shipped_run=shipped.id,
                   score=run.summary.get("score"), shipped_score=shipped.summary.get("score"),
                   regressions=regressions, changed=changed, not_in_shipped=missing, upstream=upstream,
                   ok=not regressions)
    if regressions:
        outcome["detail"] = (f"{len(regressions)} regression(s) against the shipped results: "
                             + ", ".join(regressions[:10]))
    else:
        outcome["detail"] = (f"no regression on {len(plan.cases)} case(s): score {run.summary.get('score'):.3f} "
                             f"(shipped {shipped.summary.get('score'):.3f})"
                             + (f"; {len(changed)} output(s) changed without failing" if changed else ""))
    if outcome.get("url"):
        outcome["detail"] = f"through {outcome['url']}: " + outcome["detail"]
    if upstream.get("moved"):
        outcome["detail"] += "; " + upstream["detail"]
    _record(ws, ref, outcome["ok"], outcome, record)
    return outcome


def shipped_run_config(run_dir) -> dict:
    try:
        data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("config") or {} if isinstance(data, dict) else {}


def _record(ws: Workspace, ref: VersionRef, ok: bool, outcome: dict, record: bool) -> None:
    if record:
        outcome["recorded"] = record_for_release(ws, ref, "ship.canary", ok, dict(outcome), outcome["detail"])
