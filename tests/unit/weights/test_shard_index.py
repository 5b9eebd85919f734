"""A sharded model's index against the lock and the shards' headers, on real files: a tiny model
saved with `save_pretrained(max_shard_size=...)`, its index then edited as an attacker would
(a shadow shard beside the locked ones, a path outside the directory, a tensor moved, missing or
duplicated). Every case: the file and tensor named, verify.headers failing, `verified_snapshot`
refusing, so nothing loads. And a property: no random edit of the index lets `verified_snapshot`
return while the tensors transformers would load differ from the locked ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.lock import read_lock, write_lock
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.gates import compute_report
from weightgate.core.weights.local_source import lock_local_source
from weightgate.core.weights.verify import verified_snapshot, verify_lock

INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model in several shards, plus shadow.safetensors: shard 1 with every value
    changed (what an attacker would want loaded). plan_files leaves it out of the lock."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("sharded") / "model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_safetensors=True)
    model.save_pretrained(root, max_shard_size="150KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (tiny_model_dir / name).is_file():
            shutil.copy(tiny_model_dir / name, root / name)
    shards = sorted(p.name for p in root.glob("model-*.safetensors"))
    assert len(shards) >= 3, shards
    first = load_file(root / shards[0])
    save_file({name: value + 1.0 for name, value in first.items()}, root / "shadow.safetensors",
              metadata={"format": "pt"})
    return root


def index_of(root: Path) -> dict:
    return json.loads((root / INDEX).read_text())


def locked_copy(sharded: Path, tmp_path: Path, edit=None):
    """A copy of the sharded model, its index edited by `edit(index)`, then locked (the lock
    blesses the edited index, as a fetch of a hostile repo would)."""
    root = tmp_path / "model"
    shutil.copytree(sharded, root)
    if edit is not None:
        index = index_of(root)
        edit(index)
        (root / INDEX).write_text(json.dumps(index))
    ws = init_workspace(tmp_path / "ws")
    lock_local_source(ws, str(root))
    assert read_lock(ws).file("shadow.safetensors") is None
    return ws, root


def index_fault(ws) -> tuple[str, str]:
    report = verify_lock(ws)
    result = next(f for f in report.files if f.path == INDEX)
    assert report.checksum_ok and not report.headers_ok and not report.ok
    return result.header, result.header_message


def assert_refused(ws, *names: str) -> None:
    with pytest.raises(InputError) as refused:
        verified_snapshot(ws)
    for name in names:
        assert name in str(refused.value)
    status = compute_report(ws).item("verify.headers")
    assert status.status == "fail"
    for name in names:
        assert name in status.detail


def test_the_intact_sharded_model_verifies_and_loads(sharded, tmp_path):
    ws, root = locked_copy(sharded, tmp_path)
    report = verify_lock(ws)
    assert report.ok and next(f for f in report.files if f.path == INDEX).header == "ok"
    assert verified_snapshot(ws) == root


def test_a_shadow_shard_the_lock_does_not_list_is_refused(sharded, tmp_path):
    shards = sorted(p.name for p in sharded.glob("model-*.safetensors"))
    tensor = sorted(load_file(sharded / shards[0]))[0]

    def to_shadow(index):
        for name, shard in index["weight_map"].items():
            if shard == shards[0]:
                index["weight_map"][name] = "shadow.safetensors"
    ws, root = locked_copy(sharded, tmp_path, to_shadow)
    fault, message = index_fault(ws)
    assert fault == "index_unlocked_shard" and "shadow.safetensors" in message and tensor in message
    assert_refused(ws, "shadow.safetensors", INDEX)
    # Changing the shadow later changes nothing: it is refused whatever it holds.
    (root / "shadow.safetensors").write_bytes((root / "shadow.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    assert index_fault(ws)[0] == "index_unlocked_shard"


def test_an_index_pointing_outside_the_directory_is_refused(sharded, tmp_path):
    def outside(index):
        name = next(iter(index["weight_map"]))
        index["weight_map"][name] = "../evil/x.safetensors"
    ws, _ = locked_copy(sharded, tmp_path, outside)
    fault, message = index_fault(ws)
    assert fault == "index_path_unsafe" and "../evil/x.safetensors" in message and "climbs out" in message
    assert_refused(ws, "../evil/x.safetensors")


def test_a_tensor_moved_to_a_shard_without_it_is_named(sharded, tmp_path):
    shards = sorted(p.name for p in sharded.glob("model-*.safetensors"))
    moved = sorted(load_file(sharded / shards[0]))[0]

    def move(index):
        index["weight_map"][moved] = shards[1]
    ws, _ = locked_copy(sharded, tmp_path, move)
    report = verify_lock(ws)
    message = next(f for f in report.files if f.path == INDEX).header_message
    assert f"maps {moved} to {shards[1]}" in message and "no such tensor" in message
    assert_refused(ws, moved)


def test_a_tensor_in_two_shards_is_named(sharded, tmp_path):
    root = tmp_path / "src"
    shutil.copytree(sharded, root)
    shards = sorted(p.name for p in root.glob("model-*.safetensors"))
    first, second = load_file(root / shards[0]), load_file(root / shards[1])
    name = sorted(first)[0]
    save_file({**second, name: np.zeros_like(first[name])}, root / shards[1], metadata={"format": "pt"})
    ws, _ = locked_copy(root, tmp_path / "copy")
    fault, message = index_fault(ws)
    assert name in message and shards[0] in message and shards[1] in message
    assert_refused(ws, name)


def test_a_locked_shard_the_index_does_not_name_is_named(sharded, tmp_path):
    shards = sorted(p.name for p in sharded.glob("model-*.safetensors"))

    def forget(index):
        index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != shards[-1]}
    ws, _ = locked_copy(sharded, tmp_path, forget)
    fault, message = index_fault(ws)
    assert fault == "index_shard_unnamed" and shards[-1] in message
    assert_refused(ws, shards[-1])


def test_load_dir_climbing_out_of_the_snapshot_is_refused(sharded, tmp_path):
    ws, _ = locked_copy(sharded, tmp_path)
    lock = read_lock(ws)
    lock.load_dir = "../../../somewhere"
    write_lock(ws, lock)
    report = verify_lock(ws)
    assert not report.ok and "load_dir" in report.lock_fault and "climbs out" in report.lock_fault
    with pytest.raises(InputError, match="load_dir"):
        verified_snapshot(ws)
    assert compute_report(ws).item("verify.checksum").status == "fail"


# --- the property --------------------------------------------------------------------------


def loaded_by_transformers(root: Path, index: dict) -> dict:
    """What transformers loads for this index: every shard it names, whole, in order (a later
    shard's tensor replaces an earlier one's); a shard outside or missing loads nothing here."""
    state: dict = {}
    for shard in sorted(set(index["weight_map"].values())):
        path = (root / shard).resolve()
        if path.is_file() and path.parent == root.resolve():
            state.update(load_file(path))
    return state


EDITS = st.lists(st.tuples(st.sampled_from(["shadow", "other_shard", "drop", "bogus", "outside", "absolute"]),
                           st.integers(0, 10_000)), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_no_index_edit_loads_other_bytes_through_verified_snapshot(sharded, tmp_path_factory, edits):
    original = index_of(sharded)
    shards = sorted(set(original["weight_map"].values()))
    names = sorted(original["weight_map"])

    def edit(index):
        for kind, n in edits:
            name = names[n % len(names)]
            if kind == "shadow":
                index["weight_map"][name] = "shadow.safetensors"
            elif kind == "other_shard":
                index["weight_map"][name] = shards[(shards.index(original["weight_map"][name]) + 1 + n)
                                                   % len(shards)]
            elif kind == "drop":
                index["weight_map"].pop(name, None)
            elif kind == "bogus":
                index["weight_map"][f"bogus.{n}.weight"] = shards[n % len(shards)]
            elif kind == "outside":
                index["weight_map"][name] = f"../{shards[n % len(shards)]}"
            else:
                index["weight_map"][name] = str(sharded / shards[n % len(shards)])

    tmp_path = tmp_path_factory.mktemp("property")
    ws, root = locked_copy(sharded, tmp_path, edit)
    expected = loaded_by_transformers(root, original)
    try:
        verified_snapshot(ws)
    except InputError:
        return                                                   # refused: nothing loads
    state = loaded_by_transformers(root, index_of(root))
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        assert np.array_equal(state[key], value), key
