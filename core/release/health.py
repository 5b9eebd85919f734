"""Readiness probe of a shipped version: a cold subprocess loads it exactly as shipped and
answers a ping within a timeout (see core.release.health_probe for what the child does).

Exit codes, fit for a readiness probe:
    0  ready: files verified, loaded, answered the ping
    1  not ready: a file does not match SHA256SUMS, the load failed, or the answer was empty
    2  bad input: no such version, no manifest
    3  timeout: not ready within --timeout seconds (the probe is killed)
Reported: cold start (process start -> model loaded, imports included), the load itself, the
verification, and the first request's latency. Torch-free here; torch loads in the child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from weightgate.core.engine.workspace import Workspace
from weightgate.core.registry.checks import record_for_release
from weightgate.core.registry.store import VersionRef

READY, NOT_READY, BAD_INPUT, TIMEOUT = 0, 1, 2, 3
EXIT_WORDS = {READY: "ready", NOT_READY: "not ready", BAD_INPUT: "bad input", TIMEOUT: "timeout"}
DEFAULT_TIMEOUT_S = 120.0


@dataclass
class HealthResult:
    version: str
    exit_code: int
    status: str
    detail: str
    timeout_s: float
    cold_start_s: float | None = None
    load_seconds: float | None = None
    verify_seconds: float | None = None
    first_request_ms: float | None = None
    warm_request_ms: float | None = None
    answer: str = ""
    probe: dict = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.exit_code == READY

    def to_dict(self) -> dict:
        return {**asdict(self), "ready": self.ready}


def check_health(ref: VersionRef, workspace_root: Path, *, timeout: float = DEFAULT_TIMEOUT_S,
                 sizes_only: bool = False) -> HealthResult:
    command = [sys.executable, "-m", "weightgate.core.release.health_probe", str(ref.path), str(workspace_root)]
    if sizes_only:
        command.append("--sizes-only")
    started = time.time()
    # Own process group: a timeout kills the probe and anything it started.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               cwd=ref.path.parent, start_new_session=True, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()
        return HealthResult(ref.label, TIMEOUT, EXIT_WORDS[TIMEOUT],
                            f"not ready within {timeout:g} s (killed the probe)", timeout)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    try:
        probe = json.loads(lines[-1]) if lines else {}
    except ValueError:
        probe = {}
    code = process.returncode if process.returncode in (READY, NOT_READY, BAD_INPUT) else NOT_READY
    if not probe:
        tail = stderr.strip().splitlines()[-1:] or ["no output"]
        return HealthResult(ref.label, NOT_READY, EXIT_WORDS[NOT_READY],
                            f"the probe died (exit {process.returncode}): {tail[0]}", timeout)
    loaded_at = probe.get("loaded_at")
    return HealthResult(ref.label, code, EXIT_WORDS[code], probe.get("detail", ""), timeout,
                        cold_start_s=round(loaded_at - started, 3) if loaded_at else None,
                        load_seconds=probe.get("load_seconds"), verify_seconds=probe.get("verify_seconds"),
                        first_request_ms=probe.get("first_request_ms"), warm_request_ms=probe.get("warm_request_ms"),
                        answer=probe.get("answer", ""), probe=probe)


def health(ws: Workspace, ref: VersionRef, *, timeout: float = DEFAULT_TIMEOUT_S, sizes_only: bool = False,
           record: bool = True) -> HealthResult:
    """check_health, and ship.health evidence when `ref` is the current release."""
    result = check_health(ref, ws.root, timeout=timeout, sizes_only=sizes_only)
    if record:
        note = result.detail if result.detail.startswith(result.status) else f"{result.status}: {result.detail}"
        if result.ready:
            note += f"; cold start {result.cold_start_s:.1f} s, first request {result.first_request_ms:.0f} ms"
        record_for_release(ws, ref, "ship.health", result.ready, result.to_dict(), note)
    return result
