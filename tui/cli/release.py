"""`weightgate release`: phase 6, a release you can verify, probe and roll back: ship,
versions, rollback, alias, verify, health, canary, serve-commands.

`ship` and `canary` load torch, so they run as detached jobs these commands follow to the end
(Ctrl-C detaches; `weightgate attach JOB` re-attaches); `health` runs its own cold subprocess; the
rest are quick and torch-free."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from weightgate.core.engine.errors import InputError, WeightgateError
from weightgate.core.engine.workspace import Workspace
from weightgate.core.release.health import health as check_health
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.store import VersionRef, resolve, set_alias
from weightgate.core.registry.store import rollback as move_back
from weightgate.core.registry.serving import serve_commands
from weightgate.core.release.ship import plan_ship
from weightgate.core.registry.verify import verify_version, write_stamp
from weightgate.core.registry.versions import list_release_versions
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
    workspace,
)

VersionArg = Annotated[str, typer.Argument(help="Version or alias, e.g. v2, current.")]
CurrentArg = Annotated[str, typer.Argument(help="Version or alias (default: current).")]

HEALTH_HELP = clean_help("""Readiness probe: load VERSION cold, exactly as shipped, and ping it.

A cold subprocess verifies VERSION's files against SHA256SUMS, loads it (transformers, + peft for
an adapter), answers a ping, and reports cold-start time and first-request latency.

\b
Exit codes:
  0  ready
  1  not ready: a file does not match, the load failed, or the answer was empty
  2  bad input: no such version or manifest
  3  timeout: not ready within --timeout seconds (the probe is killed)""")

app = group("release", """Phase 6: ship a version you can verify, probe and roll back.

A version is registry/<name>/vN: weights, tokenizer, SHA256SUMS, manifest.toml and a model card;
`current` and `previous` are aliases, and every move is in history.jsonl.""")


def _ref(ws: Workspace, version: Optional[str], name: Optional[str], as_json: bool) -> VersionRef:
    try:
        return resolve(ws, version, name)
    except WeightgateError as exc:
        fail(exc, as_json)


@command(app)
def ship(name: Annotated[Optional[str], typer.Option(
             "--name", help="Registry name (default: the current release's, else the model's).")] = None,
         merge: Annotated[Optional[bool], typer.Option(
             "--merge/--no-merge", help="Merge the adapter into the base (16/32-bit only) or keep it separate "
                                        "(default: \\[decisions] merge, else merge when the precision "
                                        "allows).")] = None,
         as_json: JsonOpt = False) -> None:
    """Ship today's model, precision and adapter as the next registry version (a job).

    Weights, tokenizer, SHA256SUMS, manifest.toml and a model card; `current` moves to it.
    Identical content creates no new version. Exit 1 when the merge changed outputs."""
    ws = workspace(as_json)
    try:
        plan_ship(ws, name, merge)   # a missing lock / eval run / bad name: exit 2 before any job
    except WeightgateError as exc:
        fail(exc, as_json)
    result = run_job_to_end("ship", {"name": name, "merge": merge}, as_json)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    elif result.get("ok"):
        verb = "shipped" if result.get("created") else "unchanged, now current:"
        print(f"{verb} {result['release']} ({result['relation']}) at {result['path']}")
    else:
        print(f"not shipped: {result.get('refused') or result.get('error')}", file=sys.stderr)
    raise typer.Exit(EXIT_OK if result.get("ok") else EXIT_FAILED)


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
    print(json.dumps(outcome, indent=2) if as_json else
          f"current: {outcome['name']}@{outcome['current']} (was {outcome['from']}); previous: {outcome['previous']}")


@command(app)
def alias(name_of_alias: Annotated[str, typer.Argument(metavar="ALIAS", help="A custom alias, e.g. staging.")],
          version: Annotated[Optional[str], typer.Argument(help="Version or alias it points to.")] = None,
          remove: Annotated[bool, typer.Option("--remove", help="Remove the alias.")] = False,
          name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Point a custom alias at a version, or remove it.

    Every move goes to history.jsonl; `current` and `previous` move only by ship and rollback."""
    ws = workspace(as_json)
    if (version is None) != remove:
        fail(InputError("give VERSION, or --remove without one", hint="weightgate release alias staging v2"), as_json)
    try:
        aliases = set_alias(ws, name_of_alias, version, name)
    except WeightgateError as exc:
        fail(exc, as_json)
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
def health(version: VersionArg,
           timeout: Annotated[float, typer.Option("--timeout", min=0.0,
                                                  help="Seconds until not ready (exit 3).")] = 120.0,
           sizes_only: Annotated[bool, typer.Option("--sizes-only",
                                                    help="Check file sizes instead of re-hashing (faster).")] = False,
           name: NameOpt = None, as_json: JsonOpt = False) -> None:
    ws = workspace(as_json)
    ref = _ref(ws, version, name, as_json)
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
def canary(version: CurrentArg = "current", name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Re-run the task set on VERSION as shipped and compare (a job; for cron).

    VERSION is verified first, then the task eval set (its `canary`-tagged cases if any) runs on
    it as loaded from the registry and is compared with the results it shipped with. Reports a
    base that moved upstream. Exit 1 on a regression or a changed file."""
    ws = workspace(as_json)
    ref = _ref(ws, version, name, as_json)
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
    """The vLLM, TGI and transformers commands that serve VERSION as shipped."""
    ws = workspace(as_json)
    ref = _ref(ws, version, name, as_json)
    try:
        commands = serve_commands(read_manifest(ref.path), ref.path, ws.root)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps({"version": ref.label, **commands}, indent=2))
    else:
        for engine in ("vllm", "tgi", "transformers"):
            print(f"# {engine}\n{commands[engine]}\n")
