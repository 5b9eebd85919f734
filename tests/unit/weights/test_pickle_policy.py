"""Pickle trust (per file, per exact bytes), the remote-code pin, and the conversion job."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from pathlib import Path

import pytest
from pickle_corpus import corpus, torch_corpus

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.jobs import FAILED, SUCCEEDED, events_path, read_status, start_job
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.weights.metadata import remote_code_reasons
from weightgate.core.weights.pickle_policy import (
    CHANGED,
    MALFORMED,
    UNSAFE,
    UNTRUSTED,
    PickleRefused,
    RemoteCodeRefused,
    check_pickle_allowed,
    check_remote_code,
    is_trusted,
    pickle_trust,
    trust_pickle,
    trust_remote_code,
    untrust_pickle,
)

torch = pytest.importorskip("torch")

JOB = "convert_pickle"
COMMIT_A = "0123456789abcdef0123456789abcdef01234567"
COMMIT_B = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def ws(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    text = ws.config_path.read_text()
    ws.config_path.write_text(text + "\n# my own note: keep this comment\n")
    return ws


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a payload ran: the canary file exists"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checkpoint(ws, name="ckpt/pytorch_model.bin", **options) -> tuple[Path, OrderedDict]:
    tied = torch.randn(6, 4)
    state = OrderedDict(
        [("embed.weight", tied), ("lm_head.weight", tied),
         ("norm.weight", torch.randn(4).to(torch.bfloat16)), ("half", torch.randn(3, dtype=torch.float16)),
         ("ids", torch.arange(7)), ("mask", torch.tensor([True, False, True])),
         ("nan", torch.tensor([float("nan"), 1.0])), ("scalar", torch.tensor(2.5)),
         ("view", tied[1:3]), ("layers", OrderedDict(q_proj=torch.randn(4, 4), mlp={"up": torch.randn(2, 4)}))]
    )
    path = ws.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path, **options)
    return path, state


class FakeCtx:
    """JobContext's surface as convert_pickle uses it, for in-process runs."""

    def __init__(self, ws, params):
        self.workspace, self.params = ws.root, params
        self.logs, self.artifacts = [], []
        self.ws = ws

    def open_workspace(self):
        return self.ws

    def log(self, message, level="info"):
        self.logs.append(message)

    def progress(self, *args, **kwargs):
        pass

    def artifact(self, path, label=""):
        self.artifacts.append((str(path), label))

    def check_cancel(self):
        pass


def _run_job(ws, params, timeout=60.0):
    handle = start_job(ws.jobs_dir, JOB, params, workspace=ws.root)
    deadline = time.monotonic() + timeout
    while not (status := read_status(handle.job_dir)).is_terminal:
        assert time.monotonic() < deadline, "conversion job did not end"
        time.sleep(0.05)
    handle.process.wait(timeout)
    return status, read_events(events_path(handle.job_dir))[0]


# --- pickle trust -----------------------------------------------------------------------------


def test_untrusted_pickle_is_refused_with_the_exact_command(ws):
    path, _ = _checkpoint(ws)
    with pytest.raises(PickleRefused) as caught:
        check_pickle_allowed(ws, path)
    error = caught.value
    assert isinstance(error, InputError) and error.reason == UNTRUSTED and error.path == path
    assert f"weightgate weights trust pickle ckpt/pytorch_model.bin --sha256 {_sha(path)} --note" in error.hint


def test_trust_records_sha_and_note_and_keeps_comments(ws):
    path, _ = _checkpoint(ws)
    sha = _sha(path)
    trust_pickle(ws, "ckpt/pytorch_model.bin", sha, "our own fine-tune, CI job 4411")
    text = ws.config_path.read_text()
    assert "# my own note: keep this comment" in text
    assert "# weightgate.toml: the requirements and decisions" in text
    assert '[trust.pickle."ckpt/pytorch_model.bin"]' in text
    assert f'sha256 = "{sha}"' in text and 'note = "our own fine-tune, CI job 4411"' in text
    assert is_trusted(ws, path, sha) and is_trusted(ws, "ckpt/pytorch_model.bin", sha.upper())
    result = check_pickle_allowed(ws, "ckpt/pytorch_model.bin")
    assert result.safe and result.format == "zip"
    assert untrust_pickle(ws, path) and not untrust_pickle(ws, path)
    assert pickle_trust(ws, path) is None and "# my own note: keep this comment" in ws.config_path.read_text()


def test_trust_needs_the_files_real_hash_and_a_note(ws):
    path, _ = _checkpoint(ws)
    with pytest.raises(InputError, match="not"):
        trust_pickle(ws, path, "0" * 64, "x")
    with pytest.raises(InputError, match="64 hex"):
        trust_pickle(ws, path, "abc", "x")
    with pytest.raises(InputError, match="note"):
        trust_pickle(ws, path, _sha(path), "   ")
    # Not downloaded yet: the published hash can be trusted ahead; the bytes must match later.
    trust_pickle(ws, "later/model.bin", "sha256:" + "A" * 64, "hash published by our own CI")
    assert is_trusted(ws, "later/model.bin", "a" * 64)


def test_a_modified_file_is_no_longer_trusted(ws):
    path, _ = _checkpoint(ws)
    old = _sha(path)
    trust_pickle(ws, path, old, "reviewed")
    torch.save({"w": torch.zeros(3)}, path)
    assert not is_trusted(ws, path, _sha(path))
    with pytest.raises(PickleRefused) as caught:
        check_pickle_allowed(ws, path)
    assert caught.value.reason == CHANGED and _sha(path) in caught.value.hint


def test_trust_does_not_open_the_door_to_a_dangerous_file(ws, canary):
    payloads = corpus(canary) + torch_corpus(canary)
    for payload in payloads:
        path = ws.root / "evil" / f"{payload.name}.pt"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(payload.data)
        if payload.data:
            # Trusting what the scan refuses needs the explicit flag; even then it never loads.
            with pytest.raises(InputError, match="--despite-findings"):
                trust_pickle(ws, path, _sha(path), "someone said it is fine")
            trust_pickle(ws, path, _sha(path), "someone said it is fine", despite_findings=True)
        with pytest.raises(PickleRefused) as caught:
            check_pickle_allowed(ws, path)
        assert caught.value.reason in (UNSAFE, MALFORMED), payload.name
        assert "trust pickle" not in (caught.value.hint or ""), payload.name  # never suggest trusting it
        assert not canary.exists(), payload.name


# --- remote code ------------------------------------------------------------------------------


AUTO_MAP = {"model_type": "x", "auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}}


def test_remote_code_refused_without_consent(ws):
    with pytest.raises(RemoteCodeRefused) as caught:
        check_remote_code(ws, "org/model", COMMIT_A, AUTO_MAP)
    assert "weightgate weights trust remote-code org/model@" + COMMIT_A in caught.value.hint
    with pytest.raises(RemoteCodeRefused):
        check_remote_code(ws, "org/model", COMMIT_A, {"model_type": "x"}, files=["config.json", "modeling_x.py"])
    nested = {"text_config": {"auto_map": {"AutoConfig": "c.C"}}}
    assert remote_code_reasons(nested) == ["config.json text_config.auto_map: AutoConfig -> c.C"]
    plain = check_remote_code(ws, "org/model", "main", {"model_type": "llama"}, files=["model.safetensors"])
    assert not plain.needed


def test_remote_code_trust_refuses_branches_and_short_shas(ws):
    with pytest.raises(InputError, match="branch or tag"):
        trust_remote_code(ws, "org/model", "main", "reviewed")
    with pytest.raises(InputError, match="short commit"):
        trust_remote_code(ws, "org/model", COMMIT_A[:7], "reviewed")
    with pytest.raises(InputError, match="repo id"):
        trust_remote_code(ws, "../etc", COMMIT_A, "reviewed")
    assert "remote_code" not in ws.config_path.read_text()


def test_remote_code_accepted_only_at_the_pinned_commit(ws):
    trust_remote_code(ws, "org/model", COMMIT_A.upper(), "reviewed modeling_x.py")
    text = ws.config_path.read_text()
    assert f'commit = "{COMMIT_A}"' in text and "# my own note: keep this comment" in text
    decision = check_remote_code(ws, "org/model", COMMIT_A, AUTO_MAP)
    assert decision.needed and decision.trusted_commit == COMMIT_A
    with pytest.raises(RemoteCodeRefused, match="trusted at commit 0123456789ab, not at fedcba987654"):
        check_remote_code(ws, "org/model", COMMIT_B, AUTO_MAP)
    with pytest.raises(RemoteCodeRefused, match="not a pinned commit"):
        check_remote_code(ws, "org/model", "main", AUTO_MAP)
    with pytest.raises(RemoteCodeRefused):
        check_remote_code(ws, "org/other", COMMIT_A, AUTO_MAP)


# --- conversion -------------------------------------------------------------------------------


def _assert_same(output: Path, state: dict):
    from safetensors.torch import load_file

    loaded = load_file(output)
    expected = {"embed.weight", "lm_head.weight", "norm.weight", "half", "ids", "mask", "nan", "scalar", "view",
                "layers.q_proj", "layers.mlp.up"}
    assert set(loaded) == expected
    flat = {**{k: v for k, v in state.items() if k != "layers"}, "layers.q_proj": state["layers"]["q_proj"],
            "layers.mlp.up": state["layers"]["mlp"]["up"]}
    for name, tensor in flat.items():
        assert loaded[name].dtype == tensor.dtype, name
        if name == "nan":
            assert torch.equal(loaded[name].isnan(), tensor.isnan())
        else:
            assert torch.equal(loaded[name], tensor), name
    assert loaded["norm.weight"].dtype == torch.bfloat16


def test_conversion_job_produces_equal_safetensors(ws):
    """A real detached job: re-checks trust + scan in its own process, then converts."""
    path, state = _checkpoint(ws)
    trust_pickle(ws, path, _sha(path), "our own checkpoint")
    status, events = _run_job(ws, {"path": "ckpt/pytorch_model.bin", "output_dir": "converted"})
    assert status.state == SUCCEEDED, status.error
    output = ws.root / "converted" / "model.safetensors"   # the name transformers looks for
    _assert_same(output, state)
    artifacts = [e.payload for e in events if e.kind == "artifact"]
    assert artifacts == [{"path": str(output), "label": f"safetensors sha256:{_sha(output)}"}]
    result = next(e.payload for e in events if e.kind == "result")["data"]
    assert result["sha256"] == _sha(output) and result["source_sha256"] == _sha(path)
    assert set(result["cloned_shared"]) == {"embed.weight", "lm_head.weight", "view"}
    assert not list(output.parent.glob(".*.tmp"))


def test_conversion_job_refuses_a_dangerous_file_even_when_trusted(ws, canary):
    payload = next(p for p in torch_corpus(canary) if p.name == "torch_zip_data_pkl_replaced")
    path = ws.root / "evil.pt"
    path.write_bytes(payload.data)
    trust_pickle(ws, path, _sha(path), "trusted by mistake", despite_findings=True)
    status, events = _run_job(ws, {"path": "evil.pt"})
    assert status.state == FAILED and "PickleRefused" in status.error and "posix.system" in status.error
    assert not (ws.root / "evil.safetensors").exists()
    assert not canary.exists()


def test_conversion_refuses_untrusted_and_changed_files(ws):
    path, _ = _checkpoint(ws, "model.pt")
    with pytest.raises(PickleRefused) as caught:
        _convert(ws, {"path": "model.pt"})
    assert caught.value.reason == UNTRUSTED
    trust_pickle(ws, path, _sha(path), "ok")
    torch.save({"w": torch.ones(1)}, path)
    with pytest.raises(PickleRefused) as caught:
        _convert(ws, {"path": "model.pt"})
    assert caught.value.reason == CHANGED
    assert not (ws.root / "model.safetensors").exists()


def _convert(ws, params):
    from weightgate.core.weights.jobs import run_convert_pickle

    ctx = FakeCtx(ws, params)
    return run_convert_pickle(ctx), ctx


def test_conversion_of_a_legacy_file_next_to_it(ws):
    path, state = _checkpoint(ws, "old/weights.pth", _use_new_zipfile_serialization=False)
    trust_pickle(ws, path, _sha(path), "ours, from 2019")
    result, ctx = _convert(ws, {"path": str(path)})
    output = ws.root / "old" / "weights.safetensors"
    assert result["output"] == str(output) and ctx.artifacts[0][0] == str(output)
    _assert_same(output, state)
    with pytest.raises(InputError, match="already exists"):
        _convert(ws, {"path": str(path)})


def test_conversion_refuses_non_tensor_leaves_and_can_select_a_key(ws):
    path = ws.root / "last.ckpt"
    torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2, 2)}}, path)
    trust_pickle(ws, path, _sha(path), "lightning run")
    with pytest.raises(InputError, match="epoch holds int, not a tensor"):
        _convert(ws, {"path": "last.ckpt"})
    result, _ = _convert(ws, {"path": "last.ckpt", "key": "state_dict"})
    assert result["tensors"] == 1


def test_trust_follows_the_path_not_the_symlink_target_and_pins_bytes(ws, tmp_path):
    # Like a Hugging Face snapshot: snapshots/<rev>/pytorch_model.bin -> ../../blobs/<hash>
    blob = tmp_path / "hub" / "blobs" / "abc123"
    blob.parent.mkdir(parents=True)
    torch.save({"w": torch.ones(2)}, blob)
    link = tmp_path / "hub" / "snapshots" / "rev" / "pytorch_model.bin"
    link.parent.mkdir(parents=True)
    link.symlink_to(blob)
    trust_pickle(ws, link, _sha(blob), "pinned in weightgate.lock")
    assert pickle_trust(ws, link).path == link.as_posix()
    assert check_pickle_allowed(ws, link).safe
    assert pickle_trust(ws, blob) is None  # trust names the file reviewed, not wherever it points
    inside = ws.root / "w" / "model.pt"
    inside.parent.mkdir()
    torch.save({"w": torch.ones(2)}, inside)
    trust_pickle(ws, "w/../w/model.pt", _sha(inside), "ok")
    assert pickle_trust(ws, inside).path == "w/model.pt"


def test_twin_names_are_the_ones_transformers_loads():
    from weightgate.core.weights.pickle_policy import is_twin_shard, twin_name

    assert twin_name("pytorch_model.bin") == "model.safetensors"
    assert twin_name("pytorch_model-00002-of-00003.bin") == "model-00002-of-00003.safetensors"
    assert is_twin_shard(twin_name("pytorch_model-00002-of-00003.bin"))
    assert twin_name("sub/pytorch_model.bin") == "sub/model.safetensors"
    assert twin_name("old/weights.pth") == "old/weights.safetensors"
    assert twin_name("run.pth.tar") == "run.safetensors" and twin_name("last.ckpt") == "last.safetensors"


def test_the_twin_header_names_the_source_bytes(ws):
    from weightgate.core.weights.pickle_policy import twin_source_sha256

    path, _ = _checkpoint(ws)
    trust_pickle(ws, path, _sha(path), "ours")
    result, _ = _convert(ws, {"path": "ckpt/pytorch_model.bin"})
    assert result["output"] == str(ws.root / "ckpt" / "model.safetensors")
    assert twin_source_sha256(result["output"]) == _sha(path) and result["locked"] is None  # no lock here


def test_plan_conversion_resolves_lock_paths_workspace_paths_and_absolute_ones(ws, tmp_path):
    from weightgate.core.engine.lock import HASH_COMPUTED, LockedFile, ModelLock, write_lock
    from weightgate.core.weights.convert import plan_conversion

    model = tmp_path / "model"
    model.mkdir()
    torch.save({"w": torch.ones(2)}, model / "pytorch_model.bin")
    write_lock(ws, ModelLock(kind="local", source=str(model), local_dir=str(model), files=[
        LockedFile("pytorch_model.bin", (model / "pytorch_model.bin").stat().st_size, _sha(model / "pytorch_model.bin"),
                   HASH_COMPUTED)]))
    plan = plan_conversion(ws, "pytorch_model.bin")       # a lock path: in the model directory
    assert plan.source == model / "pytorch_model.bin" and plan.output == model / "model.safetensors"
    assert plan.locked_as == "pytorch_model.bin" and plan.twin == "model.safetensors"
    assert plan_conversion(ws, str(model / "pytorch_model.bin")).locked_as == "pytorch_model.bin"
    elsewhere = plan_conversion(ws, str(model / "pytorch_model.bin"), output_dir=tmp_path / "out")
    assert elsewhere.twin is None                           # outside the model directory: not locked
    own, _ = _checkpoint(ws, "mine/pytorch_model.bin")      # relative to the workspace, not in the lock
    plan = plan_conversion(ws, "mine/pytorch_model.bin")
    assert plan.source == own and plan.locked_as is None
    with pytest.raises(InputError, match="no such file"):
        plan_conversion(ws, "nope.bin")
    (model / "model.safetensors").write_bytes(b"x")
    with pytest.raises(InputError, match="already exists"):
        plan_conversion(ws, "pytorch_model.bin")
    assert plan_conversion(ws, "pytorch_model.bin", overwrite=True).output == model / "model.safetensors"
