"""`weightgate release`: phase 6, a release you can verify, probe and roll back: ship,
promote, audit, versions, rollback, alias, verify, health, canary, serve-commands, and (from
release_endpoint.py) serve and latency.

`ship` and `canary` load torch, so they run as detached jobs these commands follow to the end
(Ctrl-C detaches; `weightgate attach JOB` re-attaches); `health` runs its own cold subprocess; the
rest are quick and torch-free."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from weightgate.core.engine.errors import InputError, WeightgateError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.serving import serve_commands
from weightgate.core.registry.store import CURRENT, VersionRef, release_decision, resolve, set_alias
from weightgate.core.registry.store import rollback as move_back
from weightgate.core.registry.verify import verify_version, write_stamp
from weightgate.core.registry.versions import list_release_versions
from weightgate.core.release.audit import audit as audit_version
from weightgate.core.release.gate import GatesClosed, ship_gate
from weightgate.core.release.health import health as check_health
from weightgate.core.release.promote import promote as promote_version
from weightgate.core.release.promote import promote_target
from weightgate.core.release.ship import plan_ship
from weightgate.core.tracking.sync import mirror_releases
from weightgate.tui.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    JsonOpt,
    NameOpt,
    clean_help,
    command,
    fail,
    group,
    run_job_to_end,
    say_if_locked,
    workspace,
)
from weightgate.tui.cli.release_endpoint import UrlOpt, canary_at, endpoint_or_none, health_at, register

VersionArg = Annotated[str, typer.Argument(help="Version or alias, e.g. v2, current.")]
CurrentArg = Annotated[str, typer.Argument(help="Version or alias (default: current).")]
ReleaseArg = Annotated[Optional[str], typer.Argument(
    help="Version or alias (default: the release under check, [decisions] release).")]
OverrideOpt = Annotated[bool, typer.Option(
    "--override-gates", help="Go ahead although the gate is closed (needs --reason; recorded everywhere).")]
ReasonOpt = Annotated[Optional[str], typer.Option("--reason", help="Why the gate is overridden.")]

HEALTH_HELP = clean_help("""Readiness probe: load VERSION cold, exactly as shipped, and ping it.

VERSION defaults to the release under check ([decisions] release: the candidate after a ship).

A cold subprocess verifies VERSION's files against SHA256SUMS, loads it (transformers, + peft for
an adapter), answers a ping, and reports cold-start time and first-request latency. With --url
(or \\[serving] url) it probes that OpenAI-compatible endpoint instead: GET /health and a ping
chat completion (exit 0 ready, 1 not).

\b
Exit codes:
  0  ready
  1  not ready: a file does not match, the load failed, or the answer was empty
  2  bad input: no such version or manifest
  3  timeout: not ready within --timeout seconds (the probe is killed)""")

app = group("release", """Phase 6: ship a version you can verify, probe and roll back.

A version is registry/<name>/vN: weights, tokenizer, SHA256SUMS, manifest.toml (with the checklist
it went through) and a model card. Ship makes it the `candidate`; promote makes it `current` once its
checks pass; `previous` keeps the one before. Every move is in history.jsonl.""")


def _warn(line: str) -> None:
    print(line, file=sys.stderr)   # stderr: --json output stays one document


def _ref(ws: Workspace, version: Optional[str], name: Optional[str], as_json: bool) -> VersionRef:
    try:
        return resolve(ws, version, name)
    except WeightgateError as exc:
        fail(exc, as_json)


def _release_ref(ws: Workspace, version: Optional[str], name: Optional[str], as_json: bool) -> VersionRef:
    """VERSION as given, else the version phase 6 is decided on ([decisions] release), else current."""
    if version is None:
        release = release_decision(plain(ws.config()))
        if release and (name is None or release.startswith(f"{name}@")):
            version, name = release.split("@", 1)[1], release.split("@", 1)[0]
    return _ref(ws, version or CURRENT, name, as_json)


def _override(override: bool, reason: Optional[str], as_json: bool) -> Optional[str]:
    """The override's reason, or None; --reason without --override-gates (or the reverse) is a usage error."""
    if override and not (reason or "").strip():
        fail(InputError("--override-gates needs a reason", hint="--override-gates --reason \"why this goes ahead\""),
             as_json)
    if reason and not override:
        fail(InputError("--reason is the reason for --override-gates; give both, or neither"), as_json)
    return reason.strip() if override else None


def _refused(exc: GatesClosed, as_json: bool, outcome: str = "nothing shipped"):
    if as_json:
        print(json.dumps(exc.to_dict(), indent=2))
    else:
        print(f"weightgate: {exc.message}; {outcome}", file=sys.stderr)
        for line in exc.lines():
            print(line, file=sys.stderr)
        print(f"  hint: {exc.hint}", file=sys.stderr)
    raise typer.Exit(EXIT_FAILED)


@command(app)
def ship(name: Annotated[Optional[str], typer.Option(
             "--name", help="Registry name (default: the current release's, else the model's).")] = None,
         merge: Annotated[Optional[bool], typer.Option(
             "--merge/--no-merge", help="Merge the adapter into the base (16/32-bit only) or keep it separate "
                                        "(default: \\[decisions] merge, else merge when the precision "
                                        "allows).")] = None,
         promote: Annotated[bool, typer.Option(
             "--promote", help="Then health-check and canary the candidate and promote it if phase 6 passes.")] = False,
         override: OverrideOpt = False, reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Ship today's model, precision and adapter as the next candidate (a job).

    Only while phase 6 is open (phases 1-5 pass); exit 1 naming every item that holds it, unless
    --override-gates --reason says why (recorded in the manifest, the card and every status).
    Weights, tokenizer, SHA256SUMS, manifest.toml with the checklist, and a model card; the version
    becomes the `candidate`, and `weightgate release promote` makes it current once its checks pass.
    Identical content creates no new version. Exit 1 when the merge changed outputs."""
    ws = workspace(as_json)
    why = _override(override, reason, as_json)
    try:
        plan_ship(ws, name, merge)   # a missing lock / eval run / bad name: exit 2 before any job
        ship_gate(ws, why)           # a locked phase 6: exit 1 before any job
    except GatesClosed as exc:
        _refused(exc, as_json)
    except WeightgateError as exc:
        fail(exc, as_json)
    result = run_job_to_end("ship", {"name": name, "merge": merge, "override": why}, as_json)
    if result.get("held_by") and not result.get("ok", True):
        result["ok"] = False
    steps = {"ship": result}
    if result.get("ok") and promote:
        steps.update(_check_and_promote(ws, result, why, as_json))
    if as_json:
        print(json.dumps(result if not promote else steps, indent=2, default=str))
    elif result.get("ok"):
        gates = result.get("gates") or {}
        closed = "" if gates.get("open", True) else " WITH CLOSED GATES (recorded)"
        if result.get("created"):
            print(f"shipped {result['release']} ({result['relation']}){closed} at {result['path']}")
        else:
            print(f"identical content: {result['release']} ({result['relation']}), no new version{closed}")
        if result.get("candidate") == result.get("version") and not promote:
            print(f"candidate: {result['release']}; current: {result.get('current') or 'none yet'}. Next: weightgate "
                  f"release health {result['version']}, weightgate release canary {result['version']}, then "
                  "weightgate release promote")
    else:
        print(f"not shipped: {result.get('refused') or result.get('error')}", file=sys.stderr)
    ok = result.get("ok") and all(step.get("ok", True) for step in steps.values())
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


def _check_and_promote(ws: Workspace, shipped: dict, why: Optional[str], as_json: bool) -> dict:
    """ship --promote: the candidate's own checks (health, canary), then promote."""
    steps: dict = {}
    ref = resolve(ws, shipped["version"], shipped["name"])
    if shipped.get("current") == ref.version:
        return {"promote": {"ok": True, "detail": f"{ref.label} is already current"}}
    probe = check_health(ws, ref)
    steps["health"] = {"ok": probe.ready, **probe.to_dict()}
    if not as_json:
        print(f"health {ref.label}: {probe.status}: {probe.detail}")
    canary_result = run_job_to_end("canary", {"version": ref.version, "name": ref.name}, as_json)
    steps["canary"] = canary_result
    if not as_json:
        print(f"canary {ref.label}: {'pass' if canary_result.get('ok') else 'FAIL'}: "
              f"{canary_result.get('detail') or canary_result.get('error')}")
    try:
        # The override given to ship was for phases 1-5; promote asks its own question (phase 6 on
        # the candidate): a failed health check or canary is never waved through by it.
        outcome = promote_version(ws, ref.version, ref.name)
    except GatesClosed as exc:
        steps["promote"] = {"ok": False, **exc.to_dict()}
        if not as_json:
            print(f"not promoted: {exc.message}; {ref.label} stays the candidate (weightgate release promote "
                  "--override-gates --reason ... decides otherwise, recorded)", file=sys.stderr)
            for line in exc.lines():
                print(line, file=sys.stderr)
        return steps
    except WeightgateError as exc:
        steps["promote"] = {"ok": False, "error": str(exc)}
        if not as_json:
            print(f"not promoted: {exc}", file=sys.stderr)
        return steps
    steps["promote"] = {"ok": True, **outcome}
    if not as_json:
        print(f"promoted: current is {outcome['release']}" + (f" (was {outcome['from']})" if outcome["from"] else ""))
    return steps


@command(app)
def promote(version: Annotated[Optional[str], typer.Argument(help="Version or alias (default: candidate).")] = None,
            name: NameOpt = None, override: OverrideOpt = False, reason: ReasonOpt = None,
            as_json: JsonOpt = False) -> None:
    """Make a version current once its phase-6 checks pass (default: the candidate).

    Phase 6 is decided on it: checksums, the gates it shipped through, merge check, health, latency
    within the ceilings, licence, canary. Exit 1 naming every item that holds it, unless
    --override-gates --reason says why. Its manifest and card get the checklist as of now and the
    promotion; `previous` takes the old current."""
    ws = workspace(as_json)
    why = _override(override, reason, as_json)
    try:
        target = promote_target(ws, version, name)
        outcome = promote_version(ws, target.version, target.name, override=why,
                                  log=(lambda line: None) if as_json else (lambda line: print(line, file=sys.stderr)))
    except GatesClosed as exc:
        _refused(exc, as_json, f"current did not move ([decisions] release names {target.label}, so `weightgate "
                               "status` shows its phase-6 items)")
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(outcome, indent=2, default=str))
    else:
        closed = "" if outcome["gates_open"] else " WITH CLOSED GATES (recorded)"
        print(f"current: {outcome['release']}{closed}" + (f"; previous: {outcome['name']}@{outcome['previous']}"
                                                          if outcome.get("previous") else ""))


@command(app)
def audit(version: ReleaseArg = None, name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Does a version's manifest still hold? (from its files and the evidence log)

    Re-derived, not read: files against SHA256SUMS, every checklist item's evidence record still in the log and not
    revoked or re-noted since, the eval runs it names with the same identities and scores, the
    adapter's digest, an adapter version's base. Exit 1 on any difference."""
    ws = workspace(as_json)
    ref = _release_ref(ws, version, name, as_json)
    try:
        report = audit_version(ws, ref)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        for finding in report.findings:
            print(f"DIFFERS  {finding.area:<9} {finding.subject}: {finding.detail}")
        for line in report.unchecked:
            print(f"unchecked {line}")
        for line in report.checked:
            print(f"ok       {line}")
        print(report.summary())
    raise typer.Exit(EXIT_OK if report.holds else EXIT_FAILED)


@command(app)
def versions(name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Shipped versions, oldest first, with their aliases, relation and scores."""
    ws = workspace(as_json)
    try:
        listing = list_release_versions(ws, name)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(listing, indent=2, default=str))
        return
    if not listing["versions"]:
        print(f"nothing shipped under {listing['name']!r} yet: weightgate release ship")
        return
    for row in listing["versions"]:
        aliases = ",".join(row["aliases"])
        scores = " ".join(f"{e['set']} {e['score']}" for e in row["evals"])
        print(f"{row['version']:<5} {aliases:<18} {row['relation']:<9} {row['precision']:<5} {row['created_utc']}  "
              f"{scores}")


@command(app)
def rollback(version: Annotated[Optional[str], typer.Argument(
                 help="Version or alias (default: previous).")] = None,
             name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Move `current` back (to `previous` by default).

    `previous` takes the old current; the move is appended to history.jsonl and \\[decisions]
    release follows."""
    ws = workspace(as_json)
    try:
        outcome = move_back(ws, version, name)
    except WeightgateError as exc:
        fail(exc, as_json)
    mirror_releases(ws, _warn)
    print(json.dumps(outcome, indent=2) if as_json else
          f"current: {outcome['name']}@{outcome['current']} (was {outcome['from']}); previous: {outcome['previous']}")


@command(app)
def alias(name_of_alias: Annotated[str, typer.Argument(metavar="ALIAS", help="A custom alias, e.g. staging.")],
          version: Annotated[Optional[str], typer.Argument(help="Version or alias it points to.")] = None,
          remove: Annotated[bool, typer.Option("--remove", help="Remove the alias.")] = False,
          name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Point a custom alias at a version, or remove it.

    Every move goes to history.jsonl; `current`, `previous` and `candidate` move only by ship,
    promote and rollback."""
    ws = workspace(as_json)
    if (version is None) != remove:
        fail(InputError("give VERSION, or --remove without one", hint="weightgate release alias staging v2"), as_json)
    try:
        aliases = set_alias(ws, name_of_alias, version, name)
    except WeightgateError as exc:
        fail(exc, as_json)
    mirror_releases(ws, _warn)
    print(json.dumps(aliases, indent=2) if as_json else ", ".join(f"{k} -> {v}" for k, v in sorted(aliases.items())))


@command(app)
def verify(version: VersionArg, name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Re-hash every file of VERSION against its SHA256SUMS, in parallel.

    Names each changed, missing or extra file. Exit 1 on any."""
    ws = workspace(as_json)
    ref = _ref(ws, version, name, as_json)
    try:
        report = verify_version(ref)
    except WeightgateError as exc:
        fail(exc, as_json)
    write_stamp(ws, ref, report)
    if as_json:
        print(json.dumps({k: v for k, v in report.to_dict().items() if k not in ("expected", "actual")}, indent=2))
    else:
        for path, status in report.problems().items():
            print(f"{status:<8} {path}")
        print(report.summary())
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


@app.command("health", help=HEALTH_HELP)
def health(version: ReleaseArg = None,
           timeout: Annotated[float, typer.Option("--timeout", min=0.0,
                                                  help="Seconds until not ready (exit 3).")] = 120.0,
           sizes_only: Annotated[bool, typer.Option("--sizes-only",
                                                    help="Check file sizes instead of re-hashing (faster).")] = False,
           url: UrlOpt = None, name: NameOpt = None, as_json: JsonOpt = False) -> None:
    ws = workspace(as_json)
    ref = _release_ref(ws, version, name, as_json)
    say_if_locked(ws, 6, "this health check")
    where = endpoint_or_none(ws, url, as_json)
    if where:
        health_at(ws, ref, where, as_json)
    result = check_health(ws, ref, timeout=timeout, sizes_only=sizes_only)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(f"{result.version}: {result.status}: {result.detail}")
        if result.ready:
            print(f"  cold start {result.cold_start_s:.2f} s (load {result.load_seconds:.2f} s, verify "
                  f"{result.verify_seconds:.2f} s), first request {result.first_request_ms:.0f} ms, "
                  f"answer {result.answer!r}")
    raise typer.Exit(result.exit_code)


@command(app)
def canary(version: ReleaseArg = None, url: UrlOpt = None, name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Re-run the task set on VERSION as shipped and compare (a job; for cron).

    VERSION is verified first, then the task eval set (its `canary`-tagged cases if any) runs on
    it as loaded from the registry and is compared with the results it shipped with. With --url
    (or \\[serving] url) the cases go through that endpoint instead (greedy chat completions, the
    same messages and scorers). Reports a base that moved upstream. Exit 1 on a regression or a
    changed file."""
    ws = workspace(as_json)
    ref = _release_ref(ws, version, name, as_json)
    where = endpoint_or_none(ws, url, as_json)
    if where:
        result = canary_at(ws, ref, where, as_json)
    else:
        result = run_job_to_end("canary", {"version": ref.version, "name": ref.name}, as_json)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"{ref.label}: {'pass' if result.get('ok') else 'FAIL'}: {result.get('detail') or result.get('error')}")
        upstream = result.get("upstream") or {}
        if upstream and not upstream.get("moved"):
            print(f"  upstream: {upstream.get('detail')}")
    raise typer.Exit(EXIT_OK if result.get("ok") else EXIT_FAILED)


@command(app, "serve-commands")
def serve_commands_cmd(version: CurrentArg = "current", name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """The transformers serve, vLLM and SGLang commands that serve VERSION.

    Each serves what was evaluated: the base and the LoRA under distinct names (NAME-base, NAME),
    the evaluated dtype and in-flight quantization. An engine that would serve another precision
    (vLLM's in-flight bitsandbytes is 4-bit: not for an int8 version) gets no command but the
    reason and what would work instead."""
    ws = workspace(as_json)
    ref = _ref(ws, version, name, as_json)
    try:
        commands = serve_commands(read_manifest(ref.path), ref.path, ws.root)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps({"version": ref.label, **commands}, indent=2))
    else:
        for engine in ("transformers_serve", "vllm", "sglang"):
            label = engine.replace("_", " ")
            if commands[engine]:
                print(f"# {label}\n{commands[engine]}\n")
            else:
                print(f"# {label}: no command\n# {commands['refused'][engine]}\n")
        print(f"# python (transformers + peft)\n{commands['transformers']}")


register(app, _release_ref)
