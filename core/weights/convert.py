"""`convert_pickle`: turn one trusted pickle checkpoint into safetensors, in a job process.

params:
    path        the pickle file: absolute, a path in weightgate.lock (in the model directory),
                or relative to the workspace (as `weightgate weights trust pickle` takes it)
    output_dir  where to write the twin (default: next to the input)
    key         optional dotted key of the sub-dict to convert (e.g. "state_dict", "model")
    overwrite   replace an existing output (default: no)

The output is named as transformers looks for it with use_safetensors=True (core.weights.pickle_policy.
twin_name: pytorch_model.bin -> model.safetensors; other names keep their stem), and its header
metadata records the source's sha256. When the input is a file of the locked model and the output
lands in the model's directory, the output is added to weightgate.lock as the pickle's
safetensors twin (hash computed here), the model index is written once every shard of a sharded
pickle has its twin, and the verification evidence is refreshed: later phases load the twin.

The trust and the scan are checked again here, in the process that loads: the TUI's earlier
check proves nothing about the bytes on disk now. Hash, scan and load go through one open
handle. The load is `torch.load(weights_only=True)`, never a plain unpickle.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightgate.core.engine.atomic import atomic_output, write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.hashing import sha256_file
from weightgate.core.engine.job_process import JobContext
from weightgate.core.engine.lock import HASH_COMPUTED, LockedFile, read_lock, snapshot_dir, write_lock
from weightgate.core.engine.workspace import Workspace
from weightgate.core.weights.checks import record_verification
from weightgate.core.weights.pickle_policy import (
    PICKLE_INDEX,
    TWIN_INDEX,
    is_twin_shard,
    twin_name,
    twin_source_sha256,
)
from weightgate.core.weights.safetensors_format import validate_safetensors
from weightgate.core.weights.verify import verify_lock


@dataclass(frozen=True)
class ConversionPlan:
    source: Path                  # absolute, symlinks not followed (trust names the path reviewed)
    output: Path
    locked_as: str | None = None  # the source's path in weightgate.lock, when it is a locked file
    twin: str | None = None       # the output's path in the lock when it lands in the model directory


def plan_conversion(ws: Workspace, path: str | os.PathLike, *, output_dir: str | os.PathLike | None = None,
                    overwrite: bool = False) -> ConversionPlan:
    """Where `path` is and where its safetensors twin goes; refuses a missing input or an
    existing output (unless overwrite). Quick: no hashing (the trust check is separate)."""

    raw = Path(path).expanduser()
    lock, root = read_lock(ws), None
    if lock is not None:
        try:
            root = Path(os.path.abspath(snapshot_dir(ws, lock)))
        except InputError:
            root = None
    if raw.is_absolute():
        source = Path(os.path.abspath(raw))
    elif root is not None and lock.file(raw.as_posix()) is not None:
        source = Path(os.path.abspath(root / raw))
    else:
        source = Path(os.path.abspath(ws.root / raw))
    if not source.is_file():
        raise InputError("no such file", path=source,
                         hint="give the pickle's path in weightgate.lock, relative to the workspace, or absolute")
    out_dir = Path(output_dir).expanduser() if output_dir else source.parent
    if not out_dir.is_absolute():
        out_dir = ws.root / out_dir
    output = Path(os.path.abspath(out_dir / Path(twin_name(source.name)).name))
    if output == source or (output.exists() and output.resolve() == source.resolve()):
        raise InputError("the output would overwrite the input", path=source)
    if output.exists() and not overwrite:
        raise InputError("the output already exists", path=output,
                         hint="pass overwrite=true (`weightgate weights convert --overwrite`) to replace it")
    locked_as = twin = None
    if root is not None:
        rel = _inside(source, root)
        if rel is not None and lock.file(rel) is not None:
            locked_as = rel
            twin = _inside(output, root)
    return ConversionPlan(source=source, output=output, locked_as=locked_as, twin=twin)


# --- the twin in weightgate.lock ----------------------------------------------------------------


def _inside(path: Path, root: Path) -> str | None:
    try:
        return Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        return None


def lock_twin(ws: Workspace, plan: ConversionPlan, source_sha: str, output_sha: str, ctx: JobContext) -> dict | None:
    """Add the twin (and, for the last shard of a sharded model, the twin index) to the lock;
    None when the input is not a locked file or the output is outside the model directory."""

    if plan.locked_as is None:
        return None
    lock = read_lock(ws)
    entry = lock.file(plan.locked_as) if lock is not None else None
    if entry is None:
        return None
    if entry.sha256 != source_sha:
        ctx.log(f"{plan.locked_as}: these bytes (sha256 {source_sha[:12]}) are not the locked ones "
                f"({entry.sha256[:12]}); the output is not added to weightgate.lock", level="warning")
        return None
    if plan.twin is None:
        ctx.log(f"{plan.output} is outside the model directory: later phases load only what is there, "
                "so it is not added to weightgate.lock", level="warning")
        return None
    root = Path(os.path.abspath(snapshot_dir(ws, lock)))
    adding = [(plan.twin, plan.output, output_sha)]
    index = _twin_index(root, lock, plan, source_sha, ctx)
    if index is not None:
        adding.append(index)
    with ctx.shielded():   # the lock is rewritten whole or not at all
        fresh = read_lock(ws)
        now = time.time()
        names = {rel for rel, _, _ in adding}
        files = [f for f in fresh.files if f.path not in names]
        for rel, path, sha in adding:
            stat = path.stat()
            files.append(LockedFile(path=rel, size=stat.st_size, sha256=sha, hash_source=HASH_COMPUTED,
                                    verified_at=now, mtime=stat.st_mtime))
        fresh.files = files
        write_lock(ws, fresh)
    ctx.artifact(ws.lock_path, label="lock")
    ctx.log(f"locked {plan.twin} as the safetensors twin of {plan.locked_as}"
            + (f", and {index[0]}" if index else ""))
    # The lock's digest changed (new files): verify again under it (only the files whose size or
    # mtime moved are re-hashed) so the phase-2 evidence is about the lock as it is now.

    report = verify_lock(ws, only_changed=True)
    record_verification(ws, report)
    return {"lock": str(ws.lock_path), "twin": plan.twin, "of": plan.locked_as,
            "index": index[0] if index else None, "verified": report.ok}


def _twin_index(root: Path, lock, plan: ConversionPlan, source_sha: str, ctx: JobContext):
    """(lock path, file, sha256) of model.safetensors.index.json, written once every shard named
    in the pickle index has a twin converted from its locked bytes; None otherwise."""
    if not is_twin_shard(plan.twin):
        return None
    folder = Path(plan.twin).parent.as_posix()
    prefix = "" if folder == "." else folder + "/"
    pickle_index = root / (prefix + PICKLE_INDEX)
    try:
        shards = sorted(set(json.loads(pickle_index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ctx.log(f"{plan.twin} is a shard but {prefix + PICKLE_INDEX} cannot be read: no {TWIN_INDEX} written",
                level="warning")
        return None
    weight_map: dict[str, str] = {}
    total = 0
    missing = []

    for shard in shards:
        pickle_entry = lock.file(prefix + shard)
        twin = twin_name(shard)
        twin_path = root / (prefix + twin)
        expected = source_sha if prefix + shard == plan.locked_as else (pickle_entry.sha256 if pickle_entry else None)
        try:
            if expected is None or twin_source_sha256(twin_path) != expected:
                missing.append(shard)
                continue
            info = validate_safetensors(twin_path)
        except InputError:
            missing.append(shard)
            continue
        total += info.data_size
        for name in info.names:
            weight_map[name] = twin
    if missing:
        ctx.log(f"{len(shards) - len(missing)} of {len(shards)} shards have a safetensors twin; {TWIN_INDEX} "
                f"is written when the last one is converted (left: {', '.join(missing[:4])})")
        return None
    path = root / (prefix + TWIN_INDEX)
    text = json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2)
    write_atomic(path, text + "\n")
    return prefix + TWIN_INDEX, path, sha256_file(path)


def flatten_state_dict(obj: Any, prefix: str = "") -> dict:
    """{"a": {"b": t}} -> {"a.b": t}; anything but string-keyed dicts of tensors is refused."""
    import torch  # lazy: torch only where it runs, never at import

    if isinstance(obj, torch.Tensor) and prefix:
        return {prefix: obj}
    if not isinstance(obj, dict):
        where = prefix or "the top level"
        raise InputError(f"{where} holds {type(obj).__name__}, not a tensor: only (nested) dicts of tensors "
                         f"convert to safetensors",
                         hint="if the weights sit under one key (e.g. 'state_dict'), pass key=<that key>")
    flat: dict = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InputError(f"key {key!r} under {prefix or 'the top level'} is not a string ({type(key).__name__})")
        name = f"{prefix}.{key}" if prefix else key
        for inner_name, tensor in flatten_state_dict(value, name).items():
            if inner_name in flat:
                raise InputError(f"two entries flatten to the same name {inner_name!r}")
            flat[inner_name] = tensor
    if not prefix and not flat:
        raise InputError("the checkpoint holds no tensors")
    return flat


def select_tensors(obj: Any, key: str | None) -> Any:
    if not key:
        return obj
    for part in str(key).split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise InputError(f"no key {part!r} in the checkpoint (looking for {key!r})")
        obj = obj[part]
    return obj


def prepare_tensors(tensors: dict) -> tuple[dict, list[str]]:
    """Plain, contiguous, unaliased CPU tensors; shared-storage ones (tied weights) cloned."""
    import torch  # lazy: torch only where it runs, never at import

    users: dict[tuple, int] = {}
    for tensor in tensors.values():
        _check_tensor(tensor)
        if tensor.numel():
            ident = _storage_id(tensor)
            users[ident] = users.get(ident, 0) + 1
    prepared: dict = {}
    cloned: list[str] = []
    for name, tensor in tensors.items():
        plain = tensor.detach()
        if plain.numel() and users[_storage_id(plain)] > 1:
            plain = plain.clone(memory_format=torch.contiguous_format)
            cloned.append(name)
        elif not plain.is_contiguous():
            plain = plain.contiguous()
        prepared[name] = plain
    return prepared, cloned


def _check_tensor(tensor: Any) -> None:
    import torch  # lazy: torch only where it runs, never at import

    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type != "cpu":
        raise InputError(f"a {tensor.layout}/{tensor.dtype} tensor on {tensor.device} cannot be stored in safetensors")


def _storage_id(tensor: Any) -> tuple:
    storage = tensor.untyped_storage()
    return (storage.data_ptr(), storage.nbytes())


def save_tensors(tensors: dict, output: Path, metadata: dict) -> None:
    from safetensors.torch import save_file  # lazy: safetensors only where it runs, never at import

    with atomic_output(output) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def verify_saved(output: Path, originals: dict, ctx: JobContext) -> None:
    """Read every tensor back and compare bit for bit (NaNs included), one at a time."""
    import torch  # lazy: torch only where it runs, never at import
    from safetensors import safe_open  # lazy: safetensors only where it runs, never at import

    total = len(originals)
    with safe_open(str(output), framework="pt") as reader:
        if set(reader.keys()) != set(originals):
            raise RuntimeError("the written file does not hold the expected tensor names")
        for done, (name, original) in enumerate(originals.items(), start=1):
            ctx.check_cancel()
            again = reader.get_tensor(name)
            if again.dtype != original.dtype or again.shape != original.shape or not torch.equal(
                    _bits(again), _bits(original.detach())):
                raise RuntimeError(f"tensor {name!r} differs after conversion")
            ctx.progress(done, total, unit="tensor", message=name)


def _bits(tensor: Any) -> Any:
    import torch  # lazy: torch only where it runs, never at import

    return tensor.contiguous().reshape(-1).view(torch.uint8)
