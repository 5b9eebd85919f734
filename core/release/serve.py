"""`weightgate release serve VERSION`: the `serve` job runs a real OpenAI-compatible server
(`transformers serve`, transformers' own FastAPI server) on exactly the verified files of a
shipped version, until the job is cancelled (`weightgate cancel JOB`).

1. The version is re-hashed against SHA256SUMS first; a changed, missing or extra file refuses
   (the error names it), and so does a version `transformers serve` cannot serve as evaluated (an
   adapter version: see core.registry.serving).
2. The server starts in the job's process group (so cancel's SIGTERM, and its SIGKILL after the
   grace period, reach it and every process it starts) and dies with the job besides (Linux
   PDEATHSIG), offline (HF_HUB_OFFLINE: it loads the local directory, never a hub) and without any
   hub token in its environment. Bound to 127.0.0.1 unless a host is given; a free port unless one is.
3. Ready = GET /health answers 200 and a one-token chat completion answers; progress meanwhile,
   a timeout after. Then the journal gets `serving at URL` with the URL, PID and version (a log
   event with those fields: core.release.views finds endpoints by it).
4. Then the job waits on the server; cancel stops it (SIGTERM, then SIGKILL) before the job ends.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.jobs import cancel_job, events_path, read_status, start_job
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.serving import (
    DEFAULT_HOST,
    served_names,
    transformers_serve_options,
    transformers_serve_refusal,
)
from weightgate.core.registry.store import VersionRef
from weightgate.core.release import endpoint
from weightgate.core.release.load import verified_version

READY_TIMEOUT_S = 300.0
STOP_GRACE_S = 15.0
SERVER_LOG = "server.log"
SERVING_PREFIX = "serving at "


class ServeRefused(InputError):
    exit_code = 1


def free_port(host: str = DEFAULT_HOST) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def url_for(host: str, port: int) -> str:
    """The URL a local client uses: a wildcard bind is reached through loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_command(ref: VersionRef, manifest: dict, host: str, port: int, *,
                   continuous_batching: bool = False) -> list[str]:
    """The venv's own `transformers serve` (this interpreter's), on the version directory.
    continuous_batching: its paged-attention scheduler, which batches concurrent requests
    (tests/bench/serve_latency.py, demo model on 2 CPU cores: endpoint / in-process tokens/s 0.71
    at concurrency 4 and 8 with it, 0.42 and 0.35 without); off by default, as the canary's
    greedy outputs are checked equal to the shipped run's without it."""
    why = transformers_serve_refusal(manifest)
    if why:
        raise ServeRefused(f"{ref.label}: {why}", path=ref.path)
    return [sys.executable, "-m", "transformers.cli.transformers", "serve",
            *transformers_serve_options(manifest, ref.path, host=host, port=port), "--log-level", "warning",
            *(["--continuous-batching"] if continuous_batching else [])]


def _server_env() -> dict:
    env = {key: value for key, value in os.environ.items()
           if not (key.startswith("HF_") and "TOKEN" in key) and key != "HUGGING_FACE_HUB_TOKEN"}
    # The server loads the verified local directory; it must never fetch anything in its place.
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1")
    return env


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the job process dies, even by SIGKILL."""
    try:
        import ctypes  # lazy: only in the forked child, just before exec

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: cancel still signals the whole process group


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_ready(process: subprocess.Popen, url: str, model: str, timeout: float, log_path: Path,
               progress=None) -> float:
    """Seconds until the server answered /health and a one-token chat completion."""
    began = time.monotonic()
    last_report = -10.0
    with endpoint.client(timeout=30.0) as http:
        while True:
            waited = time.monotonic() - began
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode} before it was ready:\n"
                                   f"{_tail(log_path)}")
            if waited > timeout:
                raise TimeoutError(f"the server was not ready within {timeout:g} s (see {log_path})")
            if endpoint.health(http, url)["ok"]:
                try:
                    endpoint.chat(http, url, model, [{"role": "user", "content": "ping"}], 1)
                    return time.monotonic() - began
                except endpoint.EndpointError:
                    pass   # up, model still loading
            if progress is not None and waited - last_report >= 2.0:
                progress(round(waited, 1), timeout)
                last_report = waited
            time.sleep(0.25)


def stop_server(process: subprocess.Popen, grace: float = 10.0) -> list[int]:
    """SIGTERM the server and everything it started, SIGKILL what is left after `grace`; the pids stopped."""
    try:
        family = [psutil.Process(process.pid)]
        family += family[0].children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=grace)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(Exception):
        process.wait(timeout=1)
    return [member.pid for member in family]


def serve(ctx, ref: VersionRef, *, host: str = DEFAULT_HOST, port: int | None = None,
          timeout: float = READY_TIMEOUT_S, continuous_batching: bool = False) -> dict:
    """The body of the `serve` job (ctx: core.engine.job_process.JobContext); returns when the server
    stops by itself (an error), or raises JobCancelled after stopping it."""
    manifest = read_manifest(ref.path)
    command = server_command(ref, manifest, host, 0)   # refuses an adapter version before hashing anything
    ctx.log(f"verifying {ref.label} against SHA256SUMS")
    report = verified_version(ref)                      # ReleaseCorrupt names every changed file
    port = int(port or free_port(host))
    command = server_command(ref, manifest, host, port, continuous_batching=continuous_batching)
    url = url_for(host, port)
    if not is_loopback(host):
        ctx.log(f"binding {host}: the endpoint is reachable from the network, without authentication",
                level="warning")
    log_path = ctx.job_dir / SERVER_LOG
    ctx.declare_stop_grace(STOP_GRACE_S)
    with open(log_path, "ab") as server_log:
        process = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=ref.path, env=_server_env(), preexec_fn=_die_with_parent)
    ctx.log(f"started transformers serve (pid {process.pid}) on {ref.label}, {len(report.files)} verified "
            f"file(s); waiting for {url}")
    try:
        startup = wait_ready(process, url, str(ref.path), timeout, log_path,
                             progress=lambda done, total: ctx.progress(done, total, unit="s",
                                                                      message=f"waiting for {url}"))
        ctx.emit("log", {"message": f"{SERVING_PREFIX}{url} (pid {process.pid}, {ref.label}, ready in "
                                    f"{startup:.1f} s)", "level": "info", "url": url, "pid": process.pid,
                         "version": ref.label, "model": str(ref.path), "names": served_names(manifest),
                         "startup_s": round(startup, 3)})
        while process.poll() is None:
            time.sleep(0.5)
        raise RuntimeError(f"the server exited with code {process.returncode}:\n{_tail(log_path)}")
    finally:
        stopped = stop_server(process)
        ctx.emit("log", {"message": f"stopped the server at {url} (pids {stopped})", "level": "info", "url": url,
                         "stopped": True})


class NotServing(InputError):
    """The serve job ended before it served (its error says why)."""
    exit_code = 1


def start_serving(ws, ref: VersionRef, *, host: str = DEFAULT_HOST, port: int | None = None,
                  timeout: float = READY_TIMEOUT_S, continuous_batching: bool = False, on_start=None, on_log=None,
                  poll_s: float = 0.2):
    """Start the `serve` job for `ref` and follow it until it serves: (job handle, the "serving at"
    event's payload: url, pid, version). on_start(handle) runs once the job is started, on_log(message)
    sees its log lines meanwhile. Raises
    NotServing when the job ends first. The CLI (`release serve`) and the demo share this."""
    handle = start_job(ws.jobs_dir, "serve", {"version": ref.version, "name": ref.name, "host": host, "port": port,
                                              "timeout": timeout, "continuous_batching": continuous_batching},
                       workspace=ws.root)
    if on_start is not None:
        on_start(handle)
    offset = 0
    while True:
        events, offset = read_events(events_path(handle.job_dir), offset)
        for event in events:
            if event.kind in ("log", "error") and on_log is not None:
                on_log(str(event.payload.get("message", "")))
            if event.kind == "log" and str(event.payload.get("message", "")).startswith(SERVING_PREFIX):
                return handle, dict(event.payload)
        status = read_status(handle.job_dir)
        if status.is_terminal:
            raise NotServing(f"the serve job {handle.job_id} ended {status.state} before serving: "
                             f"{status.error or status.detail or 'no reason given'}",
                             hint=f"weightgate attach {handle.job_id} replays its log")
        time.sleep(poll_s)


def stop_serving(ws, job_id: str, *, timeout: float = 60.0) -> str:
    """Cancel the serve job and wait for it to end (the server stopped); its final state."""
    job_dir = ws.jobs_dir / job_id
    cancel_job(job_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(job_dir)
        if status.is_terminal:
            return status.state
        time.sleep(0.2)
    return read_status(job_dir).state
