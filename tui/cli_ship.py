"""Phase 6 commands: `ship`, `versions`, `rollback`, `verify-release`, `health`, `canary`,
`serve-commands`. `ship` and `canary` load torch, so they run as detached jobs that these
commands follow to the end (Ctrl-C detaches; `weightgate attach JOB` re-attaches); `health`
runs its own cold subprocess; the rest are quick and torch-free.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

EXIT_OK, EXIT_FAILED = 0, 1

HEALTH_HELP = """Readiness probe: a cold subprocess verifies VERSION's files against SHA256SUMS, loads it
exactly as shipped (transformers, + peft for an adapter), answers a ping, and reports cold-start
time and first-request latency.

\b
Exit codes:
  0  ready
  1  not ready: a file does not match, the load failed, or the answer was empty
  2  bad input: no such version or manifest
  3  timeout: not ready within --timeout seconds (the probe is killed)"""


def add_ship_commands(app, workspace, fail) -> None:
    import typer

    from weightgate.core.engine.errors import WeightgateError

    def follow(kind: str, params: dict, as_json: bool) -> dict:
        """Start the job, print its log lines as they come (not with --json), return its result."""
        from weightgate.core.engine.events import read_events
        from weightgate.core.engine.jobs import events_path, follow_job, read_status, start_job

        ws = workspace(as_json)
        handle = start_job(ws.jobs_dir, kind, params, workspace=ws.root)
        try:
            for event in follow_job(handle.job_dir):
                if not as_json and event.kind in ("log", "error"):
                    print(event.payload.get("message") or json.dumps(event.payload), flush=True)
        except KeyboardInterrupt:
            print(f"\ndetached; the job goes on: weightgate attach {handle.job_id}", file=sys.stderr)
            raise typer.Exit(EXIT_OK)
        events, _ = read_events(events_path(handle.job_dir))
        results = [event for event in events if event.kind == "result"]
        data = results[-1].payload.get("data") if results else None
        if data is None:
            state = read_status(handle.job_dir).state
            errors = [e.payload.get("message", "") for e in events if e.kind == "error"]
            data = {"ok": False, "job": handle.job_id, "state": state,
                    "error": errors[-1] if errors else f"the {kind} job ended {state}"}
        data.setdefault("job", handle.job_id)
        return data

    def ref_of(ws, version: Optional[str], name: Optional[str], as_json: bool):
        from weightgate.core.release.registry import resolve

        try:
            return resolve(ws, version, name)
        except WeightgateError as exc:
            fail(exc, as_json)

    @app.command("ship")
    def ship_cmd(name: Optional[str] = typer.Option(None, "--name", help="Registry name (default: the current "
                                                                          "release's, else the model's)."),
                 merge: Optional[bool] = typer.Option(None, "--merge/--no-merge",
                                                      help="Merge the adapter into the base (16/32-bit only) or "
                                                           "keep it separate (default: \\[decisions] merge, else "
                                                           "merge when the precision allows)."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Ship today's model + precision + adapter as the next registry version (a job): weights,
        tokenizer, SHA256SUMS, manifest.toml, model card; `current` moves to it. Identical content
        creates no new version. Exit 1 when the merge changed outputs."""
        from weightgate.core.release.ship import plan_ship

        ws = workspace(as_json)
        try:
            plan_ship(ws, name, merge)   # a missing lock / eval run / bad name: exit 2 before any job
        except WeightgateError as exc:
            fail(exc, as_json)
        result = follow("ship", {"name": name, "merge": merge}, as_json)
        if as_json:
            print(json.dumps(result, indent=2, default=str))
        elif result.get("ok"):
            verb = "shipped" if result.get("created") else "unchanged, now current:"
            print(f"{verb} {result['release']} ({result['relation']}) at {result['path']}")
        else:
            print(f"not shipped: {result.get('refused') or result.get('error')}", file=sys.stderr)
        raise typer.Exit(EXIT_OK if result.get("ok") else EXIT_FAILED)

    @app.command("versions")
    def versions_cmd(name: Optional[str] = typer.Option(None, "--name"),
                     as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Shipped versions, oldest first, with their aliases, relation, scores and serve commands."""
        from weightgate.core.release.versions import list_release_versions

        ws = workspace(as_json)
        try:
            listing = list_release_versions(ws, name)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps(listing, indent=2, default=str))
            return
        if not listing["versions"]:
            print(f"nothing shipped under {listing['name']!r} yet: weightgate ship")
            return
        for row in listing["versions"]:
            aliases = ",".join(row["aliases"])
            scores = " ".join(f"{e['set']} {e['score']}" for e in row["evals"])
            print(f"{row['version']:<5} {aliases:<18} {row['relation']:<9} {row['precision']:<5} {row['created_utc']}  "
                  f"{scores}")

    @app.command("rollback")
    def rollback_cmd(version: Optional[str] = typer.Argument(None, help="Version or alias (default: previous)."),
                     name: Optional[str] = typer.Option(None, "--name"),
                     as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Move `current` to VERSION (default: `previous`); `previous` takes the old current. The move
        is appended to history.jsonl and \\[decisions] release follows."""
        from weightgate.core.release.registry import rollback

        ws = workspace(as_json)
        try:
            outcome = rollback(ws, version, name)
        except WeightgateError as exc:
            fail(exc, as_json)
        print(json.dumps(outcome, indent=2) if as_json else
              f"current: {outcome['name']}@{outcome['current']} (was {outcome['from']}); "
              f"previous: {outcome['previous']}")

    @app.command("alias")
    def alias_cmd(alias: str = typer.Argument(..., help="A custom alias, e.g. staging."),
                  version: Optional[str] = typer.Argument(None, help="Version or alias it points to."),
                  remove: bool = typer.Option(False, "--remove", help="Remove the alias."),
                  name: Optional[str] = typer.Option(None, "--name"),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Point a custom alias at a version (or --remove it); every move goes to history.jsonl.
        `current` and `previous` move only by ship and rollback."""
        from weightgate.core.engine.errors import InputError
        from weightgate.core.release.registry import set_alias

        ws = workspace(as_json)
        if (version is None) != remove:
            fail(InputError("give VERSION, or --remove without one", hint="weightgate alias staging v2"), as_json)
        try:
            aliases = set_alias(ws, alias, version, name)
        except WeightgateError as exc:
            fail(exc, as_json)
        print(json.dumps(aliases, indent=2) if as_json else
              ", ".join(f"{k} -> {v}" for k, v in sorted(aliases.items())))

    @app.command("verify-release")
    def verify_release_cmd(version: str = typer.Argument(..., help="Version or alias, e.g. v2, current."),
                           name: Optional[str] = typer.Option(None, "--name"),
                           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Re-hash every file of VERSION against its SHA256SUMS (in parallel); name each changed,
        missing or extra file. Exit 1 on any."""
        from weightgate.core.release.verify import verify_version, write_stamp

        ws = workspace(as_json)
        ref = ref_of(ws, version, name, as_json)
        try:
            report = verify_version(ref)
        except WeightgateError as exc:
            fail(exc, as_json)
        write_stamp(ws, ref, report)
        if as_json:
            print(json.dumps({k: v for k, v in report.to_dict().items() if k not in ("expected", "actual")},
                             indent=2))
        else:
            for path, status in report.problems().items():
                print(f"{status:<8} {path}")
            print(report.summary())
        raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)

    @app.command("health", help=HEALTH_HELP)
    def health_cmd(version: str = typer.Argument(..., help="Version or alias, e.g. v2, current."),
                   timeout: float = typer.Option(120.0, "--timeout", min=0.0, help="Seconds until not ready (exit 3)."),
                   sizes_only: bool = typer.Option(False, "--sizes-only",
                                                   help="Check file sizes instead of re-hashing (faster)."),
                   name: Optional[str] = typer.Option(None, "--name"),
                   as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        from weightgate.core.release.health import health

        ws = workspace(as_json)
        ref = ref_of(ws, version, name, as_json)
        result = health(ws, ref, timeout=timeout, sizes_only=sizes_only)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2, default=str))
        else:
            print(f"{result.version}: {result.status}: {result.detail}")
            if result.ready:
                print(f"  cold start {result.cold_start_s:.2f} s (load {result.load_seconds:.2f} s, verify "
                      f"{result.verify_seconds:.2f} s), first request {result.first_request_ms:.0f} ms, "
                      f"answer {result.answer!r}")
        raise typer.Exit(result.exit_code)

    @app.command("canary")
    def canary_cmd(version: str = typer.Argument("current", help="Version or alias (default: current)."),
                   name: Optional[str] = typer.Option(None, "--name"),
                   as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Verify VERSION, re-run the task eval set (its `canary`-tagged cases if any) on it as loaded
        from the registry (a job), and compare with the results it shipped with. Reports a base
        that moved upstream. Exit 1 on a regression or a changed file (for cron)."""
        ws = workspace(as_json)
        ref = ref_of(ws, version, name, as_json)
        result = follow("canary", {"version": ref.version, "name": ref.name}, as_json)
        if as_json:
            print(json.dumps(result, indent=2, default=str))
        else:
            print(f"{ref.label}: {'pass' if result.get('ok') else 'FAIL'}: "
                  f"{result.get('detail') or result.get('error')}")
            upstream = result.get("upstream") or {}
            if upstream and not upstream.get("moved"):
                print(f"  upstream: {upstream.get('detail')}")
        raise typer.Exit(EXIT_OK if result.get("ok") else EXIT_FAILED)

    @app.command("serve-commands")
    def serve_commands_cmd(version: str = typer.Argument("current", help="Version or alias (default: current)."),
                           name: Optional[str] = typer.Option(None, "--name"),
                           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """The vLLM, TGI and transformers commands that serve VERSION as shipped."""
        from weightgate.core.release.manifest import read_manifest
        from weightgate.core.release.serving import serve_commands

        ws = workspace(as_json)
        ref = ref_of(ws, version, name, as_json)
        try:
            commands = serve_commands(read_manifest(ref.path), ref.path, ws.root)
        except WeightgateError as exc:
            fail(exc, as_json)
        if as_json:
            print(json.dumps({"version": ref.label, **commands}, indent=2))
        else:
            for engine in ("vllm", "tgi", "transformers"):
                print(f"# {engine}\n{commands[engine]}\n")
