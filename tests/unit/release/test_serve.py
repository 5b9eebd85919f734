"""`weightgate release serve` on the tiny model's shipped version: a real `transformers serve`
endpoint, probed with health / latency / canary through `--url`, then stopped by cancelling the
job (process gone, port free); a flipped byte refuses to serve."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from helpers import flip_byte
from release_helpers import shippable_workspace

from weightgate.core.gates import compute_report
from weightgate.core.registry import store as registry

ROOT = Path(__file__).resolve().parents[3]
CASES = 5
OVERRIDE = "tests: serving mechanics on a workspace that walks phase 1 only"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The tiny model (no adapter) shipped as v1 and under check ([decisions] release), its task run's
    expected answers set to what the model says for three cases, so the shipped results have passes."""
    from weightgate.core.release.ship import ship

    ws, _, run = shippable_workspace(tmp_path_factory.mktemp("serve"), cases=CASES, max_new_tokens=6)
    outcome = ship(ws, latency=False, override=OVERRIDE)
    assert outcome["version"] == "v1" and outcome["relation"] == "base"
    return {"ws": ws, "run": run, "ref": registry.resolve(ws, "v1")}


def wg(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "weightgate", *map(str, args)], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


def port_free(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
        except OSError:
            return False
    return True


def test_serve_then_health_latency_canary_through_the_url_then_cancel_stops_it(env):
    ws, ref = env["ws"], env["ref"]
    out = wg("-w", ws.root, "release", "serve", "v1", "--json", "--timeout", "180")
    assert out.returncode == 0, out.stdout + out.stderr
    served = json.loads(out.stdout)
    url, pid, job = served["url"], served["pid"], served["job"]
    try:
        assert url.startswith("http://127.0.0.1:") and served["version"] == ref.label
        assert psutil.Process(pid).is_running()
        # The server's command line is the venv's transformers serve on the version directory, on loopback.
        cmdline = psutil.Process(pid).cmdline()
        assert cmdline[:4] == [sys.executable, "-m", "transformers.cli.transformers", "serve"]
        assert str(ref.path) in cmdline and cmdline[cmdline.index("--host") + 1] == "127.0.0.1"
        # The Deployment screen's view shows the endpoint on v1.
        from weightgate.core.release.views import read_versions

        row = next(r for r in read_versions(ws).versions if r["version"] == "v1")
        assert row["endpoints"] == [{"job": job, "url": url, "pid": pid, "version": ref.label}]

        out = wg("-w", ws.root, "release", "health", "--url", url, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        health = json.loads(out.stdout)
        assert health["ready"] and health["health"]["status_code"] == 200 and health["model"] == str(ref.path)
        assert health["answer_tokens"] > 0 and health["serve_job"] == job and health["cold_start_s"] > 0
        item = compute_report(ws).item("ship.health")
        assert item.status == "pass" and item.values["url"] == url

        out = wg("-w", ws.root, "release", "latency", "--url", url, "--concurrency", "1,2", "--requests", "4",
                 "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        latency = json.loads(out.stdout)
        assert [row["concurrency"] for row in latency["batch_sizes"]] == [1, 2]
        for row in latency["batch_sizes"]:
            assert 0 < row["ttft_ms"]["p50"] <= row["latency_ms"]["p50"] and row["tokens_out"] > 0
            assert row["ttft_ms"]["p50"] <= row["ttft_ms"]["p95"]
        item = compute_report(ws).item("ship.latency")
        assert item.status == "pass" and item.values["url"] == url

        out = wg("-w", ws.root, "release", "canary", "--url", url, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        canary = json.loads(out.stdout)
        # Greedy through the endpoint equals greedy in-process: same outputs, same score as shipped.
        assert canary["ok"] and canary["cases"] == CASES and canary["regressions"] == []
        assert canary["changed"] == [] and canary["score"] == canary["shipped_score"] == pytest.approx(3 / CASES)
        assert canary["url"] == url and url in canary["detail"]
        assert compute_report(ws).item("ship.canary").status == "pass"
    finally:
        cancelled = wg("-w", ws.root, "cancel", job)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert port_free(url)
    out = wg("-w", ws.root, "jobs", "--json")
    state = next(j["state"] for j in json.loads(out.stdout) if j["job_id"] == job)
    assert state == "cancelled"
    events = [json.loads(line) for line in (ws.jobs_dir / job / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "log" and e["payload"].get("stopped") for e in events)


def test_a_flipped_byte_refuses_to_serve_naming_the_file(env):
    ws, ref = env["ws"], env["ref"]
    target = ref.path / "model.safetensors"
    original = flip_byte(target)
    try:
        out = wg("-w", ws.root, "release", "serve", "v1", "--timeout", "60")
    finally:
        target.write_bytes(original)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "model.safetensors (changed)" in out.stderr
    # Nothing was started: no server process of this version is left.
    assert not [p for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] and "transformers.cli.transformers" in p.info["cmdline"]
                and str(ref.path) in p.info["cmdline"]]


def test_a_probe_refuses_an_endpoint_serving_another_version(env, tmp_path):
    """served_model: an endpoint whose model is another directory of this registry is not this version."""
    import httpx2

    from weightgate.core.release.remote import served_model

    ref = env["ref"]
    other = str(ref.path.parent / "v9")

    def handler(request):
        return httpx2.Response(200, json={"object": "list", "data": [{"id": other, "object": "model"}]})

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    from weightgate.core.engine.errors import InputError

    with pytest.raises(InputError, match="serves .*v9, not"):
        served_model(http, "http://127.0.0.1:1", ref)
    assert served_model(httpx2.Client(transport=httpx2.MockTransport(
        lambda request: httpx2.Response(200, json={"data": [{"id": ref.name}, {"id": "x-base"}]}))),
        "http://127.0.0.1:1", ref) == ref.name
