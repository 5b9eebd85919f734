"""A malicious-pickle corpus, assembled opcode by opcode at test time.

Every payload, if it were ever unpickled, would create the canary file (a shell `touch`, or
Python `open(canary, "w")`). Nothing here unpickles: the tests only scan, and check the canary
never appears. `pickletools.dis` (static, stack-checking) vouches that the well-formed ones are
real pickles the unpickler would run to the end.
"""

from __future__ import annotations

import io
import pickletools
import random
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# --- opcodes ----------------------------------------------------------------------------------

MARK, STOP, POP, TUPLE, TUPLE1, TUPLE2 = b"(", b".", b"0", b"t", b"\x85", b"\x86"
REDUCE, BUILD, OBJ, NEWOBJ, STACK_GLOBAL, MEMOIZE = b"R", b"b", b"o", b"\x81", b"\x93", b"\x94"
EMPTY_TUPLE, EMPTY_DICT, SETITEM, LIST = b")", b"}", b"s", b"l"


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def global_(module: str, name: str) -> bytes:  # GLOBAL: "module\nname\n" in the argument
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def inst(module: str, name: str) -> bytes:
    return b"i" + module.encode() + b"\n" + name.encode() + b"\n"


def string0(text: str) -> bytes:  # protocol 0 STRING, quoted
    return b"S" + repr(text).encode("ascii") + b"\n"


def unicode(text: str) -> bytes:  # BINUNICODE (protocol 1+)
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def short_unicode(text: str) -> bytes:  # SHORT_BINUNICODE (protocol 4+)
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def binbytes(raw: bytes) -> bytes:  # BINBYTES (protocol 3+)
    return b"B" + struct.pack("<I", len(raw)) + raw


def binput(i: int) -> bytes:
    return b"q" + bytes([i])


def binget(i: int) -> bytes:
    return b"h" + bytes([i])


def long_binput(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def long_binget(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


# --- the corpus -------------------------------------------------------------------------------

FLAGGED = "findings"   # scan returns a result with findings (safe is False)
ERROR = "error"        # scan raises PickleScanError


@dataclass
class Payload:
    name: str
    data: bytes
    expect: str                                  # FLAGGED | ERROR
    must_flag: set = field(default_factory=set)  # (module, name) pairs that must be findings
    well_formed: bool = True                     # pickletools.dis accepts it (single pickles)


def corpus(canary: Path) -> list[Payload]:
    cmd = f"touch {canary}"
    py = f"open({str(canary)!r}, 'w').close()"
    posix_system = proto(2) + global_("posix", "system") + binput(0) + unicode(cmd) + TUPLE1 + REDUCE + STOP
    items = [
        Payload("os_system_global_p0", global_("os", "system") + MARK + string0(cmd) + TUPLE + REDUCE + STOP,
                FLAGGED, {("os", "system")}),
        Payload("posix_system_global_p2", posix_system, FLAGGED, {("posix", "system")}),
        Payload("stack_global_memo_p4",
                proto(4) + short_unicode("os") + MEMOIZE + short_unicode("system") + MEMOIZE + POP + POP
                + binget(0) + binget(1) + STACK_GLOBAL + short_unicode(cmd) + TUPLE1 + REDUCE + STOP,
                FLAGGED, {("os", "system")}),
        Payload("stack_global_long_memo_framed_p5",
                proto(5) + frame(short_unicode("subprocess") + long_binput(70000) + POP
                                 + short_unicode("check_call") + binput(3) + POP
                                 + long_binget(70000) + binget(3) + STACK_GLOBAL
                                 + MARK + short_unicode("sh") + short_unicode("-c") + short_unicode(cmd) + LIST
                                 + TUPLE1 + REDUCE + STOP),
                FLAGGED, {("subprocess", "check_call")}),
        Payload("stack_global_unresolvable_p4",
                proto(4) + EMPTY_TUPLE + MEMOIZE + POP + binget(0) + short_unicode("system") + STACK_GLOBAL
                + short_unicode(cmd) + TUPLE1 + REDUCE + STOP,
                FLAGGED, {("?", "?")}),
        Payload("inst_p0", MARK + string0(cmd) + inst("os", "system") + STOP, FLAGGED, {("os", "system")}),
        Payload("obj_p1", MARK + global_("nt", "system") + unicode(cmd) + OBJ + STOP, FLAGGED, {("nt", "system")}),
        Payload("newobj_p2", proto(2) + global_("subprocess", "Popen") + MARK + unicode(cmd) + TUPLE + NEWOBJ + STOP,
                FLAGGED, {("subprocess", "Popen")}),
        # Protocol 2 names Python 2's module; the unpickler maps __builtin__ to builtins.
        Payload("builtin_eval_p2", proto(2) + global_("__builtin__", "eval") + unicode(py) + TUPLE1 + REDUCE + STOP,
                FLAGGED, {("builtins", "eval")}),
        Payload("builtins_exec_p4",
                proto(4) + short_unicode("builtins") + short_unicode("exec") + STACK_GLOBAL + unicode(py)
                + TUPLE1 + REDUCE + STOP, FLAGGED, {("builtins", "exec")}),
        Payload("functools_partial_p2",
                proto(2) + global_("functools", "partial") + global_("os", "system") + unicode(cmd) + TUPLE2 + REDUCE
                + EMPTY_TUPLE + REDUCE + STOP, FLAGGED, {("functools", "partial"), ("os", "system")}),
        # attrgetter("system")(import_module("os"))(cmd): os.system is never named in a GLOBAL.
        Payload("operator_attrgetter_chain_p4",
                proto(4) + global_("operator", "attrgetter") + short_unicode("system") + TUPLE1 + REDUCE
                + global_("importlib", "import_module") + short_unicode("os") + TUPLE1 + REDUCE + TUPLE1 + REDUCE
                + unicode(cmd) + TUPLE1 + REDUCE + STOP,
                FLAGGED, {("operator", "attrgetter"), ("importlib", "import_module"), ("", "<computed callable>")}),
        Payload("operator_methodcaller_p4",
                proto(4) + global_("operator", "methodcaller") + short_unicode("system") + unicode(cmd) + TUPLE2
                + REDUCE + global_("importlib", "import_module") + short_unicode("os") + TUPLE1 + REDUCE + TUPLE1
                + REDUCE + STOP, FLAGGED, {("operator", "methodcaller")}),
        Payload("builtins_getattr_p2",
                proto(2) + global_("builtins", "getattr") + global_("builtins", "__import__") + unicode("os")
                + TUPLE1 + REDUCE + unicode("system") + TUPLE2 + REDUCE + unicode(cmd) + TUPLE1 + REDUCE + STOP,
                FLAGGED, {("builtins", "getattr"), ("builtins", "__import__")}),
        # pickle.loads(<bytes of another malicious pickle>): flagged for pickle.loads itself,
        # and the embedded pickle is scanned too.
        Payload("nested_pickle_loads_p3",
                proto(3) + global_("pickle", "loads") + binbytes(posix_system) + TUPLE1 + REDUCE + STOP,
                FLAGGED, {("pickle", "loads"), ("posix", "system")}),
        # Protocol 2 has no bytes opcode: _codecs.encode(<latin-1 str>, "latin1") smuggles them.
        Payload("nested_c_pickle_loads_codecs_p2",
                proto(2) + global_("_pickle", "loads") + global_("_codecs", "encode")
                + unicode(posix_system.decode("latin-1")) + unicode("latin1") + TUPLE2 + REDUCE + TUPLE1 + REDUCE
                + STOP, FLAGGED, {("_pickle", "loads"), ("posix", "system")}),
        Payload("ext1_copyreg_registry_p2", proto(2) + b"\x82\x01" + unicode(cmd) + TUPLE1 + REDUCE + STOP,
                FLAGGED, {("copyreg", "extension 1")}),
        # BUILD on an allowlisted function object: monkeypatching, not building a new object.
        Payload("build_on_allowlisted_global_p2",
                proto(2) + global_("torch._utils", "_rebuild_tensor_v2") + EMPTY_DICT + unicode("__doc__")
                + unicode(py) + SETITEM + BUILD + STOP,
                FLAGGED, {("torch._utils", "_rebuild_tensor_v2")}),
        # An allowlisted module with a dotted name walks to anything (protocol 4 getattr chain).
        Payload("dotted_name_from_allowlisted_module_p4",
                proto(4) + short_unicode("torch._utils") + short_unicode("_rebuild_tensor_v2.__globals__")
                + STACK_GLOBAL + STOP, FLAGGED, {("torch._utils", "_rebuild_tensor_v2.__globals__")}),
        Payload("runpy_p2", proto(2) + global_("runpy", "_run_code") + unicode(py) + EMPTY_DICT + TUPLE2 + REDUCE
                + STOP, FLAGGED, {("runpy", "_run_code")}),
        Payload("truncated_stream", posix_system[:len(posix_system) // 2], ERROR, {("posix", "system")},
                well_formed=False),
        Payload("garbage_bytes", b"\x00\xffnot a pickle\x01" + random.Random(0).randbytes(256), ERROR,
                well_formed=False),
        Payload("empty_file", b"", ERROR, well_formed=False),
        # A pickle with a zip glued on: zipfile.is_zipfile says zip, torch.load unpickles it.
        Payload("pickle_zip_polyglot", posix_system + _zip({"archive/data.pkl": b"\x80\x02N."}), ERROR,
                {("posix", "system")}, well_formed=False),
        Payload("zip_path_traversal", _zip({"archive/data.pkl": b"\x80\x02N.", "../../evil.pkl": posix_system}),
                ERROR, well_formed=False),
    ]
    return items


def torch_corpus(canary: Path) -> list[Payload]:
    """Payloads built from genuine torch.save output (imports torch)."""
    cmd = f"touch {canary}"
    evil = proto(2) + global_("posix", "system") + unicode(cmd) + TUPLE1 + REDUCE + STOP
    genuine_zip = genuine_checkpoint()
    genuine_legacy = genuine_checkpoint(legacy=True)
    return [
        Payload("torch_zip_data_pkl_replaced", replace_zip_member(genuine_zip, "data.pkl", evil), FLAGGED,
                {("posix", "system")}, well_formed=False),
        Payload("torch_zip_extra_pkl_member", add_zip_member(genuine_zip, "archive/extra.pkl", evil), FLAGGED,
                {("posix", "system")}, well_formed=False),
        Payload("torch_zip_torchscript_code",
                add_zip_member(add_zip_member(genuine_zip, "archive/constants.pkl", b"\x80\x02)."),
                               "archive/code/__torch__/m.py", f"import os\nos.system({cmd!r})\n".encode()),
                FLAGGED, {("", "archive/constants.pkl")}, well_formed=False),
        Payload("torch_legacy_object_replaced", replace_legacy_pickle(genuine_legacy, 3, evil), FLAGGED,
                {("posix", "system")}, well_formed=False),
        Payload("torch_tar_polyglot", tar_polyglot(evil), ERROR, well_formed=False),
        Payload("torch_zip_truncated", genuine_zip[: len(genuine_zip) // 2], ERROR, well_formed=False),
        Payload("torch_legacy_truncated", genuine_legacy[:60], ERROR, well_formed=False),
    ]


# --- torch containers -------------------------------------------------------------------------


def genuine_checkpoint(*, legacy: bool = False) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2, 2), "b": torch.zeros(2, dtype=torch.bfloat16)}, buffer,
               _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def tar_polyglot(evil: bytes) -> bytes:
    """Five harmless pickles that look like a legacy torch file, which are also the name of
    the first member of a valid tar whose `storages` member is `evil`. torch.load tries its
    pre-0.4 tar loader first, which (with weights_only=False) unpickles `storages`."""
    import tarfile

    magic = b"\x80\x02\x8a\x0a" + 0x1950A86A20F9469CFC6C.to_bytes(10, "little") + STOP
    head = magic + b"\x80\x02M\xe9\x03." + b"N." * 3  # magic, protocol 1001, three Nones
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in (head.decode("utf-8", "surrogateescape"), "storages", "tensors", "pickle"):
            info = tarfile.TarInfo(name)
            info.size = len(evil)
            tar.addfile(info, io.BytesIO(evil))
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def replace_zip_member(data: bytes, suffix: str, new: bytes) -> bytes:
    members = zip_members(data)
    target = next(name for name in members if name.endswith(suffix))
    members[target] = new
    return _zip(members)


def add_zip_member(data: bytes, name: str, new: bytes) -> bytes:
    members = zip_members(data)
    members[name] = new
    return _zip(members)


def legacy_spans(data: bytes) -> list[tuple[int, int]]:
    """Where the 5 pickles of a legacy torch file start and end (static: pickletools.genops)."""
    spans, pos = [], 0
    stream = io.BytesIO(data)
    for _ in range(5):
        for _op, _arg, _at in pickletools.genops(stream):
            pass
        spans.append((pos, stream.tell()))
        pos = stream.tell()
    return spans


def replace_legacy_pickle(data: bytes, index: int, new: bytes) -> bytes:
    start, end = legacy_spans(data)[index]
    return data[:start] + new + data[end:]


def is_well_formed(data: bytes) -> bool:
    pickletools.dis(data, out=io.StringIO())  # raises on a stack/memo/mark error; never executes
    return True
