"""A sharded model's index is part of what is verified.

`model.safetensors.index.json` tells transformers which shard holds each tensor; transformers
then loads every shard the index names, whole. So an index can steer a load to bytes nobody
verified: a shard in the directory that weightgate.lock does not list (`shadow.safetensors`), or
a path outside the directory (`../evil/x.safetensors`). `check_index` holds an index to the lock
and to the shards' own headers:

    index_malformed        not JSON, or no {tensor: shard} weight_map
    index_path_unsafe      a shard path that is absolute, climbs out (..), or is otherwise unsafe
    index_unlocked_shard   a shard the lock does not list (never loadable through weightgate)
    index_tensor_missing   the index maps a tensor to a shard whose header has no such tensor
    index_tensor_duplicated  a tensor in the headers of two shards the index names (the later
                           one would silently win)
    index_tensor_unlisted  a tensor in a named shard's header that the index does not map (it
                           loads anyway: transformers reads whole shards)
    index_shard_invalid    a shard whose header cannot be read
    index_shard_unnamed    a locked shard beside the index that the index does not name: its
                           tensors would not load (the model would start from random values)

The faults name the index, the shard and the tensor. Torch-free; reads only headers.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

from weightgate.core.engine.lock import unsafe_reason
from weightgate.core.weights.safetensors_format import SafetensorsError, validate_safetensors

INDEX_SUFFIX = ".safetensors.index.json"
MAX_INDEX_BYTES = 64 * 1024 * 1024
SHOWN = 3   # tensors named per fault before "+N more"


@dataclass
class IndexFault:
    fault: str
    message: str
    shard: str = ""
    tensor: str = ""


def is_index(path: str) -> bool:
    return path.endswith(INDEX_SUFFIX)


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" +{len(names) - SHOWN} more" if len(names) > SHOWN else "")


def check_index(root: Path, index_rel: str, locked: set[str]) -> list[IndexFault]:
    """The faults of the index at `root/index_rel` against the locked paths (relative to root,
    as in the lock) and the named shards' headers; [] when it is sound."""
    path = root / index_rel
    try:
        if path.stat().st_size > MAX_INDEX_BYTES:
            return [IndexFault("index_malformed", f"{index_rel} is over {MAX_INDEX_BYTES >> 20} MiB: not an index")]
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return [IndexFault("index_malformed", f"{index_rel} is not readable JSON: {exc}")]
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        return [IndexFault("index_malformed", f"{index_rel} has no weight_map of tensor -> shard")]

    folder = posixpath.dirname(index_rel)
    faults: list[IndexFault] = []
    by_shard: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            faults.append(IndexFault("index_malformed", f"{index_rel}: tensor {tensor!r} maps to {shard!r}, not a "
                                                        "file name", tensor=str(tensor)))
            continue
        by_shard.setdefault(shard, []).append(str(tensor))

    headers: dict[str, set[str]] = {}
    for shard, tensors in sorted(by_shard.items()):
        reason = unsafe_reason(shard)
        rel = posixpath.join(folder, shard) if folder else shard
        if reason is not None or unsafe_reason(rel) is not None:
            faults.append(IndexFault("index_path_unsafe", f"{index_rel} maps {_some(tensors)} to {shard!r}: "
                                                          f"{reason or unsafe_reason(rel)}", shard, tensors[0]))
            continue
        if rel not in locked:
            faults.append(IndexFault("index_unlocked_shard", f"{index_rel} maps {_some(tensors)} to {shard}, which "
                                                             "weightgate.lock does not list: its bytes were never "
                                                             "verified", shard, tensors[0]))
            continue
        try:
            names = set(validate_safetensors(root / rel).names)
        except (SafetensorsError, OSError) as exc:
            faults.append(IndexFault("index_shard_invalid", f"{index_rel} names {shard}, whose header cannot be "
                                                            f"read: {exc}", shard))
            continue
        headers[shard] = names
        missing = sorted(set(tensors) - names)
        if missing:
            faults.append(IndexFault("index_tensor_missing", f"{index_rel} maps {_some(missing)} to {shard}, whose "
                                                             "header has no such tensor", shard, missing[0]))
        unlisted = sorted(name for name in names if name not in weight_map)
        if unlisted:
            faults.append(IndexFault("index_tensor_unlisted", f"{shard} holds {_some(unlisted)}, which {index_rel} "
                                                              "does not map (it would load anyway)", shard,
                                     unlisted[0]))

    named = {posixpath.join(folder, shard) if folder else shard for shard in by_shard}
    unnamed = sorted(rel for rel in locked if rel.endswith(".safetensors") and posixpath.dirname(rel) == folder
                     and rel not in named)
    if unnamed:
        faults.append(IndexFault("index_shard_unnamed", f"{index_rel} names no tensor of {_some(unnamed)}: "
                                                        "their tensors would not load", unnamed[0]))

    seen: dict[str, str] = {}
    for shard in sorted(headers):
        for name in sorted(headers[shard]):
            if name in seen:
                faults.append(IndexFault("index_tensor_duplicated", f"tensor {name} is in both {seen[name]} and "
                                                                    f"{shard}, which {index_rel} names: one would "
                                                                    "silently replace the other", shard, name))
            else:
                seen[name] = shard
    return faults
