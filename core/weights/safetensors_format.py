"""Validate a .safetensors header the way the reference implementation does, and name the fault.

The rules mirror the Rust `safetensors` crate (`SafeTensors::read_metadata` + `Metadata::validate`):
8-byte little-endian header length; at most 100,000,000 bytes; the header is UTF-8 JSON (JSON
whitespace around it is allowed: writers pad with spaces to an 8-byte boundary); an object whose
`__metadata__` is a str->str map (or null) and whose other keys are tensors with a known dtype, a
shape of unsigned ints and two data offsets; sorted by offsets, the tensors tile the data buffer
from 0 with no gap or overlap; shape x dtype bits is computed with checked u64 arithmetic, is a
whole number of bytes and equals end - begin; and the data ends exactly at the end of the file.

Where the crate is lenient we are stricter, on purpose: a duplicate key (the crate keeps the last
one, another reader may keep the first: two readers would run different weights from the same
file) and unknown fields in a tensor entry are refused too. Every fault has its own code.

Only the header is read (seek, never the data), so a multi-GB shard is checked in milliseconds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightgate.core.engine.errors import FaultError

MAX_HEADER_SIZE = 100_000_000   # the crate's MAX_HEADER_SIZE
USIZE_MAX = 2**64 - 1           # the crate's usize on the 64-bit hosts that load weights

# Element sizes in bits, as the crate (0.8) knows them. Sub-byte types (F4, F6_*) pack elements,
# so a tensor's size is only whole when elements x bits is a multiple of 8.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}

TENSOR_FIELDS = ("dtype", "shape", "data_offsets")

_REFETCH = "the file is damaged or was not written by a safetensors writer; fetch it again and re-verify"


@dataclass
class SafetensorsError(FaultError):
    """A .safetensors file that must not be loaded. `fault` is a stable code (see FAULTS)."""

    tensor: str | None = None

    def detail(self) -> str:
        return f" (tensor {self.tensor!r})" if self.tensor is not None else ""

    def to_dict(self) -> dict:
        return {**super().to_dict(), "tensor": self.tensor}


class SafetensorsFramingError(SafetensorsError):
    """The 8-byte length, the header bytes, UTF-8 or JSON are wrong: nothing else can be read."""


class SafetensorsEntryError(SafetensorsError):
    """The JSON parses, but an entry (metadata or a tensor) is not what the format says."""


class SafetensorsLayoutError(SafetensorsError):
    """Every entry is well-formed, but sizes and offsets don't describe this file's bytes."""


# code -> (class, what it means). Codes are stable: evidence records and tests use them.
FAULTS: dict[str, tuple[type[SafetensorsError], str]] = {
    "unreadable": (SafetensorsError, "the file cannot be opened or read"),
    "file_too_small": (SafetensorsFramingError, "shorter than the 8-byte header length"),
    "header_too_large": (SafetensorsFramingError, "header length above 100,000,000 bytes"),
    "header_exceeds_file": (SafetensorsFramingError, "8 + header length is past the end of the file"),
    "header_not_utf8": (SafetensorsFramingError, "header bytes are not valid UTF-8"),
    "header_not_json": (SafetensorsFramingError, "header is not valid JSON"),
    "header_not_object": (SafetensorsFramingError, "header JSON is not an object"),
    "duplicate_key": (SafetensorsEntryError, "a JSON object repeats a key"),
    "metadata_invalid": (SafetensorsEntryError, "__metadata__ is not a map of strings to strings"),
    "tensor_entry_invalid": (SafetensorsEntryError, "a tensor entry is not a JSON object"),
    "tensor_field_missing": (SafetensorsEntryError, "a tensor entry lacks dtype, shape or data_offsets"),
    "tensor_field_unexpected": (SafetensorsEntryError, "a tensor entry has fields besides those three"),
    "unknown_dtype": (SafetensorsEntryError, "dtype is not one the reference implementation knows"),
    "shape_invalid": (SafetensorsEntryError, "shape is not a list of integers in 0..2^64-1"),
    "offsets_invalid": (SafetensorsEntryError, "data_offsets is not two integers in 0..2^64-1"),
    "offsets_reversed": (SafetensorsLayoutError, "a tensor's begin offset is after its end"),
    "offsets_gap": (SafetensorsLayoutError, "bytes between tensors (or before the first) belong to none"),
    "offsets_overlap": (SafetensorsLayoutError, "two tensors share bytes"),
    "size_overflow": (SafetensorsLayoutError, "shape x dtype size overflows 64 bits"),
    "subbyte_misaligned": (SafetensorsLayoutError, "a sub-byte dtype tensor does not end on a byte"),
    "size_mismatch": (SafetensorsLayoutError, "shape x dtype size differs from end - begin"),
    "trailing_bytes": (SafetensorsLayoutError, "the file continues after the last tensor"),
    "truncated_data": (SafetensorsLayoutError, "the file ends before the last tensor does"),
}


def _fail(fault: str, message: str, path: Path | None, *, tensor: str | None = None,
          line: int | None = None, column: int | None = None, hint: str | None = _REFETCH):
    cls = FAULTS[fault][0]
    return cls(message, path=path, line=line, column=column, hint=hint, fault=fault, tensor=tensor)


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int          # offsets into the data buffer (after the 8 + header_size bytes)
    end: int

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass
class SafetensorsInfo:
    path: str | None
    header_size: int                        # n, the JSON's length in bytes (padding included)
    file_size: int
    tensors: list[TensorEntry]              # in data order (sorted by offsets, like the crate)
    metadata: dict[str, str] | None = None  # __metadata__, e.g. {"format": "pt"}
    by_name: dict[str, TensorEntry] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.by_name:
            self.by_name = {t.name: t for t in self.tensors}

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    @property
    def dtypes(self) -> dict[str, str]:
        return {t.name: t.dtype for t in self.tensors}

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for t in self.tensors}

    @property
    def data_offset(self) -> int:
        return 8 + self.header_size

    @property
    def data_size(self) -> int:
        return self.file_size - self.data_offset

    def params_by_dtype(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel
        return counts

    @property
    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors)

    def to_dict(self) -> dict:
        return {
            "path": self.path, "header_size": self.header_size, "file_size": self.file_size,
            "tensor_count": len(self.tensors), "parameter_count": self.parameter_count,
            "params_by_dtype": self.params_by_dtype(), "metadata": self.metadata,
            "tensors": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape),
                         "data_offsets": [t.begin, t.end]} for t in self.tensors],
        }


# --------------------------------------------------------------------------- public entry points

def validate_safetensors(path: str | os.PathLike) -> SafetensorsInfo:
    """Read and validate only the header of `path`; raise a SafetensorsError naming the fault."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            first8 = handle.read(8)
            if len(first8) < 8:   # shorter than fstat said: it shrank meanwhile
                file_size = len(first8)
            n = _header_length(first8, file_size, path)
            header = handle.read(n)
    except OSError as exc:
        raise _fail("unreadable", f"cannot read the file ({exc.strerror or exc})", path,
                    hint="check the path and its permissions") from None
    if len(header) != n:   # the file shrank between fstat and read
        raise _fail("header_exceeds_file", f"the file ended inside the {n}-byte header", path)
    return _parse(header, file_size, path)


def validate_header(prefix: bytes, file_size: int, *, path: str | os.PathLike | None = None) -> SafetensorsInfo:
    """Validate from the file's first bytes and its total size, without the data.

    For a remote file: fetch bytes 0..8, then 8..8+n with a range request, pass both with the size
    the hub reports. `prefix` must hold at least 8 + n bytes when the file is that long.
    """
    where = Path(path) if path is not None else None
    n = _header_length(bytes(prefix[:8]), file_size, where)
    if len(prefix) < 8 + n:
        raise ValueError(f"prefix holds {len(prefix)} bytes; the header needs {8 + n}")
    return _parse(bytes(prefix[8:8 + n]), file_size, where)


def validate_safetensors_bytes(data: bytes, *, path: str | os.PathLike | None = None) -> SafetensorsInfo:
    """Validate a whole file held in memory (tests, small downloads)."""
    return validate_header(data, len(data), path=path)


def header_length(prefix: bytes, file_size: int, *, path: str | os.PathLike | None = None) -> int:
    """n, the JSON header's length, from the file's first 8 bytes: how much a remote reader must
    fetch before validate_header. An impossible n raises the same faults validate_header would."""
    return _header_length(bytes(prefix[:8]), file_size, Path(path) if path is not None else None)


# --------------------------------------------------------------------------- the checks

def _header_length(first8: bytes, file_size: int, path: Path | None) -> int:
    if file_size < 8 or len(first8) < 8:
        if file_size >= 8:
            raise ValueError("need the first 8 bytes of the file")
        raise _fail("file_too_small", f"the file is {file_size} bytes; a safetensors file starts "
                    "with an 8-byte header length", path)
    n = int.from_bytes(first8[:8], "little")
    if n > MAX_HEADER_SIZE:
        raise _fail("header_too_large", f"header length {n} is above the {MAX_HEADER_SIZE}-byte limit", path)
    if 8 + n > file_size:
        raise _fail("header_exceeds_file", f"header length {n} runs past the end of the file "
                    f"({file_size} bytes)", path)
    return n


class _DuplicateKey(Exception):
    pass


class _BadString(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    # object_pairs_hook sees every object with all its pairs, so duplicates are visible here
    # (a plain dict would silently keep the last).
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        # Python accepts escaped lone surrogates ("\ud800"); serde_json and UTF-8 do not.
        for text in (key, value):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise _BadString(key) from None
        out[key] = value
    return out


def _no_constant(name: str):
    # Python accepts NaN / Infinity; JSON (and serde_json) does not.
    raise ValueError(f"{name} is not valid JSON")


def _parse(header: bytes, file_size: int, path: Path | None) -> SafetensorsInfo:
    n = len(header)
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail("header_not_utf8", f"header byte {exc.start} is not valid UTF-8 ({exc.reason})",
                    path) from None
    try:
        doc = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise _fail("duplicate_key", f"key {exc.args[0]!r} appears twice in one JSON object",
                    path) from None
    except _BadString as exc:
        raise _fail("header_not_json", f"an unpaired surrogate escape near key {exc.args[0]!r}",
                    path) from None
    except json.JSONDecodeError as exc:
        raise _fail("header_not_json", f"header is not JSON: {exc.msg}", path,
                    line=exc.lineno, column=exc.colno) from None
    except (ValueError, RecursionError) as exc:   # huge int literal, NaN, absurd nesting
        raise _fail("header_not_json", f"header is not JSON: {exc}", path) from None
    if not isinstance(doc, dict):
        raise _fail("header_not_object", f"header JSON is a {type(doc).__name__}, not an object", path)

    metadata = _metadata(doc.pop("__metadata__", None), path)
    entries = [_entry(name, value, path) for name, value in doc.items()]
    data_end = _layout(entries, path)

    available = file_size - 8 - n
    if data_end > available:
        raise _fail("truncated_data", f"the tensors need {data_end} data bytes but the file holds "
                    f"{available}: it is {data_end - available} bytes short", path,
                    hint="the download was cut short; fetch the file again")
    if data_end < available:
        raise _fail("trailing_bytes", f"{available - data_end} bytes follow the last tensor "
                    f"(data ends at {data_end}, the file holds {available})", path)
    return SafetensorsInfo(path=str(path) if path is not None else None, header_size=n,
                           file_size=file_size, tensors=entries, metadata=metadata)


def _metadata(value: Any, path: Path | None) -> dict[str, str] | None:
    if value is None:   # absent or null: the crate's Option<HashMap<String, String>>
        return None
    if not isinstance(value, dict):
        raise _fail("metadata_invalid", f"__metadata__ is a {_kind(value)}, not an object of strings", path)
    for key, item in value.items():
        if not isinstance(item, str):
            raise _fail("metadata_invalid", f"__metadata__[{key!r}] is a {_kind(item)}, not a string", path)
    return dict(value)


def _entry(name: str, value: Any, path: Path | None) -> TensorEntry:
    if not isinstance(value, dict):
        raise _fail("tensor_entry_invalid", f"the entry is a {_kind(value)}, not an object", path, tensor=name)
    missing = [key for key in TENSOR_FIELDS if key not in value]
    if missing:
        raise _fail("tensor_field_missing", f"missing {', '.join(missing)}", path, tensor=name)
    extra = sorted(set(value) - set(TENSOR_FIELDS))
    if extra:
        raise _fail("tensor_field_unexpected", f"unexpected field(s) {', '.join(map(repr, extra))}",
                    path, tensor=name)
    dtype = value["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise _fail("unknown_dtype", f"dtype {dtype!r} is not one of {', '.join(DTYPE_BITS)}", path, tensor=name)
    shape = value["shape"]
    if not isinstance(shape, list):
        raise _fail("shape_invalid", f"shape is a {_kind(shape)}, not a list", path, tensor=name)
    for axis, dim in enumerate(shape):
        if not _is_usize(dim):
            raise _fail("shape_invalid", f"dimension {axis} is {dim!r}; dimensions are integers in "
                        "0..2^64-1", path, tensor=name)
    offsets = value["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_usize(o) for o in offsets)):
        raise _fail("offsets_invalid", f"data_offsets is {_short(offsets)}; it must be [begin, end] "
                    "with integers in 0..2^64-1", path, tensor=name)
    return TensorEntry(name=name, dtype=dtype, shape=tuple(shape), begin=offsets[0], end=offsets[1])


def _layout(entries: list[TensorEntry], path: Path | None) -> int:
    """The crate's Metadata::validate: returns where the data ends."""
    # Like the crate, sort by (begin, end): writers order tensors by dtype then name, older ones
    # by name only; any order is fine as long as the sorted offsets tile the buffer.
    entries.sort(key=lambda t: (t.begin, t.end))
    start, previous = 0, None
    for t in entries:
        if t.end < t.begin:
            raise _fail("offsets_reversed", f"data_offsets [{t.begin}, {t.end}] end before they begin",
                        path, tensor=t.name)
        if t.begin > start:
            after = f"after tensor {previous.name!r} ends at {start}" if previous else "from offset 0"
            raise _fail("offsets_gap", f"begins at {t.begin}, leaving {t.begin - start} unused bytes {after}",
                        path, tensor=t.name)
        if t.begin < start:
            raise _fail("offsets_overlap", f"begins at {t.begin}, inside tensor {previous.name!r} "
                        f"which ends at {start}", path, tensor=t.name)
        start = t.end
        nbytes = _checked_nbytes(t, path)
        if t.end - t.begin != nbytes:
            raise _fail("size_mismatch", f"{t.dtype} {list(t.shape)} needs {nbytes} bytes but "
                        f"data_offsets [{t.begin}, {t.end}] span {t.end - t.begin}", path, tensor=t.name)
        previous = t
    return start


def _checked_nbytes(t: TensorEntry, path: Path | None) -> int:
    # Python ints never overflow; the crate's usize::checked_mul does, and a file that only
    # "works" with bignums is malformed everywhere else. Multiply in the crate's order: an
    # overflow before a later 0 dimension is still an overflow.
    count = 1
    for dim in t.shape:
        count *= dim
        if count > USIZE_MAX:
            raise _fail("size_overflow", f"the element count of shape {list(t.shape)} overflows 64 bits",
                        path, tensor=t.name)
    bits = count * DTYPE_BITS[t.dtype]
    if bits > USIZE_MAX:
        raise _fail("size_overflow", f"{count} elements x {DTYPE_BITS[t.dtype]} bits overflows 64 bits",
                    path, tensor=t.name)
    if bits % 8:
        raise _fail("subbyte_misaligned", f"{count} {t.dtype} elements are {bits} bits, not a whole "
                    "number of bytes", path, tensor=t.name)
    return bits // 8


def _is_usize(value: Any) -> bool:
    # bool is an int in Python but not a number in JSON.
    return type(value) is int and 0 <= value <= USIZE_MAX


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
