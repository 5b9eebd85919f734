"""Deployment job kinds: `ship` (build, merge-check, publish a registry version, measure its
latency) and `canary` (re-run the eval set on a registry version, compare with what shipped).
torch loads in the job process only.

params:
    ship     name (null: the default), merge (true / false / null: [decisions] merge or mergeable),
             override (null, or the reason to ship although phase 6 is locked)
    canary   version ("current" by default), name
    serve    version, name, host (127.0.0.1), port (null: a free one), timeout (readiness, seconds)
"""

from __future__ import annotations

from weightgate.core.engine.job_process import JobContext
from weightgate.core.registry.store import resolve
from weightgate.core.release.canary import run_canary as canary
from weightgate.core.release.gate import GatesClosed
from weightgate.core.release.serve import READY_TIMEOUT_S, serve
from weightgate.core.release.ship import ShipRefused, ship


def run_ship(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    try:
        outcome = ship(ws, ctx.params.get("name"), ctx.params.get("merge"), override=ctx.params.get("override"),
                       log=ctx.log)
    except ShipRefused as exc:
        ctx.log(exc.message, level="error")
        return {"ok": False, "refused": exc.message, **exc.values}
    except GatesClosed as exc:
        ctx.log(f"{exc.message}; nothing shipped", level="error")
        return {"ok": False, **exc.to_dict()}
    ctx.artifact(outcome["path"], label="version")
    return {"ok": True, **outcome}


def run_canary(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    ref = resolve(ws, ctx.params.get("version"), ctx.params.get("name"))
    outcome = canary(ws, ref, log=ctx.log)
    ctx.log(outcome["detail"], level="info" if outcome["ok"] else "warning")
    return outcome


def run_serve(ctx: JobContext) -> dict:
    ws = ctx.open_workspace()
    ref = resolve(ws, ctx.params.get("version"), ctx.params.get("name"))
    return serve(ctx, ref, host=ctx.params.get("host") or "127.0.0.1", port=ctx.params.get("port"),
                 timeout=float(ctx.params.get("timeout") or READY_TIMEOUT_S),
                 continuous_batching=bool(ctx.params.get("continuous_batching")))
