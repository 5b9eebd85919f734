"""A GGUF file as a source (the demo model's): fetch hashes it against its published sha256,
checks its header, finds (or makes) the safetensors model converted from it, and locks both;
later phases load the converted model; verify re-hashes both; a wrong hash locks nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import wait_terminal

from weightgate.core.demo.model import GGUF_SHA256, ORIGIN_REPO
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.jobs import read_status
from weightgate.core.engine.lock import model_dir, read_lock, snapshot_dir
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.gates import compute_report
from weightgate.core.weights.candidates import add_candidate, choose_model, start_fetch
from weightgate.core.weights.gguf_source import lock_gguf_source
from weightgate.core.weights.verify import verified_snapshot, verify_lock


@pytest.fixture
def demo_gguf(demo_model_dir: Path) -> Path:
    return demo_model_dir.parent / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_fetching_the_demo_gguf_locks_it_with_its_converted_model(tmp_path: Path, demo_gguf: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    add_candidate(ws, str(demo_gguf), "demo", sha256=GGUF_SHA256, origin=ORIGIN_REPO)
    choose_model(ws, str(demo_gguf), "the only one")
    started = start_fetch(ws, str(demo_gguf))
    assert started["kind"] == "lock_gguf"
    status = wait_terminal(Path(started["job_dir"]), timeout=300)
    assert status.state == "succeeded", status.error
    events = [json.loads(line) for line in (Path(started["job_dir"]) / "events.jsonl").read_text().splitlines()]
    stages = [e["payload"]["message"] for e in events if e["kind"] == "progress" and e["payload"].get("unit") == "stage"]
    assert stages[:2] == ["hash", "check header"] and stages[-1] == "locked"

    lock = read_lock(ws)
    assert lock.kind == "gguf" and lock.source == str(demo_gguf) and lock.load_dir == "model"
    assert lock.origin == ORIGIN_REPO and lock.license.lower() == "apache-2.0"
    gguf = lock.file(f"gguf/{demo_gguf.name}")
    assert gguf.sha256 == GGUF_SHA256 and gguf.hash_source == "published"
    assert lock.file("model/model.safetensors").hash_source == "computed"
    # later phases load the converted model; the GGUF is verified beside it
    assert model_dir(ws, lock) == demo_gguf.parent.parent / "model" == verified_snapshot(ws)
    report = verify_lock(ws)
    assert report.ok and {r.path for r in report.files} >= {f"gguf/{demo_gguf.name}", "model/model.safetensors"}
    state = compute_report(ws)
    for item in ("verify.safetensors", "verify.checksum", "verify.headers", "verify.source", "verify.license"):
        assert state.item(item).status == "pass", (item, state.item(item).detail)


def test_a_gguf_that_is_not_the_published_one_is_refused_and_nothing_is_locked(tmp_path: Path,
                                                                               demo_gguf: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    with pytest.raises(InputError, match="is not the published") as refused:
        lock_gguf_source(ws, demo_gguf, published_sha256="0" * 64, cache_dir=tmp_path / "cache")
    assert "nothing was converted or locked" in refused.value.hint
    assert read_lock(ws) is None and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_a_flipped_byte_in_the_gguf_or_its_model_fails_verification(tmp_path: Path, demo_model_dir: Path) -> None:
    entry = tmp_path / "entry"                      # a copy: the shared cache stays intact
    shutil.copytree(demo_model_dir.parent, entry)
    gguf = entry / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    ws = init_workspace(tmp_path / "ws")
    lock = lock_gguf_source(ws, gguf, published_sha256=GGUF_SHA256, cache_dir=tmp_path / "cache")
    assert snapshot_dir(ws, lock) == entry and not (tmp_path / "cache").exists()   # found beside it
    for rel in (f"gguf/{gguf.name}", "model/model.safetensors"):
        path = entry / rel
        data = bytearray(path.read_bytes())
        data[-10] ^= 0x01
        path.write_bytes(bytes(data))
        report = verify_lock(ws)
        assert not report.ok and [r.path for r in report.failed()] == [rel]
        with pytest.raises(InputError, match=rel.split("/")[-1]):
            verified_snapshot(ws)
        data[-10] ^= 0x01
        path.write_bytes(bytes(data))
    assert verify_lock(ws).ok


def test_a_job_refusal_names_the_file(tmp_path: Path, demo_gguf: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    add_candidate(ws, str(demo_gguf), "demo", sha256="1" * 64)
    started = start_fetch(ws, str(demo_gguf))
    status = wait_terminal(Path(started["job_dir"]), timeout=300)
    assert status.state == "failed" and demo_gguf.name in status.error and "published" in status.error
    assert read_status(Path(started["job_dir"])).state == "failed" and read_lock(ws) is None
