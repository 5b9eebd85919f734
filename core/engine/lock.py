"""weightgate.lock: exactly which bytes this workspace runs.

The lock records the source, the revision commit, and every file's path, size, sha256, where
the hash came from (published by the hub's LFS metadata, or computed locally), when it was last
verified, and the mtime seen then. Later phases compare size and mtime with the lock before
using the weights and re-hash when they differ. Its digest is the "model" fingerprint.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomlkit

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.digest import ABSENT, digest_value
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.workspace import Workspace, parse_config

LOCK_VERSION = 1
HASH_PUBLISHED = "published"   # the hub's LFS sha256 (or a sidecar the publisher signed)
HASH_COMPUTED = "computed"     # hashed locally; nothing published to compare with


@dataclass
class LockedFile:
    path: str                  # relative to the snapshot directory, '/'-separated
    size: int
    sha256: str                # hex, no prefix
    hash_source: str           # HASH_PUBLISHED | HASH_COMPUTED
    verified_at: float = 0.0   # unix time of the last full re-hash that matched
    mtime: float = 0.0         # the file's mtime at that verification


@dataclass
class ModelLock:
    kind: str                  # "hub" | "local" | "gguf"
    source: str                # "org/name", a directory, or a .gguf path, as the user gave it
    revision: str = ""         # what was asked for ("main", a tag, a sha)
    commit: str = ""           # the resolved 40-hex commit ("" for local sources)
    local_dir: str = ""        # where the files are (HF cache snapshot or local directory)
    load_dir: str = ""         # where transformers loads from, relative to local_dir ("": local_dir itself;
                               # "model": a GGUF's converted safetensors twin, core.weights.gguf_source)
    license: str = ""
    remote_code: bool = False
    provenance: str = ""       # how a local source was obtained, e.g. the published hash it came from
    origin: str = ""           # the hub repo a local copy was made from, when known (the model card's base_model)
    files: list[LockedFile] = field(default_factory=list)
    locked_at: float = 0.0

    def file(self, path: str) -> LockedFile | None:
        return next((f for f in self.files if f.path == path), None)

    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def has_lock(ws: Workspace) -> bool:
    """weightgate.lock is there (a cheap stat; read_lock parses it)."""
    return ws.lock_path.is_file()


def read_lock(ws: Workspace) -> ModelLock | None:
    path = ws.lock_path
    if not path.exists():
        return None
    doc = parse_config(path.read_text(encoding="utf-8"), path).unwrap()
    try:
        model = doc["model"]
        files = [LockedFile(**entry) for entry in doc.get("files", [])]
        return ModelLock(**{**model, "files": files})
    except (KeyError, TypeError) as exc:
        raise InputError(f"weightgate.lock is not in the expected form ({exc})", path=path,
                         hint="the lock is written by weightgate; re-create it with `weightgate weights fetch`") from None


def write_lock(ws: Workspace, lock: ModelLock) -> None:
    if not lock.locked_at:
        lock.locked_at = time.time()
    doc = tomlkit.document()
    doc.add(tomlkit.comment("Written by weightgate: the exact bytes this workspace runs. Do not edit."))
    doc.add("version", LOCK_VERSION)
    model = {k: v for k, v in asdict(lock).items() if k != "files"}
    doc.add("model", model)
    files = tomlkit.aot()
    for entry in sorted(lock.files, key=lambda f: f.path):
        files.append(asdict(entry))
    doc.add("files", files)
    write_atomic(ws.lock_path, tomlkit.dumps(doc))


def changed_on_disk(lock: ModelLock, root: Path) -> list[str]:
    """Files whose size or mtime differ from the lock (or are missing): these need a re-hash."""
    changed = []
    for entry in lock.files:
        path = root / entry.path
        try:
            stat = path.stat()
        except FileNotFoundError:
            changed.append(entry.path)
            continue
        if stat.st_size != entry.size or abs(stat.st_mtime - entry.mtime) > 1e-6:
            changed.append(entry.path)
    return changed


def lock_digest(lock: ModelLock | None) -> str:
    """The model's identity: source, commit and every file's bytes. Re-verifying (new times,
    same hashes) keeps it; any different byte changes it."""

    if lock is None:
        return ABSENT
    return digest_value({
        "kind": lock.kind, "source": lock.source, "commit": lock.commit,
        "files": sorted((f.path, f.size, f.sha256) for f in lock.files),
    })


_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_reason(rel: str) -> str | None:
    """Why a lock path must not be opened, or None. Lexical on purpose: in the Hugging Face cache
    every snapshot file is a symlink into ../../blobs, so resolving links would refuse them all;
    what must never happen is the *lock* steering a read outside the snapshot directory."""
    if not rel:
        return "the path is empty"
    if "\x00" in rel:
        return "the path contains a NUL byte"
    if "\\" in rel:
        return "the path contains a backslash"
    if rel.startswith("/") or _DRIVE.match(rel):
        return "the path is absolute"
    parts = rel.split("/")
    if ".." in parts:
        return "the path climbs out of the snapshot directory (..)"
    if any(part in ("", ".") for part in parts):
        return "the path has an empty or '.' component"
    return None


def snapshot_dir(ws: Workspace, lock: ModelLock) -> Path:
    """Where the locked files live: local_dir (relative to the workspace if not absolute)."""
    if lock.local_dir:
        where = Path(lock.local_dir).expanduser()
    elif lock.kind == "gguf" and lock.source:
        where = Path(lock.source).expanduser().parent
    elif lock.kind == "local" and lock.source:
        where = Path(lock.source).expanduser()
    else:
        raise InputError("weightgate.lock does not say where the files are (model.local_dir is empty)",
                         path=ws.lock_path, hint="run `weightgate weights fetch` to download and lock the model")
    return where if where.is_absolute() else ws.root / where


def model_dir(ws: Workspace, lock: ModelLock) -> Path:
    """Where transformers loads the locked model from: the snapshot directory, or for a GGUF
    source the safetensors model converted from it (lock.load_dir, inside the snapshot)."""
    root = snapshot_dir(ws, lock)
    if lock.load_dir:
        reason = unsafe_reason(lock.load_dir)
        if reason is not None:
            raise InputError(f"model.load_dir {lock.load_dir!r} is refused: {reason}", path=ws.lock_path,
                             hint="the lock is written by weightgate; re-create it with `weightgate weights fetch`")
        return root / lock.load_dir
    if lock.kind == "gguf":
        raise InputError("this lock names a GGUF file but no model converted from it", path=ws.lock_path,
                         hint="fetch it again (`weightgate weights fetch`): a GGUF is converted to safetensors and locked "
                              "with it")
    return root
