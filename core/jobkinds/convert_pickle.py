"""`convert_pickle`: turn one trusted pickle checkpoint into safetensors, in a job process.

params:
    path        the pickle file (relative to the workspace, or absolute)
    output_dir  where to write <stem>.safetensors (default: next to the input)
    key         optional dotted key of the sub-dict to convert (e.g. "state_dict", "model")
    overwrite   replace an existing output (default: no)

The trust and the scan are checked again here, in the process that loads: the TUI's earlier
check proves nothing about the bytes on disk now. Hash, scan and load go through one open
handle. The load is `torch.load(weights_only=True)`, never a plain unpickle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.atomic import atomic_output
from core.errors import InputError
from core.hashing import sha256_file
from core.jobs import JobContext
from core.pickle_policy import check_pickle_handle
from core.workspace import open_workspace


def run(ctx: JobContext) -> dict:
    if ctx.workspace is None:
        raise InputError("convert_pickle needs a workspace: the trust lives in its weightgate.toml")
    ws = open_workspace(ctx.workspace)
    raw = ctx.params.get("path")
    if not raw:
        raise InputError("convert_pickle: params.path is required")
    source = Path(os.path.abspath(Path(raw) if Path(raw).is_absolute() else ws.root / raw))
    out_dir = Path(ctx.params["output_dir"]) if ctx.params.get("output_dir") else source.parent
    if not out_dir.is_absolute():
        out_dir = ws.root / out_dir
    output = Path(os.path.abspath(out_dir / f"{source.stem}.safetensors"))
    if output.resolve() == source.resolve():
        raise InputError("the output would overwrite the input", path=source)
    if output.exists() and not ctx.params.get("overwrite"):
        raise InputError("the output already exists", path=output, hint="pass overwrite=true to replace it")

    with open(source, "rb") as handle:
        scan, source_sha = check_pickle_handle(ws, source, handle)  # raises PickleRefused
        ctx.log(f"{source.name}: trusted, sha256 {source_sha}; scan clean "
                f"({scan.format}, {len(scan.imports)} allowlisted imports)")
        import torch  # only now: a refused file never even costs the torch import

        handle.seek(0)
        loaded = torch.load(handle, map_location="cpu", weights_only=True)

    selected = _select(loaded, ctx.params.get("key"))
    tensors = flatten_state_dict(selected)
    prepared, cloned = _prepare(tensors)
    if cloned:
        ctx.log(f"cloned {len(cloned)} tensor(s) sharing storage (safetensors stores no aliases): "
                + ", ".join(cloned[:8]) + (" ..." if len(cloned) > 8 else ""))
    metadata = {"format": "pt", "source": source.name, "source_sha256": source_sha}
    _save_atomic(prepared, output, metadata)
    _verify(output, tensors, ctx)
    output_sha = sha256_file(output)
    ctx.artifact(output, label=f"safetensors sha256:{output_sha}")
    return {"output": str(output), "sha256": output_sha, "source": str(source), "source_sha256": source_sha,
            "tensors": len(prepared), "cloned_shared": cloned}


def flatten_state_dict(obj: Any, prefix: str = "") -> dict:
    """{"a": {"b": t}} -> {"a.b": t}; anything but string-keyed dicts of tensors is refused."""
    import torch

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


def _select(obj: Any, key: str | None) -> Any:
    if not key:
        return obj
    for part in str(key).split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise InputError(f"no key {part!r} in the checkpoint (looking for {key!r})")
        obj = obj[part]
    return obj


def _prepare(tensors: dict) -> tuple[dict, list[str]]:
    """Plain, contiguous, unaliased CPU tensors; shared-storage ones (tied weights) cloned."""
    import torch

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
    import torch

    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type != "cpu":
        raise InputError(f"a {tensor.layout}/{tensor.dtype} tensor on {tensor.device} cannot be stored in safetensors")


def _storage_id(tensor: Any) -> tuple:
    storage = tensor.untyped_storage()
    return (storage.data_ptr(), storage.nbytes())


def _save_atomic(tensors: dict, output: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    with atomic_output(output) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _verify(output: Path, originals: dict, ctx: JobContext) -> None:
    """Read every tensor back and compare bit for bit (NaNs included), one at a time."""
    import torch
    from safetensors import safe_open

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
    import torch

    return tensor.contiguous().reshape(-1).view(torch.uint8)
