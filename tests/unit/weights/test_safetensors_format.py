"""core.weights.safetensors_format: malformed files built byte by byte, valid edge cases, real files,
and property-based tests that throw random bytes and mutations at the validator.

The reference implementation (the Rust crate, through the installed `safetensors` wheel) is the
oracle: every malformed variant must be rejected by it too, except where weightgate is stricter
on purpose (duplicate keys, unknown fields), and nothing weightgate accepts may be rejected by it.
"""

from __future__ import annotations

import json
import struct
import time

import pytest
import safetensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightgate.core.engine.errors import InputError
from weightgate.core.weights.safetensors_format import (
    DTYPE_BITS,
    FAULTS,
    MAX_HEADER_SIZE,
    SafetensorsEntryError,
    SafetensorsError,
    SafetensorsFramingError,
    SafetensorsLayoutError,
    validate_header,
    validate_safetensors,
    validate_safetensors_bytes,
)

STRICTER = {"duplicate_key", "tensor_field_unexpected"}   # faults the crate lets through


def frame(header: str | bytes | dict, data: bytes = b"", *, pad: bool = True, length: int | None = None) -> bytes:
    """8-byte length + header (+ space padding to 8 like the writers) + data."""
    raw = header if isinstance(header, bytes) else (
        header if isinstance(header, str) else json.dumps(header)).encode("utf-8")
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def t(dtype="F32", shape=(2,), offsets=(0, 8), **extra) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets), **extra}


def crate_accepts(data: bytes) -> bool:
    try:
        safetensors.deserialize(data)
    except Exception:   # the wheel raises SafetensorsError, but also e.g. OverflowError on huge ints
        return False
    return True


ONE = {"w": t()}
U64 = 2**64

# (id, file bytes, expected fault, expected tensor name or None)
MALFORMED = [
    ("empty file", b"", "file_too_small", None),
    ("7 bytes", b"\x02\0\0\0\0\0\0", "file_too_small", None),
    ("header length over the limit", struct.pack("<Q", MAX_HEADER_SIZE + 1) + b"{}", "header_too_large", None),
    ("header length 2^64-1", b"\xff" * 8 + b"{}", "header_too_large", None),
    ("header length past the end", frame("{}", pad=False, length=64), "header_exceeds_file", None),
    ("header not utf-8", frame(b'{"\xff\xfe": 1}'), "header_not_utf8", None),
    ("overlong utf-8", frame(b'{"\xc0\xaf": 1}'), "header_not_utf8", None),
    ("header not json", frame("{not json}"), "header_not_json", None),
    ("header empty", frame(b"", pad=False), "header_not_json", None),
    ("header NUL padded", frame(b"{}\0\0\0\0\0\0", pad=False), "header_not_json", None),
    ("header NaN", frame('{"__metadata__": {"a": NaN}}'), "header_not_json", None),
    ("lone surrogate", frame('{"\\ud800": ' + json.dumps(t()) + "}", b"\0" * 8), "header_not_json", None),
    ("header a list", frame("[]"), "header_not_object", None),
    ("header a string", frame('"{}"'), "header_not_object", None),
    ("duplicate tensor", frame('{"w": %s, "w": %s}' % (json.dumps(t()), json.dumps(t())), b"\0" * 8),
     "duplicate_key", None),
    ("duplicate field", frame('{"w": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}}',
                              b"\0" * 8), "duplicate_key", None),
    ("metadata int value", frame({"__metadata__": {"format": 1}}), "metadata_invalid", None),
    ("metadata a list", frame({"__metadata__": ["pt"]}), "metadata_invalid", None),
    ("tensor entry a list", frame({"w": [0, 8]}), "tensor_entry_invalid", "w"),
    ("missing dtype", frame({"w": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "tensor_field_missing", "w"),
    ("missing data_offsets", frame({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), "tensor_field_missing", "w"),
    ("extra junk field", frame({"w": t(junk=1)}, b"\0" * 8), "tensor_field_unexpected", "w"),
    ("unknown dtype", frame({"w": t(dtype="F128")}, b"\0" * 8), "unknown_dtype", "w"),
    ("lower-case dtype", frame({"w": t(dtype="f32")}, b"\0" * 8), "unknown_dtype", "w"),
    ("dtype not a string", frame({"w": t(dtype=32)}, b"\0" * 8), "unknown_dtype", "w"),
    ("negative dim", frame({"w": t(shape=(-2,))}, b"\0" * 8), "shape_invalid", "w"),
    ("float dim", frame({"w": t(shape=(2.0,))}, b"\0" * 8), "shape_invalid", "w"),
    ("bool dim", frame({"w": t(shape=(True,), offsets=(0, 4))}, b"\0" * 4), "shape_invalid", "w"),
    ("dim above u64", frame({"w": t(shape=(U64,))}, b"\0" * 8), "shape_invalid", "w"),
    ("shape a string", frame({"w": t(shape="2")}, b"\0" * 8), "shape_invalid", "w"),
    ("three offsets", frame({"w": t(offsets=(0, 8, 8))}, b"\0" * 8), "offsets_invalid", "w"),
    ("negative offset", frame({"w": t(offsets=(-8, 0))}), "offsets_invalid", "w"),
    ("begin after end", frame({"w": t(offsets=(8, 0))}, b"\0" * 8), "offsets_reversed", "w"),
    ("gap before the first tensor", frame({"w": t(offsets=(4, 12))}, b"\0" * 12), "offsets_gap", "w"),
    ("gap between tensors", frame({"a": t(offsets=(0, 8)), "b": t(offsets=(12, 20))}, b"\0" * 20),
     "offsets_gap", "b"),
    ("overlap", frame({"a": t(offsets=(0, 8)), "b": t(shape=(3,), offsets=(4, 16))}, b"\0" * 16),
     "offsets_overlap", "b"),
    ("same offsets twice", frame({"a": t(), "b": t()}, b"\0" * 8), "offsets_overlap", "b"),
    ("element count overflows", frame({"w": t(dtype="U8", shape=(2**32, 2**32), offsets=(0, 0))}),
     "size_overflow", "w"),
    ("overflow before a zero dim", frame({"w": t(dtype="U8", shape=(2**40, 2**40, 0), offsets=(0, 0))}),
     "size_overflow", "w"),
    ("bits overflow", frame({"w": t(dtype="F32", shape=(2**62,), offsets=(0, 2**64 - 1))}),
     "size_overflow", "w"),
    ("F4 odd count", frame({"w": t(dtype="F4", shape=(3,), offsets=(0, 2))}, b"\0\0"), "subbyte_misaligned", "w"),
    ("F6 one element", frame({"w": t(dtype="F6_E2M3", shape=(1,), offsets=(0, 1))}, b"\0"),
     "subbyte_misaligned", "w"),
    ("shape x dtype != end - begin", frame({"w": t(shape=(3,))}, b"\0" * 8), "size_mismatch", "w"),
    ("bf16 counted as f32", frame({"w": t(dtype="BF16", shape=(4,), offsets=(0, 16))}, b"\0" * 16),
     "size_mismatch", "w"),
    ("trailing bytes", frame(ONE, b"\0" * 9), "trailing_bytes", None),
    ("truncated data", frame(ONE, b"\0" * 7), "truncated_data", None),
    ("no data at all", frame(ONE), "truncated_data", None),
]


def test_at_least_fifteen_distinct_faults_are_exercised():
    faults = {fault for _, _, fault, _ in MALFORMED}
    assert len(faults) >= 15
    assert faults == set(FAULTS) - {"unreadable"}, "every fault code has a malformed variant"


@pytest.mark.parametrize("data, fault, tensor", [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_variant_names_its_fault(tmp_path, data, fault, tensor):
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    with pytest.raises(SafetensorsError) as info:
        validate_safetensors(path)
    err = info.value
    assert err.fault == fault, str(err)
    assert isinstance(err, InputError) and isinstance(err, FAULTS[fault][0])
    assert err.path == path and str(path) in str(err) and f"[{fault}]" in str(err)
    if tensor is not None:
        assert err.tensor == tensor
    assert err.to_dict()["fault"] == fault
    # The same bytes in memory give the same verdict.
    with pytest.raises(SafetensorsError) as again:
        validate_safetensors_bytes(data)
    assert again.value.fault == fault
    # The reference agrees that the file is bad, except where weightgate is stricter on purpose.
    if fault not in STRICTER:
        assert not crate_accepts(data), f"the crate accepts a {fault} file"


def test_where_weightgate_is_stricter_than_the_crate():
    """The crate keeps the last of two same-named tensors and ignores unknown fields; a second
    reader keeping the first would run other weights from the same file, so both are refused."""
    for name in ("duplicate tensor", "extra junk field"):
        data = next(case[1] for case in MALFORMED if case[0] == name)
        assert crate_accepts(data)
        with pytest.raises(SafetensorsError):
            validate_safetensors_bytes(data)


def test_hierarchy():
    assert issubclass(SafetensorsFramingError, SafetensorsError)
    assert issubclass(SafetensorsEntryError, SafetensorsError)
    assert issubclass(SafetensorsLayoutError, SafetensorsError)
    assert issubclass(SafetensorsError, InputError)


def test_json_error_carries_line_and_column(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(frame('{\n  "w": oops}'))
    with pytest.raises(SafetensorsError) as info:
        validate_safetensors(path)
    assert (info.value.fault, info.value.line, info.value.column) == ("header_not_json", 2, 8)


def test_missing_file_is_a_typed_error(tmp_path):
    with pytest.raises(SafetensorsError) as info:
        validate_safetensors(tmp_path / "nope.safetensors")
    assert info.value.fault == "unreadable"


# --------------------------------------------------------------------------- valid edge cases

VALID = [
    ("empty header", frame("{}", pad=False)),
    ("empty header padded", frame("{}")),
    ("whitespace around the JSON", frame(" \n{}\t\r\n ", pad=False)),
    ("metadata only", frame({"__metadata__": {"format": "pt"}})),
    ("metadata null", frame({"__metadata__": None})),
    ("rank-0 scalar", frame({"s": t(shape=(), offsets=(0, 4))}, b"\0" * 4)),
    ("zero-size tensor", frame({"z": t(shape=(0, 3), offsets=(0, 0))})),
    ("zero-size tensors sharing an offset", frame({"a": t(shape=(0,), offsets=(4, 4)), "s": t(shape=(), offsets=(0, 4)),
                                                   "b": t(shape=(5, 0), offsets=(4, 4))}, b"\0" * 4)),
    ("header order differs from data order", frame({"b": t(offsets=(8, 16)), "a": t(offsets=(0, 8))}, b"\0" * 16)),
    ("F4 even count", frame({"w": t(dtype="F4", shape=(2, 3), offsets=(0, 3))}, b"\0" * 3)),
    ("F6 four elements", frame({"w": t(dtype="F6_E3M2", shape=(4,), offsets=(0, 3))}, b"\0" * 3)),
    ("C64", frame({"w": t(dtype="C64", shape=(2,), offsets=(0, 16))}, b"\0" * 16)),
    ("unicode tensor name", frame({"层.weight": t()}, b"\0" * 8)),
]


@pytest.mark.parametrize("data", [v[1] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_edge_cases_pass_and_agree_with_the_crate(data):
    info = validate_safetensors_bytes(data)
    assert crate_accepts(data)
    reference = {name: (spec["dtype"], spec["shape"]) for name, spec in safetensors.deserialize(data)}
    assert {e.name: (e.dtype, list(e.shape)) for e in info.tensors} == reference


def test_every_known_dtype_passes():
    for dtype, bits in DTYPE_BITS.items():
        data = frame({"w": t(dtype=dtype, shape=(4, 2), offsets=(0, 8 * bits // 8))}, b"\0" * bits)
        assert validate_safetensors_bytes(data).tensors[0].dtype == dtype
        assert crate_accepts(data), dtype


def test_info_fields():
    data = frame({"__metadata__": {"format": "pt"}, "b": t(dtype="BF16", shape=(2, 2), offsets=(8, 16)),
                  "a": t(offsets=(0, 8)), "s": t(dtype="I64", shape=(), offsets=(16, 24))}, b"\0" * 24)
    info = validate_safetensors_bytes(data)
    assert info.names == ["a", "b", "s"]             # data order
    assert info.metadata == {"format": "pt"}
    assert info.params_by_dtype() == {"F32": 2, "BF16": 4, "I64": 1}
    assert info.parameter_count == 7
    assert info.data_offset + info.data_size == info.file_size == len(data)
    assert info.by_name["b"].shape == (2, 2) and info.by_name["b"].nbytes == 8
    assert info.dtypes == {"a": "F32", "b": "BF16", "s": "I64"} and info.shapes["s"] == ()
    assert json.loads(json.dumps(info.to_dict()))["tensor_count"] == 3


def test_validate_header_from_a_prefix_and_a_size():
    """The metadata-without-download path: the first 8 + n bytes and the size the hub reports."""
    data = frame({"w": t(dtype="U8", shape=(1000,), offsets=(0, 1000))}, b"\0" * 1000)
    n = int.from_bytes(data[:8], "little")
    info = validate_header(data[:8 + n], len(data), path="remote/model.safetensors")
    assert info.parameter_count == 1000 and info.path == "remote/model.safetensors"
    with pytest.raises(SafetensorsError) as info_err:
        validate_header(data[:8 + n], len(data) - 1)
    assert info_err.value.fault == "truncated_data"
    with pytest.raises(ValueError):
        validate_header(data[:8 + n - 1], len(data))


def test_reads_only_the_header_of_a_huge_file(tmp_path):
    # 8 GiB described, stored sparse: reading the data would take seconds and gigabytes.
    size = 8 << 30
    path = tmp_path / "huge.safetensors"
    head = frame({"w": t(dtype="U8", shape=(size,), offsets=(0, size))})
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(len(head) + size)
    started = time.perf_counter()
    info = validate_safetensors(path)
    assert time.perf_counter() - started < 0.5
    assert info.parameter_count == size


# --------------------------------------------------------------------------- real files

def test_real_files_from_save_file_agree_with_safe_open(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors import safe_open
    from safetensors.torch import save_file

    tensors = {
        "model.embed_tokens.weight": torch.randn(32, 16, dtype=torch.bfloat16),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(16, 16, dtype=torch.float16),
        "model.norm.weight": torch.ones(16),
        "lm_head.bias": torch.zeros(32, dtype=torch.float64),
        "step": torch.tensor(7, dtype=torch.int64),
        "mask": torch.ones(3, dtype=torch.bool),
        "empty": torch.zeros(0, 4),
        "fp8": torch.zeros(8, dtype=torch.float8_e4m3fn),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, path, metadata={"format": "pt"})
    info = validate_safetensors(path)
    with safe_open(path, framework="pt") as handle:
        assert set(handle.keys()) == set(info.names)
        for name in handle.keys():
            assert list(handle.get_slice(name).get_shape()) == list(info.by_name[name].shape)
            assert handle.get_slice(name).get_dtype() == info.by_name[name].dtype
        assert handle.metadata() == info.metadata
    assert info.params_by_dtype()["BF16"] == 32 * 16
    assert info.parameter_count == sum(v.numel() for v in tensors.values())


# --------------------------------------------------------------------------- property-based

def _valid_file() -> bytes:
    return frame({"__metadata__": {"format": "pt"}, "a": t(dtype="BF16", shape=(2, 3), offsets=(0, 12)),
                  "b": t(dtype="F4", shape=(4,), offsets=(12, 14)), "c": t(shape=(), offsets=(14, 18))},
                 bytes(range(18)))


def _check(data: bytes) -> None:
    """Only success or a SafetensorsError, and never accept what the reference rejects."""
    try:
        validate_safetensors_bytes(data)
    except SafetensorsError as exc:
        assert exc.fault in FAULTS
        if crate_accepts(data):
            assert exc.fault in STRICTER, f"refused {exc.fault} but the crate accepts"
        return
    assert crate_accepts(data), "accepted a file the reference implementation rejects"


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=256))
def test_random_bytes(data):
    _check(data)


@FAST
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=260))
def test_random_header_bytes_with_a_plausible_length(body, length):
    _check(struct.pack("<Q", length) + body)


@FAST
@given(st.data())
def test_mutations_of_a_valid_file(draw):
    data = bytearray(_valid_file())
    for _ in range(draw.draw(st.integers(1, 4))):
        op = draw.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw.draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw.draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw.draw(st.sampled_from(b'{}[]",:0123456789 -.eE\\\x00\xff'))
        elif op == "insert":
            data[at:at] = draw.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at:at + draw.draw(st.integers(1, 4))]
        else:
            del data[at:]
    _check(bytes(data))


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**65), st.floats(allow_nan=False),
                       st.text(max_size=6), st.sampled_from(sorted(DTYPE_BITS)))
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "x", "__metadata__"]),
                                       inner, max_size=4), max_leaves=12)
_entry = st.fixed_dictionaries({"dtype": st.sampled_from(sorted(DTYPE_BITS) + ["F128"]),
                                "shape": st.lists(st.integers(0, 5), max_size=3),
                                "data_offsets": st.lists(st.integers(0, 40), min_size=2, max_size=2)})


@FAST
@given(st.dictionaries(st.text(min_size=1, max_size=4), st.one_of(_entry, _json), max_size=4),
       st.integers(0, 48))
def test_random_headers(header, data_len):
    _check(frame(header, b"\0" * data_len))
