"""The symbolic unpickler behind picklescan.py: walks the opcodes with `pickletools.genops` and
models the unpickler's stack and memo with opaque values, so it knows the operands of
STACK_GLOBAL (also through PUT/GET/MEMOIZE), which value every REDUCE/NEWOBJ/OBJ/INST calls, and
what BUILD/APPEND/SETITEM mutate. Only string and bytes constants and imported globals keep their
identity; everything else is "some object". It never unpickles.
"""

from __future__ import annotations

import pickletools
import struct
import zipfile
import zlib
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from weightgate.core.weights.pickle_rules import (
    ALLOWED_GLOBALS,
    DANGEROUS,
    MAX_NESTED_DEPTH,
    MAX_PICKLE_MEMBER,
    TORCH_LEGACY_MAGIC,
    TORCH_LEGACY_PICKLES,
    UNKNOWN,
    PickleFinding,
    PickleScanError,
    why_dangerous,
)


class _Mark:
    def __repr__(self) -> str:
        return "MARK"


_MARK = _Mark()
_OBJ = object()  # "some object": anything the scanner does not track


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


class _Malformed(Exception):
    def __init__(self, message: str, offset: int | None) -> None:
        super().__init__(message)
        self.offset = offset


class _Reader:
    """The read/readline/tell file interface genops needs, over bytes or an mmap, no copy."""

    def __init__(self, buf: Any, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.end - self.pos
        data = self.buf[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def readline(self) -> bytes:
        newline = self.buf.find(b"\n", self.pos)
        stop = self.end if newline < 0 else newline + 1
        data = self.buf[self.pos:stop]
        self.pos = stop
        return data

    def tell(self) -> int:
        return self.pos


_STR_OPS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
                      "SHORT_BINUNICODE", "BINUNICODE8"})
_BYTES_OPS = frozenset({"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"})
_INT_OPS = frozenset({"INT", "LONG", "BININT", "BININT1", "BININT2", "LONG1", "LONG4"})
# genops raises these on bad input; anything else escaping would be a scanner bug. Warning:
# escape_decode warns on a bad escape in a protocol-0 STRING, an error under `-W error`.
_PARSE_ERRORS = (ValueError, struct.error, OverflowError, UnicodeError, EOFError, IndexError,
                 KeyError, TypeError, MemoryError, Warning)
# zipfile's ways of saying "not a zip I can read" (a hostile header reaches most of them).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError,
               EOFError, ValueError, struct.error, zlib.error, OverflowError, IndexError, KeyError, MemoryError)


class PickleWalker:
    def __init__(self, path: Path | None, depth: int = 0) -> None:
        self.path = path
        self.depth = depth
        self.members: list[str] = []
        self.imports: set[tuple[str, str]] = set()
        self.findings: list[PickleFinding] = []
        self.notes: list[str] = []

    # -- containers --

    def scan_stream(self, buf: Any, label: str, *, allow_legacy: bool) -> None:
        """Every pickle in `buf` until EOF (torch writes several in a row)."""
        if len(buf) == 0:
            raise PickleScanError("empty file: not a pickle", path=self.path)
        pos, index, legacy = 0, 0, False
        while pos < len(buf):
            member = f"{label}[{index}]"
            self.members.append(member)
            pos, constant = self._walk(buf, pos, member)
            if index == 0 and allow_legacy and constant == TORCH_LEGACY_MAGIC:
                legacy = True
            index += 1
            if legacy and index == TORCH_LEGACY_PICKLES:
                if pos < len(buf):
                    self.notes.append(
                        f"legacy torch format: {len(buf) - pos} bytes of raw storage data follow the "
                        f"{TORCH_LEGACY_PICKLES} pickles; torch.load reads them as bytes, never unpickles them")
                return
        if legacy:
            raise PickleScanError(f"legacy torch file ends after {index} of its {TORCH_LEGACY_PICKLES} pickles",
                                  path=self.path, offset=pos)

    def scan_zip(self, handle: BinaryIO) -> None:
        try:
            archive = zipfile.ZipFile(handle)
            infos = archive.infolist()
        except _ZIP_ERRORS as exc:
            raise PickleScanError(f"starts like a zip archive but is not a valid one: {exc}",
                                  path=self.path) from None
        seen: set[str] = set()
        for info in infos:
            _check_member_name(info, self.path)
            if info.filename in seen:
                # Readers disagree on which copy wins; the one not scanned may be the one loaded.
                raise PickleScanError(f"zip member {info.filename!r} appears twice", path=self.path,
                                      member=info.filename)
            seen.add(info.filename)
        pickles = [info for info in infos if info.filename.endswith(".pkl")]
        if not pickles:
            raise PickleScanError("zip archive without a .pkl member: not a torch checkpoint", path=self.path)
        for info in infos:
            base = PurePosixPath(info.filename).name
            if base == "constants.pkl" or info.filename.endswith(".py") or "/code/" in f"/{info.filename}":
                # torch.load hands an archive with constants.pkl to torch.jit.load, which runs code.
                self._finding("", info.filename, "ZIP", info.header_offset, info.filename, DANGEROUS,
                              "TorchScript archive: holds code that torch.jit.load would run")
        for info in pickles:
            if info.file_size > MAX_PICKLE_MEMBER:
                raise PickleScanError(f"zip member {info.filename!r} is {info.file_size} bytes uncompressed; "
                                      f"a checkpoint's pickle is far smaller", path=self.path, member=info.filename)
            try:
                with archive.open(info) as stream:
                    data = stream.read(MAX_PICKLE_MEMBER + 1)
            except _ZIP_ERRORS as exc:
                raise PickleScanError(f"cannot read zip member {info.filename!r}: {exc}", path=self.path,
                                      member=info.filename) from None
            self.scan_stream(data, info.filename, allow_legacy=False)

    # -- one pickle --

    def _walk(self, buf: Any, start: int, member: str) -> tuple[int, int | None]:
        """Model one pickle from `start`; returns where it ended and, if the whole pickle is one
        integer constant, that integer (how torch's legacy format begins)."""
        reader = _Reader(buf, start)
        stack: list[Any] = []
        memo: dict[int, Any] = {}
        proto = 0  # the unpickler's view: no PROTO opcode means protocol 0/1
        head: list[tuple[str, Any]] = []  # the first few opcodes, to recognise torch's magic number
        pos: int | None = start

        def pop() -> Any:
            if not stack or stack[-1] is _MARK:
                raise _Malformed("stack underflow", pos)
            return stack.pop()

        def pop_mark() -> list[Any]:
            for index in range(len(stack) - 1, -1, -1):
                if stack[index] is _MARK:
                    items = stack[index + 1:]
                    del stack[index:]
                    return items
            raise _Malformed("no MARK on the stack", pos)

        def peek() -> Any:
            if not stack or stack[-1] is _MARK:
                raise _Malformed("stack underflow", pos)
            return stack[-1]

        try:
            for op, arg, pos in pickletools.genops(reader):
                name = op.name
                if len(head) < 4 and name not in ("PROTO", "FRAME"):
                    head.append((name, arg))
                if name in _STR_OPS:
                    stack.append(arg)
                    self._nested(arg, member, pos)
                elif name in _BYTES_OPS:
                    stack.append(bytes(arg))
                    self._nested(bytes(arg), member, pos)
                elif name in ("GLOBAL", "INST"):
                    module, attr = _raw_pair(buf, pos)
                    found = self._import(module, attr, proto, name, pos, member)
                    if name == "INST":
                        pop_mark()
                        stack.append(_OBJ)
                    else:
                        stack.append(found)
                elif name == "STACK_GLOBAL":
                    attr, module = pop(), pop()
                    if isinstance(module, str) and isinstance(attr, str):
                        stack.append(self._import(module, attr, proto, name, pos, member))
                    else:
                        self._finding("?", "?", name, pos, member, DANGEROUS,
                                      "unresolvable STACK_GLOBAL: module/name are not string constants")
                        stack.append(_OBJ)
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = peek()
                elif name == "MEMOIZE":
                    memo[len(memo)] = peek()
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    if arg not in memo:
                        raise _Malformed(f"memo key {arg} was never stored", pos)
                    stack.append(memo[arg])
                elif name == "REDUCE":
                    pop()
                    self._call(pop(), name, pos, member)
                    stack.append(_OBJ)
                elif name == "NEWOBJ":
                    pop()
                    self._call(pop(), name, pos, member)
                    stack.append(_OBJ)
                elif name == "NEWOBJ_EX":
                    pop(), pop()
                    self._call(pop(), name, pos, member)
                    stack.append(_OBJ)
                elif name == "OBJ":
                    items = pop_mark()
                    if not items:
                        raise _Malformed("OBJ without a class", pos)
                    self._call(items[0], name, pos, member)
                    stack.append(_OBJ)
                elif name == "BUILD":
                    pop()
                    self._mutate(peek(), name, pos, member)
                elif name == "SETITEM":
                    pop(), pop()
                    self._mutate(peek(), name, pos, member)
                elif name == "APPEND":
                    pop()
                    self._mutate(peek(), name, pos, member)
                elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
                    pop_mark()
                    self._mutate(peek(), name, pos, member)
                elif name == "DUP":
                    stack.append(peek())
                elif name in ("EXT1", "EXT2", "EXT4"):
                    self._finding("copyreg", f"extension {arg}", name, pos, member, DANGEROUS,
                                  "copyreg extension registry: imports whatever the loading process registered")
                    stack.append(_OBJ)
                elif name == "PROTO":
                    proto = arg
                elif name == "STOP":
                    pop()
                elif name == "POP" and stack and stack[-1] is _MARK:
                    stack.pop()  # as the C unpickler does: POP right after MARK drops the mark
                else:
                    self._generic(op, pop, pop_mark, stack)
        except _Malformed as exc:
            raise PickleScanError(f"malformed pickle in {member} at byte {exc.offset}: {exc}", path=self.path,
                                  offset=exc.offset, member=member) from None
        except _PARSE_ERRORS as exc:
            raise PickleScanError(f"malformed pickle in {member}: {exc}", path=self.path,
                                  offset=reader.tell(), member=member) from None
        constant = None
        if len(head) == 2 and head[1][0] == "STOP" and head[0][0] in _INT_OPS and isinstance(head[0][1], int):
            constant = head[0][1]
        return reader.tell(), constant

    @staticmethod
    def _generic(op: Any, pop: Any, pop_mark: Any, stack: list[Any]) -> None:
        """Opcodes whose results the scanner does not track: keep the stack depth right."""
        before = op.stack_before
        if pickletools.markobject in before:
            pop_mark()
            for _ in range(before.index(pickletools.markobject)):
                pop()
        else:
            for _ in before:
                pop()
        for item in op.stack_after:
            stack.append(_MARK if item is pickletools.markobject else _OBJ)

    # -- what it found --

    def _import(self, module: str, name: str, proto: int, opcode: str, pos: int, member: str) -> _Global:
        raw = (module, name)
        if proto < 3:
            # What Unpickler.find_class really imports (fix_imports maps Python 2 names).
            if raw in NAME_MAPPING:
                module, name = NAME_MAPPING[raw]
            elif module in IMPORT_MAPPING:
                module = IMPORT_MAPPING[module]
        self.imports.add((module, name))
        if (module, name) not in ALLOWED_GLOBALS:
            reason = why_dangerous(module, name) or why_dangerous(*raw)
            self._finding(module, name, opcode, pos, member, DANGEROUS if reason else UNKNOWN,
                          reason or "not on the allowlist of what torch.save writes for a state dict")
        return _Global(module, name)

    def _call(self, target: Any, opcode: str, pos: int, member: str) -> None:
        if not isinstance(target, _Global):
            # Calling the result of a call (getattr(...)(...), partial(...)()) is how gadget
            # chains reach callables that were never named in a GLOBAL.
            self._finding("", "<computed callable>", opcode, pos, member, DANGEROUS,
                          "calls a value that is not an imported global")

    def _mutate(self, target: Any, opcode: str, pos: int, member: str) -> None:
        if isinstance(target, _Global):
            # BUILD/APPEND/SETITEM on a class, function or module rewrites shared state
            # (monkeypatching), even when the global itself is allowlisted.
            self._finding(target.module, target.name, opcode, pos, member, DANGEROUS,
                          "mutates an imported object instead of a new one")

    def _finding(self, module: str, name: str, opcode: str, pos: int | None, member: str, severity: str,
                 reason: str) -> None:
        self.findings.append(PickleFinding(module, name, opcode, pos if pos is not None else -1, member,
                                           severity, reason))

    def _nested(self, value: str | bytes, member: str, pos: int) -> None:
        """Scan constants that look like pickles: the payload of a pickle.loads gadget."""
        if self.depth >= MAX_NESTED_DEPTH:
            return
        if isinstance(value, str):
            try:
                value = value.encode("latin-1")  # how protocol 2 smuggles bytes: _codecs.encode(str, "latin1")
            except UnicodeEncodeError:
                return
        if not _looks_like_pickle(value):
            return
        inner = PickleWalker(self.path, self.depth + 1)
        label = f"{member}>bytes@{pos}"
        try:
            inner.scan_stream(value, label, allow_legacy=False)
        except PickleScanError:
            pass  # just data after all; but keep what it did say, below
        self.imports |= inner.imports
        self.findings.extend(inner.findings)
        if inner.findings:
            self.members.extend(inner.members)


def _looks_like_pickle(blob: bytes) -> bool:
    if len(blob) < 3:
        return False
    if blob[0] == 0x80 and 2 <= blob[1] <= 5:
        return True
    # Protocol 0/1: ends with STOP and starts with an opcode a payload would start with.
    return blob.endswith(b".") and blob[:1] in (b"c", b"(", b"i", b"S", b"V", b"]", b"}", b")")


def _raw_pair(buf: Any, pos: int) -> tuple[str, str]:
    """The module and name lines after GLOBAL/INST, read as the unpickler reads them.

    genops joins them with a space, which cannot be split back when the module has one.
    """
    first = buf.find(b"\n", pos + 1)
    second = buf.find(b"\n", first + 1) if first >= 0 else -1
    if first < 0 or second < 0:
        raise _Malformed("GLOBAL without two lines", pos)
    try:
        return bytes(buf[pos + 1:first]).decode("utf-8"), bytes(buf[first + 1:second]).decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("GLOBAL names are not UTF-8", pos) from None


def _check_member_name(info: zipfile.ZipInfo, path: Path | None) -> None:
    name = info.orig_filename
    parts = name.split("/")
    bad = ("\x00" in name or "\\" in name or name.startswith("/") or ".." in parts
           or (parts and len(parts[0]) == 2 and parts[0][1] == ":"))
    if bad:
        raise PickleScanError(f"zip member name {name!r} points outside the archive", path=path, member=name,
                              hint="a hostile archive: do not extract or load it")
