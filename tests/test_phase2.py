"""Phase 2 end to end through the CLI: shortlist from metadata, fetch (hub job or local lock),
verify, and the verification items decided from the lock, trust tables and evidence."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.gates import compute_report
from core.licenses import check_licence, classify
from core.workspace import init_workspace
from tests.helpers import add_candidate
from tests.hub_emulator import hub, llama_repo_files  # noqa: F401 - `hub` is a fixture
from tests.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]


def wg(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tui.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def items(ws_root) -> dict:
    data = json.loads(wg("-w", ws_root, "status", "--json").stdout)
    return {i["id"]: i for p in data["phases"] for i in p["items"]}


@pytest.fixture
def local_model(tmp_path):
    path = build_tiny_model(tmp_path / "tiny")
    (path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    return path


def test_licences_against_intended_use():
    assert classify("apache-2.0") == "permissive"
    assert check_licence("apache-2.0", {"commercial": True}).status == "pass"
    assert check_licence("cc-by-nc-4.0", {"commercial": True}).status == "fail"
    assert check_licence("cc-by-nc-4.0", {"commercial": False}).status == "pass"
    assert check_licence("llama3.1", {"commercial": True}).status == "pass"
    assert check_licence("cc-by-nd-4.0", {"commercial": False, "distribution": True}).status == "fail"
    assert check_licence("", {}).status == "fail"
    unknown = check_licence("other", {"commercial": True})
    assert unknown.status == "fail" and "[decisions.license]" in unknown.detail
    reviewed = {"id": "other", "allows_commercial": True, "allows_distribution": False, "note": "read §3"}
    assert check_licence("other", {"commercial": True}, reviewed).status == "pass"
    assert check_licence("other", {"commercial": True, "distribution": True}, reviewed).status == "fail"


def test_shortlist_smallest_first(tmp_path):
    ws = init_workspace(tmp_path)
    assert compute_report(ws).item("select.shortlist").status == "todo"
    add_candidate(ws, "org/big", 8_000_000_000)
    status = compute_report(ws).item("select.shortlist")
    assert status.status == "pass" and "warning" in status.detail
    add_candidate(ws, "org/small", 135_000_000)
    status = compute_report(ws).item("select.shortlist")
    assert status.status == "fail" and "org/small (135M) should come before org/big" in status.detail


def test_local_model_add_fetch_verify_then_tamper(tmp_path, local_model):
    ws = init_workspace(tmp_path / "w")
    out = wg("-w", ws.root, "add", local_model, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["parameter_count"] > 100_000
    assert wg("-w", ws.root, "choose", local_model, "--reason", "the only candidate").returncode == 0
    out = wg("-w", ws.root, "fetch", "--json")
    assert out.returncode == 0, out.stderr
    state = items(ws.root)
    for item_id in ("verify.safetensors", "verify.checksum", "verify.headers", "verify.pickle",
                    "verify.remote_code", "verify.source", "verify.license", "select.shortlist"):
        assert state[item_id]["status"] == "pass", (item_id, state[item_id]["detail"])
    assert "computed locally" in state["verify.checksum"]["detail"]

    # Touching a weight file makes the hash evidence stale (no re-hash at status time).
    weights = local_model / "model.safetensors"
    os.utime(weights, (1, 1))
    assert items(ws.root)["verify.checksum"]["status"] == "stale"
    out = wg("-w", ws.root, "verify")
    assert out.returncode == 0, out.stdout + out.stderr
    assert items(ws.root)["verify.checksum"]["status"] == "pass"

    # One flipped byte: verify exits 1 naming the file, the item fails.
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = wg("-w", ws.root, "verify", "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert [f["path"] for f in report["files"] if f["status"] == "mismatch"] == ["model.safetensors"]
    state = items(ws.root)["verify.checksum"]
    assert state["status"] == "fail" and "model.safetensors" in state["detail"]


def test_non_commercial_licence_fails_for_commercial_use(tmp_path, local_model):
    (local_model / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n")
    ws = init_workspace(tmp_path / "w")
    assert wg("-w", ws.root, "fetch", local_model).returncode == 0
    state = items(ws.root)["verify.license"]
    assert state["status"] == "fail" and "commercial" in state["detail"]


def test_hub_fetch_job_locks_and_records_evidence(tmp_path, hub):
    repo = "org/tiny-llama"
    sha = hub.commit(repo, llama_repo_files())
    ws = init_workspace(tmp_path / "w")
    out = wg("-w", ws.root, "add", repo, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["commit"] == sha
    assert wg("-w", ws.root, "choose", repo, "--reason", "smallest").returncode == 0
    out = wg("-w", ws.root, "fetch", "--attach", "--json", timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert events[-1]["kind"] == "result" and events[-1]["payload"]["data"]["commit"] == sha
    state = items(ws.root)
    for item_id in ("verify.safetensors", "verify.checksum", "verify.headers", "verify.pickle",
                    "verify.remote_code", "verify.source", "verify.license"):
        assert state[item_id]["status"] == "pass", (item_id, state[item_id]["detail"])
    assert sha[:12] in state["verify.source"]["detail"]
    assert "published" in state["verify.checksum"]["detail"]
    # The skipped pickle never reached the lock.
    assert "pytorch_model.bin" not in ws.lock_path.read_text()


def test_remote_code_needs_trust_at_the_locked_commit(tmp_path, hub):
    repo = "org/custom"
    files = llama_repo_files(config_extra={"auto_map": {"AutoModelForCausalLM": "modeling_x.X"}},
                             with_pickle=False)
    files["modeling_x.py"] = b"class X: pass\n"
    sha = hub.commit(repo, files)
    ws = init_workspace(tmp_path / "w")
    out = wg("-w", ws.root, "fetch", repo, "--attach", timeout=180)
    assert out.returncode == 1   # refused without consent
    assert not ws.lock_path.exists()
    assert wg("-w", ws.root, "trust", "remote-code", f"{repo}@main", "--note", "x").returncode == 2
    assert wg("-w", ws.root, "trust", "remote-code", f"{repo}@{sha}", "--note", "read modeling_x.py").returncode == 0
    out = wg("-w", ws.root, "fetch", repo, "--attach", timeout=180)
    assert out.returncode == 0, out.stdout[-2000:]
    state = items(ws.root)["verify.remote_code"]
    assert state["status"] == "pass" and sha[:12] in state["detail"]


def test_verified_snapshot_rehashes_only_changed_and_refuses_tampered(tmp_path, local_model):
    from core.candidates import start_fetch
    from core.errors import InputError
    from core.weights_checks import verified_snapshot

    ws = init_workspace(tmp_path / "w")
    start_fetch(ws, str(local_model))
    assert verified_snapshot(ws) == local_model
    weights = local_model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="model.safetensors"):
        verified_snapshot(ws)
    assert compute_report(ws).item("verify.checksum").status == "fail"
