"""core.weights.verify: a lock round trip with real files on disk.

ok; one flipped byte -> mismatch naming the file, and the lock not stamped for it; truncated ->
size differs; missing; lock paths escaping the snapshot directory refused; only_changed
re-hashes only the touched files; headers checked for safetensors and GGUF.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import weightgate.core.weights.verify as verify_mod
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.lock import (
    HASH_COMPUTED,
    HASH_PUBLISHED,
    LockedFile,
    ModelLock,
    lock_digest,
    read_lock,
    unsafe_reason,
    write_lock,
)
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.weights.verify import (
    CHANGED_DURING,
    HEADER_NOT_CHECKED,
    HEADER_OK,
    MISMATCH,
    MISSING,
    OK,
    SIZE_DIFFERS,
    UNCHANGED,
    UNSAFE_PATH,
    verify_lock,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def locked(path: Path, rel: str, source=HASH_PUBLISHED) -> LockedFile:
    return LockedFile(path=rel, size=path.stat().st_size, sha256=sha(path), hash_source=source)


@pytest.fixture
def model(tmp_path):
    """A workspace whose lock pins two safetensors shards, a config and an index."""
    ws = init_workspace(tmp_path / "ws")
    snap = tmp_path / "snapshot"
    snap.mkdir()
    rng = np.random.default_rng(0)
    save_file({"model.embed_tokens.weight": rng.standard_normal((64, 32)).astype(np.float32)},
              snap / "model-00001-of-00002.safetensors", metadata={"format": "pt"})
    save_file({"model.norm.weight": np.ones(32, dtype=np.float16),
               "lm_head.weight": rng.standard_normal((64, 32)).astype(np.float32)},
              snap / "model-00002-of-00002.safetensors", metadata={"format": "pt"})
    (snap / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json"]
    lock = ModelLock(kind="hub", source="org/tiny", revision="main", commit=COMMIT, local_dir=str(snap),
                     license="apache-2.0",
                     files=[locked(snap / n, n, HASH_COMPUTED if n.endswith(".json") else HASH_PUBLISHED)
                            for n in names])
    write_lock(ws, lock)
    return ws, snap


def entry(ws, rel) -> LockedFile:
    return read_lock(ws).file(rel)


def by_path(report):
    return {f.path: f for f in report.files}


def test_all_ok_stamps_the_lock(model):
    ws, snap = model
    before = read_lock(ws)
    seen = []
    report = verify_lock(ws, workers=2, progress=lambda d, t: seen.append((d, t)))
    assert report.ok and report.checksum_ok and report.headers_ok
    assert {f.status for f in report.files} == {OK}
    results = by_path(report)
    assert results["model-00001-of-00002.safetensors"].header == HEADER_OK
    assert results["config.json"].header_kind == "" and results["config.json"].header_ok
    assert report.bytes_hashed == before.total_bytes() and report.mb_per_s > 0
    assert seen[-1] == (before.total_bytes(), before.total_bytes())
    after = read_lock(ws)
    assert sorted(report.lock_updated) == sorted(f.path for f in before.files)
    for f in after.files:
        assert f.verified_at == report.verified_at > 0
        assert f.mtime == (snap / f.path).stat().st_mtime
    assert lock_digest(after) == lock_digest(before)      # re-verifying keeps the model's identity
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] and data["totals"]["counts"] == {OK: 3}
    assert report.checksum_evidence()["failed"] == {} and report.checksum_evidence()["published"] == 2
    assert report.headers_evidence() == {"ok": True, "weight_files": 2, "checked": 2, "faults": {},
                                         "messages": {}}


def test_one_flipped_byte_is_a_mismatch_and_the_lock_is_not_stamped_for_it(model):
    ws, snap = model
    verify_lock(ws)
    stamped = entry(ws, "model-00002-of-00002.safetensors")
    bad = snap / "model-00002-of-00002.safetensors"
    data = bytearray(bad.read_bytes())
    data[-5] ^= 0x01                                      # in the tensor data: the header stays valid
    bad.write_bytes(bytes(data))

    report = verify_lock(ws)
    results = by_path(report)
    failed = results["model-00002-of-00002.safetensors"]
    assert failed.status == MISMATCH and failed.sha256 == sha(bad) != failed.expected_sha256
    assert "model-00002-of-00002.safetensors" in json.dumps(report.checksum_evidence()["failed"])
    assert failed.expected_sha256 in failed.message
    assert failed.header == HEADER_OK                     # the bytes are wrong, the format is not
    assert not report.ok and not report.checksum_ok and report.headers_ok
    assert [f.path for f in report.failed()] == ["model-00002-of-00002.safetensors"]
    assert "model-00002-of-00002.safetensors" not in report.lock_updated
    assert entry(ws, "model-00002-of-00002.safetensors") == stamped         # untouched
    assert entry(ws, "model-00001-of-00002.safetensors").verified_at == report.verified_at


def test_never_verified_file_that_mismatches_stays_unverified(model):
    ws, snap = model
    (snap / "config.json").write_text(json.dumps({"model_type": "llamb", "hidden_size": 32}))
    report = verify_lock(ws)
    assert by_path(report)["config.json"].status == MISMATCH
    assert entry(ws, "config.json").verified_at == 0.0 and entry(ws, "config.json").mtime == 0.0


def test_truncated_file_is_size_differs_with_a_header_fault(model):
    ws, snap = model
    shard = snap / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    report = verify_lock(ws)
    result = by_path(report)["model-00001-of-00002.safetensors"]
    assert result.status == SIZE_DIFFERS and result.sha256 is None
    assert result.size == result.expected_size - 100
    assert result.header == "truncated_data"
    assert not report.headers_ok
    assert report.headers_evidence()["faults"] == {"model-00001-of-00002.safetensors": "truncated_data"}


def test_a_corrupt_header_with_a_matching_hash_is_still_reported(model):
    """The published hash can only prove these are the published bytes, not that they are sound."""
    ws, snap = model
    bad = snap / "model-00001-of-00002.safetensors"
    bad.write_bytes(bad.read_bytes() + b"\0" * 8)
    lock = read_lock(ws)
    lock.files = [locked(bad, f.path) if f.path == bad.name else f for f in lock.files]
    write_lock(ws, lock)
    report = verify_lock(ws)
    result = by_path(report)[bad.name]
    assert result.status == OK and result.header == "trailing_bytes" and report.checksum_ok and not report.ok


def test_missing_file(model):
    ws, snap = model
    (snap / "model-00002-of-00002.safetensors").unlink()
    report = verify_lock(ws)
    result = by_path(report)["model-00002-of-00002.safetensors"]
    assert result.status == MISSING and result.header == HEADER_NOT_CHECKED and result.size is None
    assert not report.checksum_ok and not report.headers_ok
    assert report.headers_evidence()["faults"] == {"model-00002-of-00002.safetensors": HEADER_NOT_CHECKED}


@pytest.mark.parametrize("rel", ["../outside.safetensors", "/etc/passwd", "sub/../../outside.safetensors",
                                 "C:/x.bin", "a\\..\\..\\x", "./config.json", "a//b", ""])
def test_lock_paths_escaping_the_snapshot_are_refused(model, rel):
    ws, snap = model
    outside = snap.parent / "outside.safetensors"
    outside.write_bytes((snap / "model-00001-of-00002.safetensors").read_bytes())
    lock = read_lock(ws)
    lock.files.append(LockedFile(path=rel, size=outside.stat().st_size, sha256=sha(outside),
                                 hash_source=HASH_PUBLISHED))
    write_lock(ws, lock)
    report = verify_lock(ws)
    result = by_path(report)[rel]
    assert result.status == UNSAFE_PATH and result.sha256 is None and result.size is None
    assert "refused" in result.message
    assert not report.checksum_ok
    assert rel not in report.lock_updated and entry(ws, rel).verified_at == 0.0


def test_unsafe_reason():
    assert unsafe_reason("model.safetensors") is None
    assert unsafe_reason("sub/dir/model.safetensors") is None
    assert unsafe_reason("..hidden/ok..name") is None
    for bad in ("..", "../x", "x/..", "/x", "x\0y", "C:x", "x\\y", "x/./y", "x//y", ""):
        assert unsafe_reason(bad), bad


def test_hf_cache_symlinks_into_blobs_are_fine(tmp_path):
    """In the HF cache every snapshot file is a symlink to ../../blobs/<hash>: not an escape."""
    ws = init_workspace(tmp_path / "ws")
    repo = tmp_path / "hub" / "models--org--tiny"
    blobs, snap = repo / "blobs", repo / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    save_file({"w": np.zeros(4, dtype=np.float32)}, blobs / "tmp")
    digest = sha(blobs / "tmp")
    (blobs / "tmp").rename(blobs / digest)
    (snap / "model.safetensors").symlink_to(Path("../../blobs") / digest)
    write_lock(ws, ModelLock(kind="hub", source="org/tiny", commit=COMMIT, local_dir=str(snap),
                             files=[locked(snap / "model.safetensors", "model.safetensors")]))
    report = verify_lock(ws)
    assert report.ok, report.to_dict()


def test_only_changed_rehashes_only_touched_files(model):
    ws, snap = model
    first = verify_lock(ws)
    assert first.ok

    report = verify_lock(ws, only_changed=True)
    assert {f.status for f in report.files} == {UNCHANGED} and report.bytes_hashed == 0
    assert report.ok and report.lock_updated == []

    touched = snap / "model-00001-of-00002.safetensors"
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 10))
    report = verify_lock(ws, only_changed=True)
    statuses = {f.path: f.status for f in report.files}
    assert statuses == {touched.name: OK, "model-00002-of-00002.safetensors": UNCHANGED, "config.json": UNCHANGED}
    assert report.bytes_hashed == touched.stat().st_size
    assert report.lock_updated == [touched.name]
    assert entry(ws, touched.name).mtime == touched.stat().st_mtime


def test_only_changed_still_hashes_files_never_verified(model):
    ws, _ = model
    report = verify_lock(ws, only_changed=True)
    assert {f.status for f in report.files} == {OK}


def test_only_changed_catches_a_same_size_rewrite(model):
    ws, snap = model
    verify_lock(ws)
    cfg = snap / "config.json"
    cfg.write_text(cfg.read_text().replace("llama", "LLAMA"))
    report = verify_lock(ws, only_changed=True)
    assert by_path(report)["config.json"].status == MISMATCH


def test_a_file_changing_while_hashed_is_not_verified(model, monkeypatch):
    ws, snap = model
    real = verify_mod.hash_files
    victim = snap / "model-00002-of-00002.safetensors"

    def hash_then_touch(paths, **kwargs):
        out = real(paths, **kwargs)
        os.utime(victim, (victim.stat().st_atime, victim.stat().st_mtime + 5))
        return out

    monkeypatch.setattr(verify_mod, "hash_files", hash_then_touch)
    report = verify_lock(ws)
    assert by_path(report)[victim.name].status == CHANGED_DURING
    assert victim.name not in report.lock_updated and entry(ws, victim.name).verified_at == 0.0


def test_a_directory_in_place_of_a_file_is_unreadable(model):
    ws, snap = model
    (snap / "config.json").unlink()
    (snap / "config.json").mkdir()
    report = verify_lock(ws)
    assert by_path(report)["config.json"].status == "unreadable"


def test_gguf_source(tmp_path):
    gguf = pytest.importorskip("gguf")
    ws = init_workspace(tmp_path / "ws")
    path = tmp_path / "models" / "tiny.Q8_0.gguf"
    path.parent.mkdir()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    write_lock(ws, ModelLock(kind="gguf", source=str(path), files=[locked(path, path.name, HASH_COMPUTED)]))
    report = verify_lock(ws)
    assert report.ok and by_path(report)[path.name].header_kind == "gguf"

    data = bytearray(path.read_bytes())
    data[:4] = b"GGML"
    path.write_bytes(bytes(data))
    report = verify_lock(ws)
    assert by_path(report)[path.name].status == MISMATCH and by_path(report)[path.name].header == "bad_magic"


def test_relative_local_dir_is_relative_to_the_workspace(model):
    ws, snap = model
    target = ws.root / "weights"
    snap.rename(target)
    lock = read_lock(ws)
    write_lock(ws, dataclasses.replace(lock, local_dir="weights"))
    assert verify_lock(ws).ok


def test_no_lock_or_no_location_is_an_input_error(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    with pytest.raises(InputError, match="no weightgate.lock"):
        verify_lock(ws)
    write_lock(ws, ModelLock(kind="hub", source="org/x", files=[]))
    with pytest.raises(InputError, match="local_dir"):
        verify_lock(ws)


def test_an_empty_lock_is_not_a_pass(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    write_lock(ws, ModelLock(kind="local", source=str(tmp_path), local_dir=str(tmp_path), files=[]))
    report = verify_lock(ws)
    assert not report.checksum_ok and not report.headers_ok


def test_per_file_progress_names_lock_paths_and_only_hashed_files(model):
    ws, snap = model
    calls: dict = {}
    report = verify_lock(ws, file_progress=lambda path, done, size: calls.setdefault(path, []).append((done, size)))
    assert report.ok
    assert set(calls) == {f.path for f in report.files}
    for result in report.files:
        assert calls[result.path][-1] == (result.size, result.size)
    touched = snap / "config.json"
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 10))
    calls.clear()
    verify_lock(ws, only_changed=True, file_progress=lambda path, done, size: calls.setdefault(path, []).append(done))
    assert list(calls) == ["config.json"]
