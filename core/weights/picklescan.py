"""A static pickle scanner: reports what a pickle would import and call, and never unpickles.

It walks the opcodes with `pickletools.genops` and models the unpickler's stack and memo with
opaque values, so it knows the operands of STACK_GLOBAL (also through PUT/GET/MEMOIZE), which
value every REDUCE/NEWOBJ/OBJ/INST calls, and what BUILD/APPEND/SETITEM mutate. Only string
and bytes constants and imported globals keep their identity; everything else is "some object".

Formats, decided the way `torch.load` and `numpy.load` decide them (the first bytes, not
`zipfile.is_zipfile`, which also accepts a pickle with a zip glued to its end):
  * NumPy .npy (magic \x93NUMPY): the header is parsed by numpy's own safe header reader; a
    numeric dtype is data, no pickle; an object dtype's array is a pickle (np.save with
    allow_pickle), scanned like any other.
  * a zip whose members are all .npy (np.savez): each member as above.
  * zip (torch.save's default): every `*.pkl` member is scanned; members named with absolute
    paths, `..`, backslashes or twice are refused; TorchScript code members are findings.
  * anything else is a pickle stream: every pickle in it until EOF. A legacy (pre-1.6) torch
    file is 5 pickles followed by raw storage bytes, which torch reads as bytes, so scanning
    stops after the fifth pickle.

Anything imported that is not in ALLOWED_GLOBALS (exact (module, name) pairs) is a finding;
`severity` says whether it is a known code-execution gadget ("dangerous") or just not on the
list ("unknown"). Both make the file unsafe. Malformed input raises PickleScanError.
"""

from __future__ import annotations

import io
import mmap
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from weightgate.core.weights.pickle_rules import (
    FORMAT_NPZ,
    FORMAT_NUMPY,
    FORMAT_PICKLE,
    FORMAT_ZIP,
    ZIP_MAGIC,
    PickleScanError,
    ScanResult,
)
from weightgate.core.weights.pickle_walk import _ZIP_ERRORS, PickleWalker

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill",
                   ".pth.tar", ".pt.tar")


# --- results ------------------------------------------------------------------------------


def is_pickle_path(name: str | os.PathLike) -> bool:
    """True for file names that hold pickles (torch checkpoints and training leftovers)."""
    lowered = PurePosixPath(str(name).replace("\\", "/")).name.lower()
    return lowered.endswith(PICKLE_SUFFIXES)


# --- entry points ---------------------------------------------------------------------------


def scan_file(path: str | os.PathLike) -> ScanResult:
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise PickleScanError(f"cannot read the file: {exc.strerror or exc}", path=path) from None
    with handle:
        return scan_handle(handle, path)


_SCANS: dict[tuple[str, int, int], ScanResult | PickleScanError] = {}   # (path, size, mtime_ns) -> outcome


def scan_file_cached(path: str | os.PathLike) -> ScanResult:
    """scan_file, once per version of the file (its size and mtime): status and the screens ask
    about the same locked pickles every few seconds. Raises the same PickleScanError each time."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise PickleScanError(f"cannot read the file: {exc.strerror or exc}", path=path) from None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SCANS:
        if len(_SCANS) > 256:
            _SCANS.clear()
        try:
            _SCANS[key] = scan_file(path)
        except PickleScanError as exc:
            _SCANS[key] = exc
    outcome = _SCANS[key]
    if isinstance(outcome, PickleScanError):
        raise outcome
    return outcome


def scan_bytes(data: bytes, name: str | None = None) -> ScanResult:
    return scan_handle(io.BytesIO(bytes(data)), name)


def scan_handle(handle: BinaryIO, path: str | os.PathLike | None = None) -> ScanResult:
    """Scan an open binary file from its start (the policy hashes, scans and loads one handle)."""
    shown = Path(path) if path is not None else None
    scanner = PickleWalker(shown)
    try:
        handle.seek(0)
        head = handle.read(len(NPY_MAGIC))
        handle.seek(0)
        if head == NPY_MAGIC:
            _scan_npy(handle, scanner, "array.npy")
            fmt = FORMAT_NUMPY
        elif head[:4] == ZIP_MAGIC and _npz_members(handle):
            for name, data in _npz_members(handle):
                _scan_npy(io.BytesIO(data), scanner, name)
            fmt = FORMAT_NPZ
        elif head[:4] == ZIP_MAGIC:
            scanner.scan_zip(handle)
            fmt = FORMAT_ZIP
        else:
            with _whole(handle) as buf:
                if _is_tar(buf):
                    # torch.load tries its pre-0.4 tar loader before anything else, and that
                    # unpickles tar members; a tar whose first bytes are harmless pickles would
                    # otherwise pass as "legacy format" here.
                    raise PickleScanError("a tar archive (torch's pre-0.4 format): its members are pickles "
                                          "this scanner does not vouch for", path=shown,
                                          hint="re-save it with a current torch in a sandbox, or get safetensors")
                scanner.scan_stream(buf, label="pickle", allow_legacy=True)
            fmt = FORMAT_PICKLE
    except PickleScanError as exc:
        exc.path = exc.path or shown
        exc.findings = tuple(scanner.findings) + tuple(exc.findings)
        exc.__post_init__()  # the message includes the path now
        raise
    except OSError as exc:
        raise PickleScanError(f"cannot read the file: {exc}", path=shown) from None
    findings = tuple(scanner.findings)
    return ScanResult(
        path=str(path) if path is not None else None, format=fmt, members=tuple(scanner.members),
        imports=tuple(sorted(scanner.imports)), findings=findings, safe=not findings,
        notes=tuple(scanner.notes),
    )


NPY_MAGIC = b"\x93NUMPY"
MAX_NPY_HEADER = 1 << 20


def _npz_members(handle: BinaryIO) -> list[tuple[str, bytes]]:
    """[(name, bytes)] of a zip whose members are all .npy files, else [] (a torch zip)."""
    import zipfile  # lazy: only for zip files

    handle.seek(0)
    try:
        archive = zipfile.ZipFile(handle)
        infos = archive.infolist()
        if not infos or not all(info.filename.endswith(".npy") for info in infos):
            return []
        return [(info.filename, archive.read(info)) for info in infos]
    except _ZIP_ERRORS:
        return []   # not an npz: the torch zip scanner reports what is wrong with it
    finally:
        handle.seek(0)


def _scan_npy(handle: BinaryIO, scanner: PickleWalker, member: str) -> None:
    """A .npy: numeric data is noted; an object array's pickle is scanned."""
    from numpy.lib import format as npy_format  # lazy: numpy only when a NumPy file is scanned

    try:
        version = npy_format.read_magic(handle)
        # Versions 2 and 3 differ only in the header's text encoding (latin-1 / utf-8).
        read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, _fortran, dtype = read(handle, max_header_size=MAX_NPY_HEADER)
    except (ValueError, OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise PickleScanError(f"{member}: a NumPy file with an unreadable header: {exc}", path=scanner.path) from None
    if not dtype.hasobject:
        scanner.notes.append(f"{member}: NumPy array {dtype} {tuple(shape)}: numeric data, no pickle")
        return
    rest = handle.read()
    scanner.notes.append(f"{member}: NumPy array of dtype object {tuple(shape)}: its pickle was scanned")
    scanner.scan_stream(rest, member, allow_legacy=False)


class _whole:
    """The file as a sliceable buffer: an mmap when possible (legacy .bin files can be GBs)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.map: mmap.mmap | None = None

    def __enter__(self):
        try:
            fileno = self.handle.fileno()
            if os.fstat(fileno).st_size > 0:
                self.map = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
                return self.map
        except (OSError, io.UnsupportedOperation, ValueError):
            pass
        return self.handle.read()

    def __exit__(self, *exc: Any) -> None:
        if self.map is not None:
            self.map.close()


# --- the symbolic unpickler -----------------------------------------------------------------


def _is_tar(buf: Any) -> bool:
    """Does the file start with a valid tar header block (checksum and all)?"""
    if len(buf) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(bytes(buf[:tarfile.BLOCKSIZE]), "utf-8", "surrogateescape")
    except Exception:  # noqa: BLE001 - any complaint means "not a tar header"
        return False
    return True

