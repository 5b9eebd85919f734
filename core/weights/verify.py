"""Re-verify the locked weights: every file's sha256 against weightgate.lock, every header checked.

`verify_lock` is the engine behind `weightgate weights verify` and the Verification screen. It never
loads a weight: files are hashed (in parallel across files, see core.engine.hashing) and safetensors /
GGUF headers are parsed by the validators in core.weights.safetensors_format and core.weights.gguf_format.

The lock is updated only for files whose bytes matched: `verified_at` and `mtime` are refreshed
for them and for nothing else, so a file that failed keeps its old record and
`core.engine.lock.changed_on_disk` still flags it. `verify_lock` writes no evidence; callers turn
the report into verify.checksum / verify.headers with checks.record_verification.

`verified_snapshot` is what every later phase calls before it loads weights: files whose size or
mtime moved are re-hashed first, and nothing loads that the lock does not list: a sharded
model's index is held to the lock and to its shards' headers (core.weights.shard_index), the
lock's own load_dir must stay inside the snapshot, and weight files transformers would pick up by
name must be locked.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat as stat_mod
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.hashing import ProgressFn, default_workers, hash_files, hash_rate
from weightgate.core.engine.lock import (
    LockedFile,
    ModelLock,
    changed_on_disk,
    model_dir,
    read_lock,
    snapshot_dir,
    unsafe_reason,
    write_lock,
)
from weightgate.core.engine.workspace import Workspace
from weightgate.core.weights.checks import FETCH_HINT, record_verification
from weightgate.core.weights.gguf_format import GgufError, validate_gguf
from weightgate.core.weights.safetensors_format import SafetensorsError, validate_safetensors
from weightgate.core.weights.shard_index import check_index, is_index

OK = "ok"                               # re-hashed, matches the lock
UNCHANGED = "unchanged"                 # only_changed: size + mtime as at the last verification
MISMATCH = "mismatch"                   # re-hashed, different bytes
SIZE_DIFFERS = "size_differs"           # not hashed: it cannot match
MISSING = "missing"
UNSAFE_PATH = "unsafe_path"             # the lock names a path outside the snapshot directory
UNREADABLE = "unreadable"               # permissions, a directory, an I/O error
CHANGED_DURING = "changed_during_verify"  # size or mtime moved while it was being hashed
PASSING = (OK, UNCHANGED)

HEADER_OK = "ok"
HEADER_NOT_CHECKED = "not_checked"      # a weight file that could not be read (missing, unsafe)
HEADER_KINDS = {".safetensors": "safetensors", ".gguf": "gguf"}
INDEX_KIND = "safetensors-index"
# Weight files in the load directory that the lock does not list are reported (never loaded:
# verified_snapshot refuses those transformers would pick up by name or through the index).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".npz", ".h5", ".msgpack")


@dataclass
class FileResult:
    path: str                   # as in the lock, relative to the snapshot directory
    status: str
    expected_size: int
    expected_sha256: str
    hash_source: str
    size: int | None = None     # on disk; None when missing or refused
    sha256: str | None = None   # computed; None when not hashed this time
    header_kind: str = ""       # "safetensors" | "gguf" | "safetensors-index" | "" (config.json, tokenizer...)
    header: str = ""            # HEADER_OK | a fault code | HEADER_NOT_CHECKED | "" (no header kind)
    header_message: str = ""
    message: str = ""
    mtime: float = 0.0          # the mtime the bytes were hashed at (written to the lock on OK)

    @property
    def ok(self) -> bool:
        return self.status in PASSING

    @property
    def header_ok(self) -> bool:
        return not self.header_kind or self.header == HEADER_OK

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("mtime")
        return data


@dataclass
class VerifyReport:
    source: str
    commit: str
    root: str
    files: list[FileResult]
    only_changed: bool
    workers: int
    bytes_hashed: int = 0
    hash_seconds: float = 0.0
    seconds: float = 0.0
    verified_at: float = 0.0
    lock_updated: list[str] = field(default_factory=list)   # paths whose verified_at was refreshed
    lock_fault: str = ""        # a path field of the lock itself that is unsafe (load_dir)
    unlisted: list[str] = field(default_factory=list)       # weight files in the load dir the lock lacks

    @property
    def checksum_ok(self) -> bool:
        """Every locked file matches (re-hashed now, or unchanged since it last matched)."""
        return bool(self.files) and all(f.ok for f in self.files) and not self.lock_fault

    @property
    def headers_checked(self) -> int:
        return sum(1 for f in self.files if f.header_kind and f.header != HEADER_NOT_CHECKED)

    @property
    def headers_ok(self) -> bool:
        """Every safetensors / GGUF file (and sharded index) in the lock was read and is sound."""
        weights = [f for f in self.files if f.header_kind]
        return bool(weights) and all(f.header == HEADER_OK for f in weights)

    def reasons(self) -> list[str]:
        """Why the report is not ok, one line each (empty when it is)."""
        reasons = []
        if self.lock_fault:
            reasons.append(self.lock_fault)
        if not self.files:
            reasons.append("the lock lists no files")
        reasons += [f"{f.path}: {f.status}" + (f" ({f.message})" if f.message else "") for f in self.failed()]
        if self.files and not any(f.header_kind for f in self.files):
            pickles = [f.path for f in self.files if f.path.lower().endswith((".bin", ".pt", ".pth", ".ckpt"))]
            reasons.append("no safetensors or GGUF weights in the lock" + (
                f" (pickle only: {', '.join(pickles[:3])}; convert them: weightgate weights convert "
                f"{pickles[0]})" if pickles else ""))
        reasons += [f"{f.path}: header {f.header}" + (f" ({f.header_message})" if f.header_message else "")
                    for f in self.files if f.header_kind and f.header != HEADER_OK]
        return reasons

    @property
    def ok(self) -> bool:
        return self.checksum_ok and self.headers_ok

    @property
    def mb_per_s(self) -> float:
        return hash_rate(self.bytes_hashed, self.hash_seconds)

    def failed(self) -> list[FileResult]:
        return [f for f in self.files if not f.ok]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.status] = out.get(f.status, 0) + 1
        return out

    def checksum_evidence(self) -> dict:
        """Values for the `verify.checksum` item."""
        return {
            "ok": self.checksum_ok, "files": len(self.files), "counts": self.counts(),
            "published": sum(1 for f in self.files if f.hash_source == "published"),
            "failed": {f.path: f.status for f in self.failed()},
            **({"lock_fault": self.lock_fault} if self.lock_fault else {}),
            **({"unlisted": list(self.unlisted)} if self.unlisted else {}),
            "bytes_hashed": self.bytes_hashed, "mb_per_s": round(self.mb_per_s, 1),
            "only_changed": self.only_changed,
        }

    def headers_evidence(self) -> dict:
        """Values for the `verify.headers` item."""
        weights = [f for f in self.files if f.header_kind]
        return {
            "ok": self.headers_ok, "weight_files": len(weights), "checked": self.headers_checked,
            "faults": {f.path: f.header for f in weights if f.header != HEADER_OK},
            "messages": {f.path: f.header_message for f in weights if f.header != HEADER_OK and f.header_message},
        }

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "checksum_ok": self.checksum_ok, "headers_ok": self.headers_ok,
            "source": self.source, "commit": self.commit, "root": self.root,
            "only_changed": self.only_changed, "workers": self.workers,
            "totals": {
                "files": len(self.files), "counts": self.counts(), "bytes_hashed": self.bytes_hashed,
                "hash_seconds": round(self.hash_seconds, 3), "seconds": round(self.seconds, 3),
                "mb_per_s": round(self.mb_per_s, 1),
            },
            "verified_at": self.verified_at, "lock_updated": list(self.lock_updated),
            "lock_fault": self.lock_fault, "unlisted": list(self.unlisted), "reasons": self.reasons(),
            "files": [f.to_dict() for f in self.files],
        }


# --------------------------------------------------------------------------- paths


def _hex(digest: str) -> str:
    return digest.split(":", 1)[-1].strip().lower()


# --------------------------------------------------------------------------- verify

def verify_lock(ws: Workspace, *, workers: int | None = None, progress: ProgressFn | None = None,
                only_changed: bool = False,
                file_progress: Callable[[str, int, int], None] | None = None) -> VerifyReport:
    """Re-hash the locked files (all, or with only_changed those whose size/mtime moved or that
    were never verified) and check every safetensors / GGUF header. See the module docstring.

    `file_progress(path, done, size)`: per-file hashing progress, `path` as in the lock (see
    core.engine.hashing.hash_files); called only for the files that are hashed."""
    started = time.perf_counter()
    lock = read_lock(ws)
    if lock is None:
        raise InputError("no weightgate.lock in this workspace", path=ws.lock_path,
                         hint="run `weightgate weights fetch` first: it downloads the model and writes the lock")
    root = snapshot_dir(ws, lock)
    workers = workers or default_workers()

    results: list[FileResult] = []
    to_hash: list[tuple[FileResult, Path, os.stat_result]] = []
    safe = [e for e in lock.files if unsafe_reason(e.path) is None]
    changed = set(changed_on_disk(dataclasses.replace(lock, files=safe), root)) if only_changed else set()

    for entry in lock.files:
        result = _result_for(entry)
        results.append(result)
        reason = unsafe_reason(entry.path)
        if reason is not None:
            result.status, result.message = UNSAFE_PATH, f"refused: {reason}"
            continue
        full = root / entry.path
        try:
            st = os.stat(full)
        except FileNotFoundError:
            result.status, result.message = MISSING, f"not found at {full}"
            continue
        except OSError as exc:
            result.status, result.message = UNREADABLE, f"cannot stat: {exc.strerror or exc}"
            continue
        if not stat_mod.S_ISREG(st.st_mode):
            # A directory, a FIFO or /dev/zero behind a symlink would never finish hashing.
            result.status, result.message = UNREADABLE, "not a regular file"
            continue
        result.size = st.st_size
        if st.st_size != entry.size:
            result.status = SIZE_DIFFERS
            result.message = f"{st.st_size} bytes on disk, {entry.size} in the lock"
        elif only_changed and entry.path not in changed and entry.verified_at > 0:
            result.status, result.message = UNCHANGED, "size and mtime as when last verified"
        else:
            to_hash.append((result, full, st))

    hash_started = time.perf_counter()
    errors: dict[Path, OSError] = {}
    per_file = None
    if file_progress is not None:
        lock_path = {full: result.path for result, full, _ in to_hash}

        def per_file(full: Path, done: int, size: int) -> None:
            file_progress(lock_path[full], done, size)
    digests = hash_files([full for _, full, _ in to_hash], workers=workers, progress=progress, errors=errors,
                         file_progress=per_file)
    hash_seconds = time.perf_counter() - hash_started
    bytes_hashed = 0
    for result, full, before in to_hash:
        if full in errors:
            result.status, result.message = UNREADABLE, f"read failed: {errors[full].strerror or errors[full]}"
            continue
        result.sha256 = digests[full]
        bytes_hashed += before.st_size
        try:
            after = os.stat(full)
        except OSError:
            after = None
        if after is None or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            # The bytes hashed may be half old, half new: neither can be called verified.
            result.status, result.message = CHANGED_DURING, "the file changed while it was hashed; verify again"
        elif result.sha256 == _hex(result.expected_sha256):
            result.status, result.mtime = OK, before.st_mtime
        else:
            result.status = MISMATCH
            result.message = (f"sha256 {result.sha256} but the lock ({result.hash_source}) says "
                              f"{_hex(result.expected_sha256)}")

    locked = {entry.path for entry in safe}
    for result in results:
        _check_header(result, root, locked)

    now = time.time()
    updated = _record_verified(ws, [r for r in results if r.status == OK], now)
    lock_fault = load_dir_fault(lock)
    return VerifyReport(
        source=lock.source, commit=lock.commit, root=str(root), files=results, only_changed=only_changed,
        workers=workers, bytes_hashed=bytes_hashed, hash_seconds=hash_seconds,
        seconds=time.perf_counter() - started, verified_at=now if updated else 0.0, lock_updated=updated,
        lock_fault=lock_fault, unlisted=[] if lock_fault else unlisted_weights(root, lock),
    )


def load_dir_fault(lock: ModelLock) -> str:
    """The lock's load_dir is a path like any file's: it must stay inside the snapshot."""
    reason = unsafe_reason(lock.load_dir) if lock.load_dir else None
    return f"weightgate.lock model.load_dir {lock.load_dir!r} is refused: {reason}" if reason else ""


def unlisted_weights(root: Path, lock: ModelLock) -> list[str]:
    """Weight files in the load directory the lock does not list (reported, never loaded)."""
    load = root / lock.load_dir if lock.load_dir else root
    prefix = f"{lock.load_dir}/" if lock.load_dir else ""
    try:
        entries = sorted(os.scandir(load), key=lambda e: e.name)
    except OSError:
        return []
    return [prefix + e.name for e in entries if e.name.lower().endswith(WEIGHT_SUFFIXES)
            and lock.file(prefix + e.name) is None]


def _result_for(entry: LockedFile) -> FileResult:
    suffix = Path(entry.path).suffix.lower()
    kind = INDEX_KIND if is_index(entry.path) else HEADER_KINDS.get(suffix, "")
    return FileResult(path=entry.path, status=UNREADABLE, expected_size=entry.size,
                      expected_sha256=entry.sha256, hash_source=entry.hash_source, header_kind=kind)


def _check_header(result: FileResult, root: Path, locked: set[str]) -> None:
    if not result.header_kind:
        return
    if result.size is None:   # missing, refused or not a regular file: nothing to read
        result.header = HEADER_NOT_CHECKED
        return
    if result.header_kind == INDEX_KIND:
        faults = check_index(root, result.path, locked)
        if faults:
            result.header, result.header_message = faults[0].fault, "; ".join(f.message for f in faults)
        else:
            result.header = HEADER_OK
        return
    validate = validate_safetensors if result.header_kind == "safetensors" else validate_gguf
    try:
        validate(root / result.path)
    except (SafetensorsError, GgufError) as exc:
        result.header, result.header_message = exc.fault, exc.message
    else:
        result.header = HEADER_OK


def _record_verified(ws: Workspace, matched: list[FileResult], now: float) -> list[str]:
    """Refresh verified_at + mtime for the files that matched, and only those.

    Re-read the lock first: if a download rewrote it meanwhile, only entries that still carry the
    size and hash we just matched are stamped.
    """
    if not matched:
        return []
    fresh = read_lock(ws)
    if fresh is None:
        return []
    by_path = {r.path: r for r in matched}
    updated = []
    for entry in fresh.files:
        result = by_path.get(entry.path)
        if result is None or entry.size != result.size or _hex(entry.sha256) != result.sha256:
            continue
        entry.verified_at, entry.mtime = now, result.mtime
        updated.append(entry.path)
    if updated:
        write_lock(ws, fresh)
    return sorted(updated)


def restore_hint(lock: ModelLock | None) -> str:
    """What to do about weights that no longer match the lock."""
    if lock is not None and lock.kind == "hub":
        return "re-fetch the model (`weightgate weights fetch`); never load bytes you cannot verify"
    return ("restore the original files from where they came from: re-locking a local source "
            "(`weightgate weights fetch DIR`) would bless the changed bytes")


LOADED_BY_NAME = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$")


def verified_snapshot(ws: Workspace, *, progress=None) -> Path:
    """The locked weights' directory, safe to load: called by every later phase before it loads
    weights. Files whose size or mtime differ from the lock are re-hashed first (the rest are
    trusted from their last verification); any mismatch raises, naming the files."""

    lock = read_lock(ws)
    if lock is None:
        raise InputError("no weights locked in this workspace", path=ws.lock_path, hint=FETCH_HINT)
    report = verify_lock(ws, only_changed=True, progress=progress)
    if report.lock_updated or not report.ok:
        record_verification(ws, report)
    if not report.ok:
        raise InputError("the locked weights cannot be loaded: " + "; ".join(report.reasons()), path=ws.lock_path,
                         hint=restore_hint(lock))
    root = model_dir(ws, lock)
    inside = root.relative_to(snapshot_dir(ws, lock)).as_posix()
    prefix = "" if inside == "." else inside + "/"
    # from_pretrained(use_safetensors=True) loads these by name whether or not the lock lists them.
    unlocked = sorted(path.name for path in root.iterdir() if path.is_file() and LOADED_BY_NAME.match(path.name)
                      and lock.file(prefix + path.name) is None) if root.is_dir() else []
    if unlocked:
        raise InputError(f"{root} holds weight files transformers would load that weightgate.lock does not list: "
                         + ", ".join(unlocked), path=root / unlocked[0],
                         hint="remove them, or lock them: `weightgate weights fetch` hashes what is there")
    return root
