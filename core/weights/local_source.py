"""Lock a local source (a model directory or a .gguf file): hash every file in parallel and
write weightgate.lock. Nothing is published for local files, so hashes are marked computed;
`provenance` says where the bytes came from when that is known (the demo model's GGUF)."""

from __future__ import annotations

import time
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.hashing import ProgressFn, hash_files
from weightgate.core.engine.lock import HASH_COMPUTED, LockedFile, ModelLock, write_lock
from weightgate.core.engine.workspace import Workspace
from weightgate.core.weights.checks import record_local_lock
from weightgate.core.weights.metadata import fetch_metadata
from weightgate.core.weights.sources import Source, parse_source, plan_files


def lock_local_source(ws: Workspace, spec: str | Source, *, provenance: str = "", origin: str = "",
                      progress: ProgressFn | None = None) -> ModelLock:
    source = parse_source(spec) if isinstance(spec, str) else spec
    if source.kind not in ("local", "gguf"):
        raise InputError(f"{source} is a hub repo", hint="hub models are fetched by the download job")
    meta = fetch_metadata(source)
    path = Path(source.path)
    if source.kind == "gguf":
        root, wanted = path.parent, [path.name]
    else:
        root = path
        wanted, _skipped = plan_files([info.path for info in meta.files])
    if not wanted:
        raise InputError(f"no model files in {path}", path=path,
                         hint="a model directory holds config.json and *.safetensors weights")
    full = {name: root / name for name in wanted}
    hashes = hash_files(list(full.values()), progress=progress)
    now = time.time()
    files = []
    for name, file_path in full.items():
        stat = file_path.stat()
        files.append(LockedFile(path=name, size=stat.st_size, sha256=hashes[file_path],
                                hash_source=HASH_COMPUTED, verified_at=now, mtime=stat.st_mtime))
    lock = ModelLock(kind=source.kind, source=str(path), local_dir=str(root), license=meta.license,
                     remote_code=meta.remote_code, provenance=provenance, origin=origin, files=files)
    write_lock(ws, lock)

    record_local_lock(ws, lock)
    return lock
