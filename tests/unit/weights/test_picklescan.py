"""The static pickle scanner: genuine torch checkpoints pass, the malicious corpus is flagged,
malformed input gets the typed error, and nothing is ever unpickled (the canary stays absent)."""

from __future__ import annotations

import enum
import io
import random
from collections import OrderedDict
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pickle_corpus import ERROR, FLAGGED, corpus, genuine_checkpoint, is_well_formed, torch_corpus

from weightgate.core.weights.pickle_rules import ALLOWED_GLOBALS, DANGEROUS, UNKNOWN, PickleScanError
from weightgate.core.weights.picklescan import is_pickle_path, scan_bytes, scan_file

torch = pytest.importorskip("torch")


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a payload ran: the canary file exists"


def _flagged(data: bytes):
    """(flagged?, {(module, name)} found) without ever loading."""
    try:
        result = scan_bytes(data)
    except PickleScanError as exc:
        return True, {(f.module, f.name) for f in exc.findings}, ERROR
    return not result.safe, {(f.module, f.name) for f in result.findings}, FLAGGED


# --- genuine checkpoints ----------------------------------------------------------------------


def _state_dict():
    tied = torch.randn(8, 4)
    return OrderedDict(
        [("embed.weight", tied), ("lm_head.weight", tied),  # tied: one storage, two names
         ("norm.weight", torch.ones(4, dtype=torch.bfloat16)),
         ("half", torch.randn(3, dtype=torch.float16)), ("double", torch.randn(2, dtype=torch.float64)),
         ("ids", torch.arange(5)), ("mask", torch.tensor([True, False])), ("q", torch.ones(2, dtype=torch.int8)),
         ("fp8", torch.zeros(4).to(torch.float8_e4m3fn)), ("scalar", torch.tensor(1.5)),
         ("view", tied[2:]), ("empty", torch.empty(0, 3)),
         ("layers", OrderedDict(attn=OrderedDict(q_proj=torch.randn(4, 4)), mlp={"up": torch.randn(2, 4)}))]
    )


@pytest.mark.parametrize("options", [{}, {"_use_new_zipfile_serialization": False}, {"pickle_protocol": 4},
                                     {"pickle_protocol": 5, "_use_new_zipfile_serialization": False}],
                         ids=["zip", "legacy", "zip-p4", "legacy-p5"])
def test_genuine_torch_state_dict_passes_with_zero_findings(tmp_path, options):
    path = tmp_path / "pytorch_model.bin"
    torch.save(_state_dict(), path, **options)
    result = scan_file(path)
    assert result.findings == () and result.safe
    assert set(result.imports) <= ALLOWED_GLOBALS
    assert {("torch._utils", "_rebuild_tensor_v2"), ("torch", "BFloat16Storage"),
            ("collections", "OrderedDict")} <= set(result.imports)
    if options.get("_use_new_zipfile_serialization") is False:
        assert result.format == "pickle" and len(result.members) == 5
        assert "raw storage data" in result.notes[0]
    else:
        # torch names the archive's top directory after the file's stem
        assert result.format == "zip" and result.members == ("pytorch_model/data.pkl[0]",)


def test_genuine_module_optimizer_and_parameter_checkpoints_pass(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    # The shape of AdamW.state_dict() after a step (importing torch.optim costs 3 s here).
    optimizer = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(4, 4), "exp_avg_sq": torch.zeros(4, 4)}},
                 "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01,
                                   "amsgrad": False, "foreach": None, "maximize": False, "params": [0, 1, 2, 3]}]}
    for name, obj in [("model.pt", model.state_dict()), ("optimizer.pt", optimizer),
                      ("scheduler.pt", {"last_epoch": 3, "_step_count": 4}),
                      ("params.pth", {"p": torch.nn.Parameter(torch.ones(2), requires_grad=False)})]:
        torch.save(obj, tmp_path / name)
        result = scan_file(tmp_path / name)
        assert result.safe, (name, result.findings)


def test_allowlist_is_exact_and_lists_what_torch_emits():
    # No module-wide entries: every entry is one (module, name), each a real torch.save product.
    assert all(isinstance(m, str) and isinstance(n, str) and "*" not in m + n for m, n in ALLOWED_GLOBALS)
    for module, name in ALLOWED_GLOBALS:
        target = __import__(module, fromlist=[name])
        assert hasattr(target, name), (module, name)
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32,
                  torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64, torch.float8_e4m3fn,
                  torch.float8_e5m2, torch.uint16, torch.uint32, torch.uint64):
        buffer = io.BytesIO()
        torch.save({"t": torch.zeros(2).to(dtype)}, buffer)
        assert scan_bytes(buffer.getvalue()).safe, dtype


class _Strategy(enum.Enum):  # module level, as transformers' IntervalStrategy is
    STEPS = "steps"


@dataclass
class _FakeTrainingArguments:  # the shape of transformers' training_args.bin: dataclass + enums
    output_dir: str = "out"
    eval_strategy: _Strategy = _Strategy.STEPS
    device: object = None


def test_training_leftovers_are_reported_as_unknown_not_allowed(tmp_path):
    # training_args.bin and rng_state.pth are not weights: what they import is shown, and
    # refused (unknown, not dangerous). (Real transformers TrainingArguments imports
    # transformers.training_args.TrainingArguments, trainer_utils enums, accelerate.state.
    # PartialState, torch.device: all unknown; importing transformers takes 20 s, so a stand-in.)
    args = _FakeTrainingArguments(device=torch.device("cpu"))
    torch.save(args, tmp_path / "training_args.bin")
    result = scan_file(tmp_path / "training_args.bin")
    found = {(f.module, f.name): f.severity for f in result.findings}
    assert found[(__name__, "_FakeTrainingArguments")] == UNKNOWN
    assert found[("torch", "device")] == UNKNOWN
    assert found[(__name__, "_Strategy")] == UNKNOWN
    assert not result.safe and not result.dangerous

    numpy = pytest.importorskip("numpy")
    rng = {"python": random.Random(0).getstate(), "numpy": numpy.random.RandomState(0).get_state(),
           "cpu": torch.random.get_rng_state()}
    torch.save(rng, tmp_path / "rng_state.pth")
    result = scan_file(tmp_path / "rng_state.pth")
    assert not result.safe and not result.dangerous
    assert ("_codecs", "encode") in result.imports
    assert any(module.startswith("numpy") for module, _ in result.imports)


# --- the malicious corpus ---------------------------------------------------------------------


def _all_payloads(canary):
    return corpus(canary) + torch_corpus(canary)


def test_every_payload_is_flagged_and_none_executes(canary, tmp_path):
    payloads = _all_payloads(canary)
    assert len(payloads) >= 25
    for payload in payloads:
        if payload.well_formed:
            assert is_well_formed(payload.data), payload.name  # a real, complete pickle
        flagged, found, how = _flagged(payload.data)
        assert flagged, payload.name
        assert how == payload.expect, payload.name
        assert payload.must_flag <= found, (payload.name, payload.must_flag - found)
        path = tmp_path / f"{payload.name}.pt"
        path.write_bytes(payload.data)
        assert _file_is_flagged(path), payload.name
        assert not canary.exists(), payload.name


def _file_is_flagged(path) -> bool:
    try:
        return not scan_file(path).safe
    except PickleScanError:
        return True


@pytest.mark.parametrize("name, module, attr, opcode", [
    ("os_system_global_p0", "os", "system", "GLOBAL"),
    ("stack_global_memo_p4", "os", "system", "STACK_GLOBAL"),
    ("inst_p0", "os", "system", "INST"),
    ("obj_p1", "nt", "system", "GLOBAL"),
    ("builtin_eval_p2", "builtins", "eval", "GLOBAL"),
    ("builtins_exec_p4", "builtins", "exec", "STACK_GLOBAL"),
    ("functools_partial_p2", "functools", "partial", "GLOBAL"),
    ("operator_methodcaller_p4", "operator", "methodcaller", "GLOBAL"),
    ("stack_global_long_memo_framed_p5", "subprocess", "check_call", "STACK_GLOBAL"),
])
def test_findings_name_module_opcode_and_offset(canary, name, module, attr, opcode):
    payload = next(p for p in corpus(canary) if p.name == name)
    result = scan_bytes(payload.data)
    finding = next(f for f in result.findings if (f.module, f.name) == (module, attr))
    assert finding.opcode == opcode and finding.severity == DANGEROUS
    assert payload.data[finding.offset:finding.offset + 1] == {
        "GLOBAL": b"c", "STACK_GLOBAL": b"\x93", "INST": b"i"}[opcode]
    assert (module, attr) in result.imports


def test_stack_global_through_memo_resolves_and_unresolvable_is_dangerous(canary):
    payloads = {p.name: p for p in corpus(canary)}
    memo = scan_bytes(payloads["stack_global_memo_p4"].data)
    assert memo.imports == (("os", "system"),)
    unresolved = scan_bytes(payloads["stack_global_unresolvable_p4"].data)
    finding = next(f for f in unresolved.findings if f.opcode == "STACK_GLOBAL")
    assert finding.severity == DANGEROUS and "unresolvable STACK_GLOBAL" in finding.reason


def test_gadget_chains_flag_the_computed_call(canary):
    payloads = {p.name: p for p in corpus(canary)}
    for name in ("operator_attrgetter_chain_p4", "functools_partial_p2", "builtins_getattr_p2"):
        result = scan_bytes(payloads[name].data)
        assert any(f.name == "<computed callable>" and f.opcode == "REDUCE" for f in result.findings), name


def test_nested_pickle_is_scanned_too(canary):
    payloads = {p.name: p for p in corpus(canary)}
    for name in ("nested_pickle_loads_p3", "nested_c_pickle_loads_codecs_p2"):
        result = scan_bytes(payloads[name].data)
        nested = [f for f in result.findings if ">bytes@" in f.member]
        assert [(f.module, f.name) for f in nested] == [("posix", "system")], name
        outer = [f for f in result.findings if ">bytes@" not in f.member]
        assert any(f.name == "loads" and f.severity == DANGEROUS for f in outer), name


def test_mutating_an_allowlisted_global_is_dangerous(canary):
    payloads = {p.name: p for p in corpus(canary)}
    result = scan_bytes(payloads["build_on_allowlisted_global_p2"].data)
    assert [(f.opcode, f.severity) for f in result.findings] == [("BUILD", DANGEROUS)]
    dotted = scan_bytes(payloads["dotted_name_from_allowlisted_module_p4"].data)
    assert dotted.dangerous and "dotted" in dotted.findings[0].reason


def test_torch_containers_with_payloads(canary):
    payloads = {p.name: p for p in torch_corpus(canary)}
    replaced = scan_bytes(payloads["torch_zip_data_pkl_replaced"].data)
    assert replaced.format == "zip" and replaced.findings[0].member == "archive/data.pkl[0]"
    extra = scan_bytes(payloads["torch_zip_extra_pkl_member"].data)
    assert [f.member for f in extra.findings] == ["archive/extra.pkl[0]"]
    assert "archive/data.pkl[0]" in extra.members  # the genuine member was scanned too
    legacy = scan_bytes(payloads["torch_legacy_object_replaced"].data)
    assert legacy.format == "pickle" and legacy.findings[0].member == "pickle[3]"
    script = scan_bytes(payloads["torch_zip_torchscript_code"].data)
    assert {f.name for f in script.findings} >= {"archive/constants.pkl", "archive/code/__torch__/m.py"}


def test_tar_polyglot_is_refused(canary):
    payload = next(p for p in torch_corpus(canary) if p.name == "torch_tar_polyglot")
    # Its first 5 pickles alone would pass as a harmless legacy file: the tar check is what catches it.
    from pickle_corpus import legacy_spans

    head = payload.data[: legacy_spans(payload.data)[4][1]]
    assert scan_bytes(head + b"\x00" * 16).safe
    with pytest.raises(PickleScanError, match="tar archive"):
        scan_bytes(payload.data)


def test_truncated_stream_error_keeps_what_it_saw(canary):
    payload = next(p for p in corpus(canary) if p.name == "truncated_stream")
    with pytest.raises(PickleScanError) as caught:
        scan_bytes(payload.data)
    assert [(f.module, f.name) for f in caught.value.findings] == [("posix", "system")]
    assert "malformed pickle" in caught.value.message


@pytest.mark.parametrize("bad_name", ["../../evil.pkl", "/etc/evil.pkl", "archive\\..\\evil.pkl", "C:/evil.pkl"])
def test_zip_path_traversal_names_are_refused(bad_name):
    from pickle_corpus import _zip

    with pytest.raises(PickleScanError, match="outside the archive"):
        scan_bytes(_zip({"archive/data.pkl": b"\x80\x02}q\x00.", bad_name: b"\x80\x02N."}))


def test_duplicate_zip_members_are_refused():
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("archive/data.pkl", b"\x80\x02}.")
        archive.writestr("archive/data.pkl", b"\x80\x02N.")
    with pytest.raises(PickleScanError, match="appears twice"):
        scan_bytes(buffer.getvalue())


def test_legacy_file_missing_pickles_is_malformed():
    data = genuine_checkpoint(legacy=True)
    from pickle_corpus import legacy_spans

    with pytest.raises(PickleScanError, match="ends after 3 of its 5 pickles"):
        scan_bytes(data[: legacy_spans(data)[2][1]])


def test_scan_errors_are_input_errors_with_a_path(tmp_path):
    from weightgate.core.engine.errors import InputError

    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x80\x04\x95")
    with pytest.raises(InputError) as caught:
        scan_file(path)
    assert caught.value.path == path and str(path) in str(caught.value)
    with pytest.raises(PickleScanError, match="cannot read"):
        scan_file(tmp_path / "missing.pt")


def test_is_pickle_path():
    for name in ("pytorch_model.bin", "model.pt", "x.pth", "last.ckpt", "a.pkl", "a.pickle", "optimizer.pt",
                 "rng_state.pth", "training_args.bin", "scheduler.pt", "dir/sub/CHECKPOINT.PTH", "ckpt.pth.tar"):
        assert is_pickle_path(name), name
    for name in ("model.safetensors", "config.json", "pytorch_model.bin.index.json", "model.gguf", "tokenizer.model",
                 "README.md", "bin", "modeling.py"):
        assert not is_pickle_path(name), name


# --- property: random input only ever gets the typed error ------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_the_typed_error(data):
    try:
        scan_bytes(data)
    except PickleScanError:
        pass


_SEEDS = [bytes(p.data) for p in corpus(__import__("pathlib").Path("/nonexistent/canary")) if p.well_formed]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_SEEDS), st.integers(min_value=0), st.binary(min_size=1, max_size=4),
       st.sampled_from(["flip", "cut", "insert"]))
def test_mutated_pickles_only_raise_the_typed_error(seed, where, noise, how):
    at = where % len(seed)
    data = {"flip": seed[:at] + noise + seed[at + len(noise):], "cut": seed[:at],
            "insert": seed[:at] + noise + seed[at:]}[how]
    try:
        result = scan_bytes(data)
    except PickleScanError:
        return
    assert result.format == "pickle"


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0), st.binary(min_size=1, max_size=8))
def test_mutated_torch_zips_only_raise_the_typed_error(where, noise):
    seed = _GENUINE_ZIP[0] if _GENUINE_ZIP else _GENUINE_ZIP.append(genuine_checkpoint()) or _GENUINE_ZIP[0]
    at = where % len(seed)
    try:
        scan_bytes(seed[:at] + noise + seed[at + len(noise):])
    except PickleScanError:
        pass


_GENUINE_ZIP: list[bytes] = []
