"""`weightgate release serve / latency` and the `--url` probes of `health` and `canary`: a real
OpenAI-compatible endpoint for a shipped version, and the phase-6 checks run against one
(core.release.serve, core.release.remote). Registered on the `release` group (release.py)."""

import json
import sys
from typing import Annotated, Optional

import typer

from weightgate.core.engine.errors import InputError, WeightgateError
from weightgate.core.engine.workspace import Workspace
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.serving import DEFAULT_HOST, transformers_serve_refusal
from weightgate.core.registry.store import VersionRef
from weightgate.core.release.serve import READY_TIMEOUT_S, NotServing
from weightgate.core.release.serve import start_serving as start_serving_job
from weightgate.tui.cli.common import EXIT_FAILED, EXIT_OK, JsonOpt, NameOpt, command, fail, say_if_locked, workspace

ReleaseArg = Annotated[Optional[str], typer.Argument(
    help="Version or alias (default: the release under check, \\[decisions] release).")]
_RELEASE_REF = []   # release.py's _release_ref, given by register(): VERSION resolves the same way everywhere

UrlOpt = Annotated[Optional[str], typer.Option(
    "--url", help="Probe this OpenAI-compatible endpoint (default: \\[serving] url; none: in-process).")]


def endpoint_or_none(ws: Workspace, url: Optional[str], as_json: bool) -> Optional[str]:
    from weightgate.core.release.remote import endpoint_url  # lazy: the eval stack only for a command that probes

    try:
        return endpoint_url(ws, url)
    except WeightgateError as exc:
        fail(exc, as_json)


def start_serving(ws: Workspace, ref: VersionRef, host: str, port: Optional[int], timeout: float,
                  as_json: bool, continuous_batching: bool = False) -> None:
    """Start the serve job, follow it until it serves (or fails), print the URL and how to stop it."""
    try:
        why = transformers_serve_refusal(read_manifest(ref.path))
    except WeightgateError as exc:
        fail(exc, as_json)
    if why:
        fail(InputError(f"{ref.label}: {why}"), as_json)
    say_if_locked(ws, 6, "this endpoint")
    try:
        handle, ready = start_serving_job(
            ws, ref, host=host, port=port, timeout=timeout, continuous_batching=continuous_batching,
            on_start=None if as_json else (lambda handle: print(
                f"job {handle.job_id}: serving {ref.label} (stop it: weightgate cancel {handle.job_id})", flush=True)),
            on_log=None if as_json else (lambda message: print(f"  {message}", flush=True)))
    except NotServing as exc:
        if as_json:
            print(json.dumps({"ok": False, **exc.to_dict()}, indent=2))
            raise typer.Exit(EXIT_FAILED) from None
        fail(exc, as_json)
    except KeyboardInterrupt:
        print("\ndetached; the serve job goes on: weightgate jobs lists it", file=sys.stderr)
        raise typer.Exit(EXIT_OK) from None
    if as_json:
        print(json.dumps({"ok": True, "job": handle.job_id, **ready}, indent=2))
    else:
        print(f"{ready['url']}  (pid {ready['pid']}; probe it: weightgate release health --url {ready['url']}; "
              f"stop it: weightgate cancel {handle.job_id})")


def register(app: typer.Typer, release_ref) -> None:
    """Add `serve` and `latency` to the release group."""
    _RELEASE_REF[:] = [release_ref]
    command(app, "serve")(serve)
    command(app, "latency")(latency)


def serve(version: ReleaseArg = None,
          host: Annotated[str, typer.Option("--host", help="Address to bind (beyond loopback only if asked).")]
          = DEFAULT_HOST,
          port: Annotated[Optional[int], typer.Option("--port", min=1, max=65535,
                                                      help="Port (default: a free one).")] = None,
          timeout: Annotated[float, typer.Option("--timeout", min=1.0,
                                                 help="Seconds to wait until it answers.")] = READY_TIMEOUT_S,
          continuous_batching: Annotated[bool, typer.Option(
              "--continuous-batching",
              help="Batch concurrent requests (paged attention): more tokens/s under load.")] = False,
          name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Serve VERSION as shipped on an OpenAI-compatible endpoint (a job).

    `transformers serve` on exactly the verified files: VERSION is re-hashed against SHA256SUMS
    first and a changed file refuses it. Bound to 127.0.0.1 unless --host says otherwise; the URL
    and the server's PID go to the job's journal and the Deployment screen. Stop it with
    `weightgate cancel JOB`. An adapter version cannot be served this way (ship it merged, or use
    the vLLM / SGLang command of `weightgate release serve-commands`)."""
    ws = workspace(as_json)
    start_serving(ws, _RELEASE_REF[0](ws, version, name, as_json), host, port, timeout, as_json, continuous_batching)


def latency(version: ReleaseArg = None, url: UrlOpt = None,
            concurrency: Annotated[Optional[str], typer.Option(
                "--concurrency", help="Comma-separated (default: 1 and \\[requirements] batch_size).")] = None,
            requests: Annotated[Optional[int], typer.Option("--requests", min=1,
                                                            help="Requests per level (default 8).")] = None,
            name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """TTFT and tokens/s of an endpoint serving VERSION, against the ceilings.

    Streams the task set's prompts through the endpoint at each concurrency: time to the first
    streamed token, per-request tokens/s, p50 / p95, checked against \\[requirements.ceilings].
    Needs --url or \\[serving] url (ship measures the version in-process). Exit 1 over a ceiling."""
    from weightgate.core.release.remote import endpoint_latency  # lazy: the eval stack only for a command that probes

    ws = workspace(as_json)
    ref = _RELEASE_REF[0](ws, version, name, as_json)
    where = endpoint_or_none(ws, url, as_json)
    if where is None:
        fail(InputError("no endpoint to measure", hint="--url http://127.0.0.1:PORT, or [serving] url in "
                                                       "weightgate.toml (weightgate release serve starts one)"),
             as_json)
    try:
        levels = [int(part) for part in concurrency.split(",")] if concurrency else None
        result = endpoint_latency(ws, ref, where, concurrency=levels, requests=requests)
    except ValueError:
        fail(InputError(f"--concurrency takes integers, e.g. 1,4,8; got {concurrency!r}"), as_json)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for row in result["batch_sizes"]:
            print(f"concurrency {row['concurrency']:>2}: ttft p50 {row['ttft_ms']['p50']:.0f} / p95 "
                  f"{row['ttft_ms']['p95']:.0f} ms  latency p95 {row['latency_ms']['p95']:.0f} ms  "
                  f"{row['tokens_per_s']['p50']:.1f} tok/s per request, {row['throughput_tokens_per_s']:.1f} "
                  "tok/s in all")
        verdict = "within ceilings" if result["within"] else "; ".join(
            result["violations"] + [f"no ceiling {k}" for k in result["missing_ceilings"]])
        print(f"{ref.label} at {where}: {verdict}")
    raise typer.Exit(EXIT_OK if result["within"] else EXIT_FAILED)


def health_at(ws: Workspace, ref: VersionRef, url: str, as_json: bool) -> None:
    from weightgate.core.release.remote import endpoint_health  # lazy: the eval stack only for a command that probes

    try:
        result = endpoint_health(ws, ref, url)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"{ref.label}: {result['status']}: {result['detail']}")
        if result["ready"]:
            print(f"  first request {result['first_request_ms']:.0f} ms, warm {result['warm_request_ms']:.0f} ms, "
                  f"answer {result['answer']!r}")
    raise typer.Exit(EXIT_OK if result["ready"] else EXIT_FAILED)


def canary_at(ws: Workspace, ref: VersionRef, url: str, as_json: bool) -> dict:
    from weightgate.core.release.remote import endpoint_canary  # lazy: the eval stack only for a command that probes

    try:
        return endpoint_canary(ws, ref, url, log=(lambda line: None) if as_json else print)
    except WeightgateError as exc:
        fail(exc, as_json)
