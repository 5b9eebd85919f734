"""Hostile local files and verdicts that say why, through the real `weightgate` command: a FIFO,
a socket or a symlink out of the model directory refused at lock time (never blocking), a
pickle-only model's verification naming its reason, a bad header beside a matching hash never
ticked, scan findings one line per import, NumPy files recognised, and trust of a dangerous
pickle needing an explicit flag (while status never offers it)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weightgate.core.engine.lock import read_lock, write_lock
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.gates import compute_report
from weightgate.core.weights.local_source import lock_local_source
from weightgate.core.weights.picklescan import scan_file


def wg(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "weightgate", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def model_copy(tmp_path, tiny_model_dir) -> Path:
    root = tmp_path / "model"
    shutil.copytree(tiny_model_dir, root)
    return root


@pytest.mark.parametrize("kind", ["fifo", "socket", "symlink_out"])
def test_local_locking_refuses_special_files_naming_them_without_blocking(tmp_path, model_copy, kind):
    ws = init_workspace(tmp_path / "ws")
    name = "extra.safetensors" if kind != "symlink_out" else "notes.json"
    target = model_copy / name
    held = None
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        held = socket.socket(socket.AF_UNIX)
        held.bind(str(target))
    else:
        outside = tmp_path / "outside.json"
        outside.write_text("{}")
        target.symlink_to(outside)
    try:
        out = wg("-w", ws.root, "weights", "fetch", model_copy, timeout=60)   # would hang on a FIFO before
    finally:
        if held is not None:
            held.close()
    assert out.returncode == 2, out.stdout + out.stderr
    assert name in out.stderr
    assert {"fifo": "is a FIFO", "socket": "is a socket", "symlink_out": "outside the model directory"}[kind] \
        in out.stderr
    assert not ws.lock_path.exists()


def test_a_symlink_inside_the_directory_is_fine(tmp_path, model_copy):
    (model_copy / "generation_config.json").unlink(missing_ok=True)
    (model_copy / "generation_config.json").symlink_to(model_copy / "config.json")
    ws = init_workspace(tmp_path / "ws")
    lock = lock_local_source(ws, str(model_copy))
    assert lock.file("generation_config.json") is not None


def test_a_pickle_only_model_says_why_verification_fails(tmp_path, model_copy):
    import torch
    from safetensors.torch import load_file

    state = load_file(model_copy / "model.safetensors")
    (model_copy / "model.safetensors").unlink()
    torch.save(state, model_copy / "pytorch_model.bin")
    ws = init_workspace(tmp_path / "ws")
    lock_local_source(ws, str(model_copy))
    out = wg("-w", ws.root, "weights", "verify")
    assert out.returncode == 1
    verdict = out.stdout.strip().splitlines()[-1]
    assert "VERIFICATION FAILED: no safetensors or GGUF weights in the lock (pickle only: pytorch_model.bin" in verdict
    assert "weightgate weights convert pytorch_model.bin" in verdict
    detail = compute_report(ws).item("verify.headers").detail
    assert detail.startswith("no safetensors or GGUF weights in the lock") and "bad headers: " not in detail
    # The trust hint names a clean scan; a dangerous pickle is named instead, and never offered trust.
    assert "its scan is clean" in compute_report(ws).item("verify.safetensors").detail
    evil = pickle.dumps(Evil())
    (model_copy / "pytorch_model.bin").write_bytes(evil)
    lock_local_source(ws, str(model_copy))
    status = compute_report(ws).item("verify.safetensors").detail
    assert "dangerous" in status and "posix.system" in status and "trust pickle" not in status
    out = wg("-w", ws.root, "status")
    assert "dangerous" in out.stdout
    # trust pickle on it: refused without the explicit flag, recorded with it (and still never loads).
    sha = __import__("hashlib").sha256(evil).hexdigest()
    path = model_copy / "pytorch_model.bin"
    out = wg("-w", ws.root, "weights", "trust", "pickle", path, "--sha256", sha, "--note", "mine")
    assert out.returncode == 2 and "dangerous" in out.stderr and "--despite-findings" in out.stderr
    out = wg("-w", ws.root, "weights", "trust", "pickle", path, "--sha256", sha, "--note", "mine",
             "--despite-findings")
    assert out.returncode == 0, out.stderr
    assert "will not load it" in compute_report(ws).item("verify.safetensors").detail


class Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_a_bad_header_whose_hash_matches_gets_a_cross_and_its_reason(tmp_path, model_copy):
    path = model_copy / "model.safetensors"
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    text = json.dumps(header)
    # The same key twice: a JSON object with a duplicate (data offsets are relative to the data,
    # so a longer header keeps them right).
    first = text.index(json.dumps(name))
    duplicated = (text[:-1] + ", " + text[first:text.index("}", first) + 1] + "}").encode()
    ws = init_workspace(tmp_path / "ws")
    lock_local_source(ws, str(model_copy))
    # As a hub lock would have it: the publisher's bad file, its hash published and matching.
    bad = struct.pack("<Q", len(duplicated)) + duplicated + data[8 + n:]
    path.write_bytes(bad)
    lock = read_lock(ws)
    entry = lock.file("model.safetensors")
    entry.size, entry.sha256, entry.verified_at = len(bad), hashlib.sha256(bad).hexdigest(), 0.0
    write_lock(ws, lock)
    out = wg("-w", ws.root, "weights", "verify")
    assert out.returncode == 1
    line = next(line for line in out.stdout.splitlines() if "model.safetensors" in line)
    assert line.lstrip().startswith("✗") and "header duplicate_key: " in line
    assert "✓" not in line


def test_scan_prints_each_import_once_and_numpy_files_are_recognised(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([Evil(), Evil(), Evil()], protocol=2))
    out = wg("weights", "scan", evil)
    assert out.returncode == 1
    lines = [line for line in out.stdout.splitlines()[1:] if "system" in line]
    assert len(lines) == 1 and lines[0].split()[0] == "dangerous" and lines[0].count("dangerous") == 1

    numeric = tmp_path / "weights.npy"
    np.save(numeric, np.arange(12, dtype=np.float32).reshape(3, 4))
    result = scan_file(numeric)
    assert result.format == "numpy" and result.safe and "numeric data, no pickle" in result.notes[0]
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([Evil()], dtype=object), allow_pickle=True)
    result = scan_file(objects)
    assert result.format == "numpy" and not result.safe
    assert any(f.qualname.endswith("system") and f.severity == "dangerous" for f in result.findings)
    archive = tmp_path / "arrays.npz"
    np.savez(archive, a=np.zeros(3), b=np.array([Evil()], dtype=object))
    result = scan_file(archive)
    assert result.format == "npz" and not result.safe and any("b.npy" in f.member for f in result.findings)
    out = wg("weights", "scan", numeric)
    assert out.returncode == 0 and "numeric data, no pickle" in out.stdout
