"""Phase 6 (deployment) items, decided for the release named by `[decisions] release`.

Live at status time (torch-free, cheap):
    ship.version    the release names an existing version of the registry
    ship.gates      its manifest says phases 1-5 passed when it shipped (an override fails it)
    ship.checksums  its files' sizes and mtimes are as when SHA256SUMS last matched in full
    ship.manifest   its manifest.toml holds every required field
    ship.license    the base's licence allows the intended use (core.weights.licenses, as phase 2)
    ship.rollback   there is another version to roll back to: `current` for a candidate (promote
                    makes it `previous`), `previous` for the current version
Recorded as evidence tied to the `release` fingerprint (by ship, health, canary):
    ship.merge, ship.serving, ship.latency (ship); ship.health (health); ship.canary (canary).
"""

from __future__ import annotations

from weightgate.core.engine.check import CheckContext, CheckResult
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import FAIL, PASS, record_result
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.registry.manifest import missing_keys, read_manifest
from weightgate.core.registry.store import (
    CURRENT,
    PREVIOUS,
    list_versions,
    read_aliases,
    release_decision,
    resolve,
)
from weightgate.core.registry.verify import quick_state
from weightgate.core.weights.licenses import check_licence

SHIP_HINT = "ship a version: weightgate release ship"


def _release(ctx: CheckContext):
    """The VersionRef of [decisions] release, or a CheckResult saying why there is none."""
    cached = ctx.cache.get("release", ...)
    if cached is not ...:
        return cached

    label = release_decision(ctx.config)
    if not label:
        result = CheckResult("todo", f"no release yet: {SHIP_HINT}")
    else:
        try:
            result = resolve(ctx.ws, label)
        except InputError as exc:
            result = CheckResult("fail", f"[decisions] release = {label!r}: {exc.message}")
    ctx.cache["release"] = result
    return result


def _manifest(ctx: CheckContext, ref):
    key = ("manifest", ref.label)
    if key not in ctx.cache:
        try:
            ctx.cache[key] = read_manifest(ref.path)
        except InputError as exc:
            ctx.cache[key] = CheckResult("fail", str(exc))
    return ctx.cache[key]


def _release_manifest(ctx: CheckContext):
    """(the release's VersionRef, its manifest), or the CheckResult saying why there is none."""
    ref = _release(ctx)
    if isinstance(ref, CheckResult):
        return ref
    manifest = _manifest(ctx, ref)
    return manifest if isinstance(manifest, CheckResult) else (ref, manifest)


def check_version(ctx: CheckContext) -> CheckResult:
    ref = _release(ctx)
    if isinstance(ref, CheckResult):
        return ref
    return CheckResult("pass", f"{ref.label} in {ref.path.parent.relative_to(ctx.ws.root)}",
                       {"release": ref.label})


def check_checksums(ctx: CheckContext) -> CheckResult:
    ref = _release(ctx)
    if isinstance(ref, CheckResult):
        return ref

    status, detail, values = quick_state(ctx.ws, ref)
    return CheckResult(status, detail, values)


def check_manifest(ctx: CheckContext) -> CheckResult:
    found = _release_manifest(ctx)
    if isinstance(found, CheckResult):
        return found
    ref, manifest = found

    missing = missing_keys(manifest)
    if missing:
        return CheckResult("fail", f"{ref.label}'s manifest lacks {', '.join(missing)}: ship again",
                           {"missing": missing})
    release, base = manifest["release"], manifest["base"]
    evals = ", ".join(f"{e['set']} {e.get('score')}" for e in manifest.get("evals", []))
    return CheckResult("pass", f"{release['relation']} of {base['repo']}"
                               f"{'@' + base['commit'][:12] if base.get('commit') else ''}, "
                               f"{manifest['precision']['name']}, evals: {evals or 'none'}",
                       {"relation": release["relation"], "content_digest": release["content_digest"]})


def check_license(ctx: CheckContext) -> CheckResult:
    found = _release_manifest(ctx)
    if isinstance(found, CheckResult):
        return found
    ref, manifest = found

    use = ctx.requirements().get("intended_use")
    decisions = ctx.decisions()
    reviewed = decisions.get("license") if isinstance(decisions.get("license"), dict) else None
    licence = manifest["base"].get("license", "")
    relation = manifest["release"]["relation"]
    # A fine-tune (adapter or merged) is a derivative work; a format change (quantized) is not.
    verdict = check_licence(licence, use if isinstance(use, dict) else {}, reviewed,
                            derivative=relation in ("merged", "adapter"))
    detail = verdict.detail
    if verdict.status == "pass" and relation in ("merged", "adapter"):
        detail += f" (the {relation} version is a derivative of the base: its licence applies)"
    return CheckResult(verdict.status, detail, {"license": licence, "category": verdict.category,
                                                 "relation": relation})


def check_rollback(ctx: CheckContext) -> CheckResult:
    ref = _release(ctx)
    if isinstance(ref, CheckResult):
        return ref

    aliases = read_aliases(ctx.ws, ref.name)
    current = aliases.get(CURRENT)
    # A candidate rolls back to what is current now (promote makes it `previous`).
    target, alias = (aliases.get(PREVIOUS), PREVIOUS) if current == ref.version else (current, CURRENT)
    versions = {v.version for v in list_versions(ctx.ws, ref.name)}
    values = {"release": ref.label, "previous": target}
    if target is None:
        return CheckResult("fail", f"no earlier version of {ref.name} to roll back to (the first release has "
                                   "none: ship the next one, or waive with a reason)", values)
    if target not in versions:
        return CheckResult("fail", f"{alias} -> {target}, which is not in the registry", values)
    if target == ref.version:
        return CheckResult("fail", f"{alias} is the release itself ({target})", values)
    if alias == CURRENT:
        return CheckResult("pass", f"once {ref.version} is promoted, weightgate release rollback moves current "
                                   f"back to {ref.name}@{target}", values)
    return CheckResult("pass", f"weightgate release rollback moves current back to {ref.name}@{target}", values)


def check_gates(ctx: CheckContext) -> CheckResult:
    """What the release's manifest says about the gates it shipped through."""
    found = _release_manifest(ctx)
    if isinstance(found, CheckResult):
        return found
    ref, manifest = found

    gates = manifest.get("gates")
    if not isinstance(gates, dict) or "open" not in gates:
        return CheckResult("fail", f"{ref.label} was shipped before weightgate recorded its gates: ship again",
                           {"release": ref.label})
    values = {"release": ref.label, "open": bool(gates.get("open")), "held_by": list(gates.get("held_by") or [])}
    if gates.get("open"):
        return CheckResult("pass", f"{ref.label} shipped with phases 1-5 passing", values)
    override = gates.get("override") if isinstance(gates.get("override"), dict) else {}
    values["reason"] = override.get("reason", "")
    return CheckResult("fail", f"{ref.label} {gates_line(gates)}: ship it again through open gates, or promote "
                               "with --override-gates --reason", values)


def gates_line(gates: dict) -> str:
    """'shipped with closed gates: a, b, reason: ...' (the manifest's and the card's words)."""
    if gates.get("open"):
        return "shipped through open gates (phases 1-5 passed)"
    override = gates.get("override") if isinstance(gates.get("override"), dict) else {}
    return (f"shipped with closed gates: {', '.join(gates.get('held_by') or []) or '?'}, reason: "
            f"{override.get('reason') or '(none recorded)'}")


def record_for_release(ws: Workspace, ref, item: str, ok: bool, values: dict, note: str) -> bool:
    """Evidence about `ref`, recorded only while it is the release (the fingerprint would
    otherwise tie it to another version). Returns whether it was recorded."""

    if release_decision(plain(ws.config())) != ref.label:
        return False
    record_result(ws, item, PASS if ok else FAIL, values, note=note)
    return True


def _reported(check):
    """A damaged registry file (aliases.json, a manifest) fails the item with its location and
    fix; it must never stop the status of every other item."""
    def run(ctx: CheckContext) -> CheckResult:
        try:
            return check(ctx)
        except InputError as exc:
            return CheckResult("fail", str(exc))
    run.__name__ = check.__name__
    run.__doc__ = check.__doc__
    return run


def check_warmup(ctx: CheckContext) -> CheckResult:
    record = ctx.fresh_record("ship.health")
    if record is None:
        return CheckResult("todo", "needs weightgate release health VERSION (a cold load and a ping) on the release")
    cold, first, warm = (record.values.get(key) for key in ("cold_start_s", "first_request_ms", "warm_request_ms"))
    values = {"cold_start_s": cold, "first_request_ms": first, "warm_request_ms": warm}
    if record.status == "pass" and record.values.get("url") and not isinstance(cold, (int, float)):
        # An endpoint started outside weightgate: it answered, but how long it took to start is unknown.
        return CheckResult("todo", f"{record.values['url']} answered, but its startup time is unknown: serve it with "
                                   "weightgate release serve, or run weightgate release health VERSION (a cold load)",
                           values)
    if record.status != "pass" or not isinstance(cold, (int, float)):
        return CheckResult("fail", f"the health check did not get the release ready ({record.note}): nothing to "
                                   "warm up yet", values)
    detail = (f"cold start {cold:.1f} s; `weightgate release health` loads and pings before traffic, so use it as the "
              f"readiness probe and give the startup probe more than {cold:.0f} s")
    if isinstance(first, (int, float)) and isinstance(warm, (int, float)):
        detail += f" (first request {first:.0f} ms, warm {warm:.0f} ms)"
    return CheckResult("pass", detail, values)


LIVE_CHECKS = {item: _reported(check) for item, check in {
    "ship.version": check_version,
    "ship.gates": check_gates,
    "ship.checksums": check_checksums,
    "ship.manifest": check_manifest,
    "ship.license": check_license,
    "ship.rollback": check_rollback,
    "ship.warmup": check_warmup,
}.items()}
