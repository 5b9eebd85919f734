"""Phase 2 end to end through the CLI: shortlist from metadata, fetch (hub job or local lock),
verify, and the verification items decided from the lock, trust tables and evidence."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import add_candidate
from hub_emulator import hub, llama_repo_files  # noqa: F401 - `hub` is a fixture
from tiny_model import build_tiny_model

from weightgate.core.engine.workspace import init_workspace
from weightgate.core.gates import compute_report
from weightgate.core.weights.licenses import check_licence, classify

ROOT = Path(__file__).resolve().parents[3]


def wg(*args, timeout=120):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "weightgate", *map(str, args)], cwd=ROOT, env=env,
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
    out = wg("-w", ws.root, "weights", "add", local_model, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["parameter_count"] > 100_000
    assert wg("-w", ws.root, "weights", "choose", local_model, "--reason", "the only candidate").returncode == 0
    out = wg("-w", ws.root, "weights", "fetch", "--json")
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
    out = wg("-w", ws.root, "weights", "verify")
    assert out.returncode == 0, out.stdout + out.stderr
    assert items(ws.root)["verify.checksum"]["status"] == "pass"

    # One flipped byte: verify exits 1 naming the file, the item fails.
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = wg("-w", ws.root, "weights", "verify", "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert [f["path"] for f in report["files"] if f["status"] == "mismatch"] == ["model.safetensors"]
    state = items(ws.root)["verify.checksum"]
    assert state["status"] == "fail" and "model.safetensors" in state["detail"]


def test_non_commercial_licence_fails_for_commercial_use(tmp_path, local_model):
    (local_model / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n")
    ws = init_workspace(tmp_path / "w")
    assert wg("-w", ws.root, "weights", "fetch", local_model).returncode == 0
    state = items(ws.root)["verify.license"]
    assert state["status"] == "fail" and "commercial" in state["detail"]


def test_hub_fetch_job_locks_and_records_evidence(tmp_path, hub):
    repo = "org/tiny-llama"
    sha = hub.commit(repo, llama_repo_files())
    ws = init_workspace(tmp_path / "w")
    out = wg("-w", ws.root, "weights", "add", repo, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["commit"] == sha
    assert wg("-w", ws.root, "weights", "choose", repo, "--reason", "smallest").returncode == 0
    out = wg("-w", ws.root, "weights", "fetch", "--attach", "--json", timeout=180)
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
    out = wg("-w", ws.root, "weights", "fetch", repo, "--attach", timeout=180)
    assert out.returncode == 1   # refused without consent
    assert not ws.lock_path.exists()
    assert wg("-w", ws.root, "weights", "trust", "remote-code", f"{repo}@main", "--note", "x").returncode == 2
    assert wg("-w", ws.root, "weights", "trust", "remote-code", f"{repo}@{sha}", "--note", "read modeling_x.py").returncode == 0
    out = wg("-w", ws.root, "weights", "fetch", repo, "--attach", timeout=180)
    assert out.returncode == 0, out.stdout[-2000:]
    state = items(ws.root)["verify.remote_code"]
    assert state["status"] == "pass" and sha[:12] in state["detail"]


def test_verified_snapshot_rehashes_only_changed_and_refuses_tampered(tmp_path, local_model):
    from weightgate.core.engine.errors import InputError
    from weightgate.core.weights.candidates import start_fetch
    from weightgate.core.weights.verify import verified_snapshot

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


def test_verified_snapshot_refuses_weights_transformers_would_load_that_are_not_locked(tmp_path, local_model):
    from weightgate.core.engine.errors import InputError
    from weightgate.core.weights.candidates import start_fetch
    from weightgate.core.weights.verify import verified_snapshot

    ws = init_workspace(tmp_path / "w")
    start_fetch(ws, str(local_model))
    (local_model / "notes.safetensors").write_bytes(b"not loaded by name")      # harmless
    assert verified_snapshot(ws) == local_model
    (local_model / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    with pytest.raises(InputError, match="model.safetensors.index.json") as refused:
        verified_snapshot(ws)
    assert "does not list" in refused.value.message


def test_no_derivatives_allows_commercial_use_of_the_unmodified_model_not_a_shipped_fine_tune():
    """CC BY-ND allows commercial use (it is not NC) and sharing the model unmodified; what it
    forbids is sharing adapted material, which a fine-tuned adapter or a merge is."""
    assert classify("cc-by-nd-4.0") == "no-derivatives"
    commercial = {"commercial": True, "distribution": False}
    unmodified = check_licence("cc-by-nd-4.0", commercial)
    assert unmodified.status == "pass" and "commercial use of the unmodified model" in unmodified.detail
    assert check_licence("cc-by-nd-4.0", {"commercial": True, "distribution": True}).status == "pass"
    for use in (commercial, {"commercial": False, "distribution": True}, {"commercial": False, "distribution": False}):
        shipped = check_licence("cc-by-nd-4.0", use, derivative=True)
        assert shipped.status == "fail" and "no derivatives" in shipped.detail, use
    # NC-ND: the non-commercial part still refuses commercial use, derivative or not.
    assert check_licence("cc-by-nc-nd-4.0", commercial).status == "fail"
    assert check_licence("cc-by-nc-nd-4.0", {"commercial": False}).status == "pass"
    assert check_licence("cc-by-nc-nd-4.0", {"commercial": False}, derivative=True).status == "fail"
    # A person's reading can say derivatives are allowed (or not).
    reviewed = {"id": "cc-by-nd-4.0", "allows_commercial": True, "allows_distribution": True,
                "allows_derivatives": False, "note": "read section 3"}
    assert check_licence("cc-by-nd-4.0", commercial, reviewed, derivative=True).status == "fail"
    assert check_licence("cc-by-nd-4.0", commercial, reviewed).status == "pass"
    # A permissive licence is unaffected by derivative.
    assert check_licence("apache-2.0", commercial, derivative=True).status == "pass"


def test_no_derivatives_licence_passes_phase_2_for_commercial_inference(tmp_path, local_model):
    (local_model / "README.md").write_text("---\nlicense: cc-by-nd-4.0\n---\n")
    ws = init_workspace(tmp_path / "w")

    def commercial(doc):
        doc["requirements"]["intended_use"]["commercial"] = True
        doc["requirements"]["intended_use"]["distribution"] = False
    ws.update_config(commercial)
    assert wg("-w", ws.root, "weights", "fetch", local_model).returncode == 0
    state = items(ws.root)["verify.license"]
    assert state["status"] == "pass", state["detail"]
    assert "no derivatives" in state["detail"]


def test_local_remote_code_says_it_cannot_be_trusted_at_a_commit(tmp_path, local_model):
    config = json.loads((local_model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.X"}
    (local_model / "config.json").write_text(json.dumps(config))
    ws = init_workspace(tmp_path / "w")
    assert wg("-w", ws.root, "weights", "fetch", local_model).returncode == 0
    state = items(ws.root)["verify.remote_code"]
    assert state["status"] == "fail"
    detail = state["detail"]
    assert "cannot be trusted at a commit" in detail
    assert "remove the auto_map" in detail and "*.py" in detail and "hub repo at a pinned commit" in detail
    assert f"trust remote-code {local_model}@" not in detail and "@ " not in detail
    # The hub advice it gives is a command that works for a hub repo at a commit.
    assert "weightgate weights trust remote-code org/name@<commit>" in detail


# --- pickle-only models: trusted is not enough, the safetensors twin is what loads ----------------


def _pickle_only(model_dir: Path) -> dict:
    """The tiny model with its weights as pytorch_model.bin (torch.save) and no safetensors."""
    import torch
    from safetensors.torch import load_file

    state = load_file(model_dir / "model.safetensors")
    torch.save(state, model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()
    return state


def convert(ws_root, *args):
    """`weightgate weights convert`, in process (the real app: its workspace option and errors)."""
    from typer.testing import CliRunner

    from weightgate.tui.cli import build_app

    return CliRunner().invoke(build_app(), ["-w", str(ws_root), "weights", "convert", *map(str, args)])


def test_trusted_pickle_only_model_passes_only_once_its_safetensors_twin_is_locked(tmp_path, local_model):
    import hashlib

    import torch

    original = _pickle_only(local_model)
    pickle_path = local_model / "pytorch_model.bin"
    sha = hashlib.sha256(pickle_path.read_bytes()).hexdigest()
    ws = init_workspace(tmp_path / "w")
    assert wg("-w", ws.root, "weights", "fetch", local_model).returncode == 0
    assert "pytorch_model.bin" in ws.lock_path.read_text()
    state = items(ws.root)
    assert state["verify.safetensors"]["status"] == "fail"
    assert f"--sha256 {sha}" in state["verify.safetensors"]["detail"]

    # Refused before any job: not trusted. The hint is the exact trust command.
    out = convert(ws.root, "pytorch_model.bin")
    assert out.exit_code == 2, out.output
    assert f"weightgate weights trust pickle {pickle_path} --sha256 {sha}" in out.output
    assert not ws.jobs_dir.exists() or not list(ws.jobs_dir.iterdir())   # no job was started
    assert not (local_model / "model.safetensors").exists()

    assert wg("-w", ws.root, "weights", "trust", "pickle", pickle_path, "--sha256", sha, "--note", "our own export").returncode == 0
    # Trusted, but the weights later phases would load are still pickle: not a pass.
    state = items(ws.root)
    assert state["verify.safetensors"]["status"] == "fail", state["verify.safetensors"]["detail"]
    assert "weightgate weights convert pytorch_model.bin" in state["verify.safetensors"]["detail"]
    assert state["verify.pickle"]["status"] == "pass"

    out = convert(ws.root, "pytorch_model.bin", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout[out.stdout.index("{"):])   # stderr may carry a locked-phase note
    twin = local_model / "model.safetensors"
    assert result["ok"] and result["output"] == str(twin) and result["source_sha256"] == sha
    assert result["locked"]["twin"] == "model.safetensors" and result["locked"]["of"] == "pytorch_model.bin"
    from weightgate.core.engine.lock import read_lock

    entry = read_lock(ws).file("model.safetensors")
    assert entry is not None and entry.sha256 == hashlib.sha256(twin.read_bytes()).hexdigest()
    assert entry.hash_source == "computed"
    state = items(ws.root)
    for item_id in ("verify.safetensors", "verify.checksum", "verify.headers", "verify.pickle"):
        assert state[item_id]["status"] == "pass", (item_id, state[item_id]["detail"])
    assert "pytorch_model.bin -> model.safetensors" in state["verify.safetensors"]["detail"]
    # Converting again is refused (the twin exists) without touching it.
    assert convert(ws.root, "pytorch_model.bin").exit_code == 2

    # What later phases load is the twin: the verified directory, with use_safetensors=True.
    from transformers import AutoModelForCausalLM

    from weightgate.core.weights.verify import verified_snapshot

    model = AutoModelForCausalLM.from_pretrained(verified_snapshot(ws), use_safetensors=True)
    loaded = model.state_dict()
    for name, tensor in original.items():
        assert torch.equal(loaded[name], tensor), name
    # The twin is locked like any file: one flipped byte and the weights are refused.
    data = bytearray(twin.read_bytes())
    data[-1] ^= 0xFF
    twin.write_bytes(bytes(data))
    from weightgate.core.engine.errors import InputError

    with pytest.raises(InputError, match="model.safetensors"):
        verified_snapshot(ws)


def test_a_twin_not_converted_from_the_locked_pickle_does_not_count(tmp_path, local_model):
    import hashlib

    import torch
    from safetensors.torch import save_file

    from weightgate.core.engine.lock import HASH_COMPUTED, LockedFile, read_lock, write_lock
    from weightgate.core.weights.pickle_policy import trust_pickle

    _pickle_only(local_model)
    pickle_path = local_model / "pytorch_model.bin"
    ws = init_workspace(tmp_path / "w")
    assert wg("-w", ws.root, "weights", "fetch", local_model).returncode == 0
    trust_pickle(ws, pickle_path, hashlib.sha256(pickle_path.read_bytes()).hexdigest(), "ours")
    # Someone drops in a model.safetensors of other origin and locks it by hand.
    twin = local_model / "model.safetensors"
    save_file({"w": torch.ones(2)}, str(twin), metadata={"format": "pt", "source_sha256": "0" * 64})
    lock = read_lock(ws)
    lock.files.append(LockedFile("model.safetensors", twin.stat().st_size,
                                 hashlib.sha256(twin.read_bytes()).hexdigest(), HASH_COMPUTED))
    write_lock(ws, lock)
    status = compute_report(ws).item("verify.safetensors")
    assert status.status == "fail" and "not converted from the locked bytes of pytorch_model.bin" in status.detail


def test_convert_is_a_weightgate_command():
    out = wg("weights", "convert", "--help")
    assert out.returncode == 0 and "--json" in out.stdout and "trusted" in out.stdout


def test_hub_pickle_only_model_converted_into_the_cache_snapshot(tmp_path, hub, local_model):
    """A pickle-only hub repo: the download job fetches the pickle (published hash), trust names the
    snapshot path, and the twin lands in the snapshot directory, locked, where later phases load."""
    import hashlib

    _pickle_only(local_model)
    files = {p.name: p.read_bytes() for p in local_model.iterdir() if p.is_file()}
    repo = "org/pickled"
    sha = hub.commit(repo, files)
    ws = init_workspace(tmp_path / "w")
    out = wg("-w", ws.root, "weights", "fetch", repo, "--attach", timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    from weightgate.core.engine.lock import read_lock, snapshot_dir

    lock = read_lock(ws)
    assert lock.file("pytorch_model.bin").hash_source == "published" and lock.file("model.safetensors") is None
    snapshot = snapshot_dir(ws, lock)
    assert snapshot.name == sha and (snapshot / "pytorch_model.bin").is_symlink()
    digest = hashlib.sha256(files["pytorch_model.bin"]).hexdigest()
    assert wg("-w", ws.root, "weights", "trust", "pickle", snapshot / "pytorch_model.bin", "--sha256", digest,
              "--note", "reviewed").returncode == 0
    assert items(ws.root)["verify.safetensors"]["status"] == "fail"
    out = convert(ws.root, "pytorch_model.bin", "--json")
    assert out.exit_code == 0, out.output
    twin = snapshot / "model.safetensors"
    assert twin.is_file() and not twin.is_symlink()
    state = items(ws.root)
    for item_id in ("verify.safetensors", "verify.checksum", "verify.headers", "verify.pickle", "verify.source"):
        assert state[item_id]["status"] == "pass", (item_id, state[item_id]["detail"])

    # Fetching again (same commit, same pickle bytes) keeps the twin in the lock.
    out = wg("-w", ws.root, "weights", "fetch", repo, "--attach", timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert read_lock(ws).file("model.safetensors") is not None
    assert items(ws.root)["verify.safetensors"]["status"] == "pass"


def test_sharded_pickle_model_gets_its_index_with_the_last_shard(tmp_path, local_model):
    import hashlib

    import torch
    from transformers import AutoModelForCausalLM

    from weightgate.core.weights.verify import verified_snapshot

    state = _pickle_only(local_model)
    (local_model / "pytorch_model.bin").unlink()
    names = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    for shard, keys in shards.items():
        torch.save({k: state[k] for k in keys}, local_model / shard)
    (local_model / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 0}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}))
    ws = init_workspace(tmp_path / "w")
    assert wg("-w", ws.root, "weights", "fetch", local_model).returncode == 0
    for shard in shards:
        path = local_model / shard
        assert wg("-w", ws.root, "weights", "trust", "pickle", path, "--sha256", hashlib.sha256(path.read_bytes()).hexdigest(),
                  "--note", "ours").returncode == 0
    out = convert(ws.root, "pytorch_model-00001-of-00002.bin", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout[out.stdout.index("{"):])["locked"]["index"] is None
    assert not (local_model / "model.safetensors.index.json").exists()
    detail = items(ws.root)["verify.safetensors"]["detail"]
    assert "pytorch_model-00002-of-00002.bin is trusted but still pickle" in detail
    out = convert(ws.root, "pytorch_model-00002-of-00002.bin", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout[out.stdout.index("{"):])["locked"]["index"] == "model.safetensors.index.json"
    state_items = items(ws.root)
    assert state_items["verify.safetensors"]["status"] == "pass", state_items["verify.safetensors"]["detail"]
    assert state_items["verify.checksum"]["status"] == "pass"
    model = AutoModelForCausalLM.from_pretrained(verified_snapshot(ws), use_safetensors=True)
    loaded = model.state_dict()
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor), name
