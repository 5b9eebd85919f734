"""GGUF header sanity: read the header with struct, bound every length by the file, name the fault.

A GGUF file is: magic "GGUF", u32 version, u64 tensor count, u64 key/value count, the key/values
(string key, u32 value type, value), the tensor infos (string name, u32 n_dims, u64 dims, u32
ggml type, u64 offset), padding to `general.alignment` (default 32), then the tensor data.
Everything is little-endian; strings are a u64 length and UTF-8 bytes.

Every count and length here comes from an untrusted file, so each one is checked against the
bytes that are left before anything is allocated or looped over: a 1 KB file claiming 2^60
tensors is refused at once, not after an out-of-memory. Only the header is read, never the data.
Pure Python (no numpy, no `gguf` package) so importing it is instant.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from weightgate.core.engine.errors import FaultError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)      # v1 used 32-bit lengths and is long gone
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4                     # GGML_MAX_DIMS
MAX_TENSOR_NAME = 64             # the spec: a tensor name is at most 64 bytes
MAX_KEY_LENGTH = 65535           # the spec: a key is at most 2^16 - 1 bytes
MAX_ARRAY_NESTING = 4            # the spec allows arrays of arrays; nobody needs deeper
# Caps on what a header may make us read or loop over. Real files stay far below: a chat
# template is tens of KB, a vocabulary a few hundred thousand strings. Without them a hostile
# 8 GB "header" could hold one 7 GB string or a billion empty ones.
MAX_STRING_VALUE = 64 << 20
MAX_STRING_ITEMS = 1 << 24
INT64_MAX = 2**63 - 1            # ggml counts elements in int64_t
_MIN_KV_BYTES = 8 + 4 + 1        # key length + value type + the smallest value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8

# value type -> (name, struct format or None for string/array)
VALUE_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("UINT8", "<B"), 1: ("INT8", "<b"), 2: ("UINT16", "<H"), 3: ("INT16", "<h"),
    4: ("UINT32", "<I"), 5: ("INT32", "<i"), 6: ("FLOAT32", "<f"), 7: ("BOOL", "<B"),
    8: ("STRING", None), 9: ("ARRAY", None), 10: ("UINT64", "<Q"), 11: ("INT64", "<q"),
    12: ("FLOAT64", "<d"),
}
_STRING, _ARRAY, _BOOL, _UINT32 = 8, 9, 7, 4

# ggml type id -> (name, elements per block, bytes per block), as of gguf-py 0.19. Ids that
# were retired (4, 5: Q4_2/Q4_3; 31-33, 36-38: repacked variants) are not valid in a file.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}

_REFETCH = "the file is damaged or is not a GGUF file; fetch it again and re-verify"


@dataclass
class GgufError(FaultError):
    """A GGUF file whose header must not be trusted. `fault` is a stable code (see FAULTS)."""

    offset: int | None = None       # byte offset in the file where the fault was found
    item: str | None = None         # the key or tensor name involved, if any

    def detail(self) -> str:
        return ((f" ({self.item!r})" if self.item is not None else "")
                + (f" at byte {self.offset}" if self.offset is not None else ""))

    def to_dict(self) -> dict:
        return {**super().to_dict(), "offset": self.offset, "item": self.item}


class GgufFramingError(GgufError):
    """Magic, version, counts or a length: the header cannot be walked."""


class GgufEntryError(GgufError):
    """A key/value or tensor info holds something the format does not allow."""


class GgufLayoutError(GgufError):
    """Tensor data does not fit the file, is misaligned, or overlaps."""


FAULTS: dict[str, tuple[type[GgufError], str]] = {
    "unreadable": (GgufError, "the file cannot be opened or read"),
    "file_too_small": (GgufFramingError, "shorter than the 24-byte fixed header"),
    "bad_magic": (GgufFramingError, "the file does not start with 'GGUF'"),
    "big_endian": (GgufFramingError, "a big-endian GGUF; only little-endian files are supported"),
    "unsupported_version": (GgufFramingError, "a version other than 2 or 3"),
    "tensor_count_implausible": (GgufFramingError, "more tensors than the file could describe"),
    "kv_count_implausible": (GgufFramingError, "more key/values than the file could hold"),
    "truncated_header": (GgufFramingError, "the file ends inside the header"),
    "string_too_long": (GgufFramingError, "a string runs past the end of the file or over 64 MiB"),
    "string_not_utf8": (GgufEntryError, "a key, value or tensor name is not valid UTF-8"),
    "array_too_long": (GgufFramingError, "an array runs past the end of the file (or 2^24 strings)"),
    "array_nesting": (GgufEntryError, "arrays nested deeper than 4 levels"),
    "bad_value_type": (GgufEntryError, "a value type id outside 0..12"),
    "bad_bool": (GgufEntryError, "a BOOL value that is neither 0 nor 1"),
    "duplicate_key": (GgufEntryError, "a key appears twice"),
    "bad_alignment": (GgufEntryError, "general.alignment is not a UINT32 power of two"),
    "duplicate_tensor": (GgufEntryError, "two tensors share a name"),
    "tensor_name_too_long": (GgufEntryError, "a tensor name is longer than 64 bytes"),
    "too_many_dims": (GgufEntryError, "a tensor has more than 4 dimensions"),
    "unknown_ggml_type": (GgufEntryError, "a tensor type id ggml does not know"),
    "size_overflow": (GgufLayoutError, "a tensor's element count overflows int64"),
    "block_misaligned": (GgufLayoutError, "a row length that is not a multiple of the type's block"),
    "misaligned_offset": (GgufLayoutError, "a tensor offset not a multiple of the alignment"),
    "tensor_out_of_bounds": (GgufLayoutError, "tensor data runs past the end of the file"),
    "tensor_overlap": (GgufLayoutError, "two tensors share bytes"),
}


def _fail(fault: str, message: str, path: Path | None, *, offset: int | None = None,
          item: str | None = None, hint: str | None = _REFETCH) -> GgufError:
    cls = FAULTS[fault][0]
    return cls(message, path=path, hint=hint, fault=fault, offset=offset, item=item)


@dataclass(frozen=True)
class GgufArray:
    """An array value, summarised: vocabularies hold 100k+ strings nobody needs here."""

    item_type: str
    count: int


@dataclass(frozen=True)
class GgufTensor:
    name: str
    ggml_type: str
    shape: tuple[int, ...]      # ggml order: ne[0] (the contiguous row) first
    offset: int                 # relative to the data section
    nbytes: int

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass
class GgufInfo:
    path: str | None
    version: int
    file_size: int
    alignment: int
    data_offset: int                       # absolute start of the tensor data section
    metadata: dict[str, Any]               # scalars and strings; arrays as GgufArray
    tensors: list[GgufTensor] = field(default_factory=list)

    @property
    def tensor_count(self) -> int:
        return len(self.tensors)

    @property
    def kv_count(self) -> int:
        return len(self.metadata)

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    def arch_value(self, suffix: str) -> Any:
        """`{architecture}.{suffix}`, e.g. arch_value("context_length")."""
        return self.metadata.get(f"{self.architecture}.{suffix}") if self.architecture else None

    @property
    def context_length(self) -> Any:
        return self.arch_value("context_length")

    @property
    def block_count(self) -> Any:
        return self.arch_value("block_count")

    @property
    def head_count(self) -> Any:
        return self.arch_value("attention.head_count")

    @property
    def head_count_kv(self) -> Any:
        return self.arch_value("attention.head_count_kv")

    @property
    def embedding_length(self) -> Any:
        return self.arch_value("embedding_length")

    @property
    def license(self) -> str | None:
        value = self.metadata.get("general.license")
        return value if isinstance(value, str) else None

    @property
    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors)

    def types_count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.ggml_type] = counts.get(t.ggml_type, 0) + 1
        return counts

    def to_dict(self) -> dict:
        def plain(value: Any) -> Any:
            if isinstance(value, GgufArray):
                return {"array_of": value.item_type, "count": value.count}
            return value

        return {
            "path": self.path, "version": self.version, "file_size": self.file_size,
            "alignment": self.alignment, "data_offset": self.data_offset,
            "architecture": self.architecture, "name": self.metadata.get("general.name"),
            "context_length": plain(self.context_length), "block_count": plain(self.block_count),
            "head_count": plain(self.head_count), "head_count_kv": plain(self.head_count_kv),
            "embedding_length": plain(self.embedding_length), "license": self.license,
            "tensor_count": self.tensor_count, "kv_count": self.kv_count,
            "parameter_count": self.parameter_count, "types": self.types_count(),
        }


# --------------------------------------------------------------------------- reading

class _Cursor:
    """Sequential reads that never go past the file's end and know where they are."""

    def __init__(self, handle: BinaryIO, size: int, path: Path | None):
        self.handle, self.size, self.path, self.pos = handle, size, path, 0

    @property
    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise _fail("truncated_header", f"the file ends while reading {what} ({n} bytes needed, "
                        f"{self.left} left)", self.path, offset=self.pos)
        data = self.handle.read(n)
        if len(data) != n:
            raise _fail("truncated_header", f"the file ended while reading {what} (changed on disk?)",
                        self.path, offset=self.pos)
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.left:
            raise _fail("truncated_header", f"the file ends inside {what}", self.path, offset=self.pos)
        self.handle.seek(n, io.SEEK_CUR)
        self.pos += n

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str, limit: int = MAX_STRING_VALUE, item: str | None = None) -> str:
        start = self.pos
        length = self.unpack("<Q", f"the length of {what}")
        if length > self.left or length > limit:
            bound = f"the {self.left} bytes left" if length > self.left else f"the {limit}-byte limit"
            raise _fail("string_too_long", f"{what} claims {length} bytes, beyond {bound}",
                        self.path, offset=start, item=item)
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail("string_not_utf8", f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})",
                        self.path, offset=start + 8, item=item) from None


def validate_gguf(path: str | os.PathLike) -> GgufInfo:
    """Walk the header of `path`, bounding every length by the file; raise a GgufError on a fault."""
    path = Path(path)
    try:
        with open(path, "rb", buffering=1 << 20) as handle:
            size = os.fstat(handle.fileno()).st_size
            return _read(_Cursor(handle, size, path))
    except OSError as exc:
        raise _fail("unreadable", f"cannot read the file ({exc.strerror or exc})", path,
                    hint="check the path and its permissions") from None


def validate_gguf_bytes(data: bytes, *, path: str | os.PathLike | None = None) -> GgufInfo:
    where = Path(path) if path is not None else None
    return _read(_Cursor(io.BytesIO(data), len(data), where))


def _read(cur: _Cursor) -> GgufInfo:
    path = cur.path
    if cur.size < 24:
        raise _fail("file_too_small", f"the file is {cur.size} bytes; a GGUF header is at least 24", path)
    magic = cur.take(4, "the magic")
    if magic != MAGIC:
        raise _fail("bad_magic", f"the file starts with {magic!r}, not b'GGUF'", path, offset=0)
    version = cur.unpack("<I", "the version")
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and int.from_bytes(version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
            raise _fail("big_endian", "this GGUF is big-endian; only little-endian files are supported",
                        path, offset=4, hint="use a little-endian build of this model")
        raise _fail("unsupported_version", f"GGUF version {version}; supported: 2, 3", path, offset=4,
                    hint="re-convert the model with a current llama.cpp")
    tensor_count = cur.unpack("<Q", "the tensor count")
    kv_count = cur.unpack("<Q", "the key/value count")
    if kv_count * _MIN_KV_BYTES > cur.left:
        raise _fail("kv_count_implausible", f"{kv_count} key/values cannot fit in the {cur.left} bytes "
                    "left", path, offset=16)
    if tensor_count * _MIN_TENSOR_INFO_BYTES > cur.left:
        raise _fail("tensor_count_implausible", f"{tensor_count} tensors cannot be described in the "
                    f"{cur.left} bytes left", path, offset=8)

    metadata: dict[str, Any] = {}
    declared: dict[str, int] = {}      # key -> value type id (general.alignment must be UINT32)
    for index in range(kv_count):
        start = cur.pos
        key = cur.string(f"key #{index}", limit=MAX_KEY_LENGTH)
        if key in metadata:
            raise _fail("duplicate_key", "a key appears twice", path, offset=start, item=key)
        vtype = cur.unpack("<I", f"the type of {key!r}")
        declared[key] = vtype
        metadata[key] = _value(cur, vtype, key, depth=0)
        if kv_count - index - 1 > 0 and (kv_count - index - 1) * _MIN_KV_BYTES > cur.left:
            raise _fail("kv_count_implausible", f"{kv_count - index - 1} more key/values cannot fit "
                        f"in the {cur.left} bytes left", path, offset=cur.pos)

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in metadata:
        alignment = metadata["general.alignment"]
        if (not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0
                or alignment & (alignment - 1) or declared["general.alignment"] != _UINT32):
            raise _fail("bad_alignment", f"general.alignment is {alignment!r}; it must be a UINT32 power "
                        "of two", path, item="general.alignment")

    tensors: list[GgufTensor] = []
    names: set[str] = set()
    for index in range(tensor_count):
        tensors.append(_tensor_info(cur, index, names))
    data_offset = -(-cur.pos // alignment) * alignment
    _check_layout(tensors, data_offset, alignment, cur.size, path)
    return GgufInfo(path=str(path) if path is not None else None, version=version, file_size=cur.size,
                    alignment=alignment, data_offset=data_offset, metadata=metadata, tensors=tensors)


def _value(cur: _Cursor, vtype: int, key: str, depth: int) -> Any:
    if vtype not in VALUE_TYPES:
        raise _fail("bad_value_type", f"value type {vtype} is not one of 0..12", cur.path,
                    offset=cur.pos - 4, item=key)
    name, fmt = VALUE_TYPES[vtype]
    if vtype == _STRING:
        return cur.string(f"the value of {key!r}", item=key)
    if vtype == _ARRAY:
        if depth >= MAX_ARRAY_NESTING:
            raise _fail("array_nesting", f"arrays nested more than {MAX_ARRAY_NESTING} deep", cur.path,
                        offset=cur.pos, item=key)
        start = cur.pos
        item_type = cur.unpack("<I", f"the item type of {key!r}")
        count = cur.unpack("<Q", f"the length of {key!r}")
        if item_type not in VALUE_TYPES:
            raise _fail("bad_value_type", f"array item type {item_type} is not one of 0..12", cur.path,
                        offset=start, item=key)
        item_fmt = VALUE_TYPES[item_type][1]
        smallest = struct.calcsize(item_fmt) if item_fmt else (8 if item_type == _STRING else 12)
        if count * smallest > cur.left:
            raise _fail("array_too_long", f"{count} items cannot fit in the {cur.left} bytes left",
                        cur.path, offset=start + 4, item=key)
        if item_fmt is None and count > MAX_STRING_ITEMS:
            raise _fail("array_too_long", f"{count} strings or arrays; the limit is {MAX_STRING_ITEMS}",
                        cur.path, offset=start + 4, item=key)
        if item_fmt is not None:
            # Fixed-size items: skip them in one read (a bool array is still checked for 0/1).
            if item_type == _BOOL:
                raw = cur.take(count, f"the items of {key!r}")
                if raw.translate(None, b"\x00\x01"):
                    raise _fail("bad_bool", "a BOOL item is neither 0 nor 1", cur.path, offset=start, item=key)
            else:
                cur.skip(count * smallest, f"the items of {key!r}")
        else:
            for _ in range(count):
                _value(cur, item_type, key, depth + 1)
        return GgufArray(VALUE_TYPES[item_type][0], count)
    start = cur.pos
    value = cur.unpack(fmt, f"the value of {key!r}")
    if vtype == _BOOL:
        if value not in (0, 1):
            raise _fail("bad_bool", f"BOOL value {value} is neither 0 nor 1", cur.path, offset=start, item=key)
        return bool(value)
    return value


def _tensor_info(cur: _Cursor, index: int, names: set[str]) -> GgufTensor:
    path, start = cur.path, cur.pos
    name = cur.string(f"the name of tensor #{index}")
    if len(name.encode("utf-8")) > MAX_TENSOR_NAME:
        raise _fail("tensor_name_too_long", f"tensor #{index}'s name is longer than {MAX_TENSOR_NAME} bytes",
                    path, offset=start, item=name)
    if name in names:
        raise _fail("duplicate_tensor", "two tensors share this name", path, offset=start, item=name)
    names.add(name)
    n_dims = cur.unpack("<I", f"the rank of {name!r}")
    if n_dims > MAX_DIMS:
        raise _fail("too_many_dims", f"{n_dims} dimensions; ggml allows at most {MAX_DIMS}", path,
                    offset=cur.pos - 4, item=name)
    shape = struct.unpack(f"<{n_dims}Q", cur.take(8 * n_dims, f"the shape of {name!r}"))
    type_id = cur.unpack("<I", f"the type of {name!r}")
    if type_id not in GGML_TYPES:
        raise _fail("unknown_ggml_type", f"ggml type {type_id} is unknown", path, offset=cur.pos - 4, item=name)
    offset = cur.unpack("<Q", f"the offset of {name!r}")
    type_name, block, type_size = GGML_TYPES[type_id]
    count = 1
    for dim in shape:
        count *= dim
        if count > INT64_MAX:
            raise _fail("size_overflow", f"shape {list(shape)} has more than 2^63 elements", path,
                        offset=start, item=name)
    if shape and shape[0] % block:
        raise _fail("block_misaligned", f"row length {shape[0]} is not a multiple of {type_name}'s "
                    f"block of {block}", path, offset=start, item=name)
    return GgufTensor(name=name, ggml_type=type_name, shape=tuple(shape), offset=offset,
                      nbytes=count // block * type_size)


def _check_layout(tensors: list[GgufTensor], data_offset: int, alignment: int, size: int,
                  path: Path | None) -> None:
    for t in tensors:
        if t.offset % alignment:
            raise _fail("misaligned_offset", f"data offset {t.offset} is not a multiple of the "
                        f"alignment {alignment}", path, item=t.name)
        if data_offset + t.offset + t.nbytes > size:
            raise _fail("tensor_out_of_bounds", f"{t.ggml_type} {list(t.shape)} at data offset {t.offset} "
                        f"needs {t.nbytes} bytes, past the end of the {size}-byte file", path, item=t.name,
                        hint="the download was probably cut short; fetch the file again")
    ordered = sorted(tensors, key=lambda t: (t.offset, t.nbytes))
    for before, after in zip(ordered, ordered[1:]):
        if after.offset < before.offset + before.nbytes:
            raise _fail("tensor_overlap", f"starts at data offset {after.offset}, inside {before.name!r} "
                        f"({before.offset}..{before.offset + before.nbytes})", path, item=after.name)
