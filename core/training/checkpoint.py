"""Atomic checkpoints, the best adapter, and the restore check.

    <run>/checkpoints/step-000040/
        adapter.safetensors   the trainable (LoRA) tensors, by parameter name
        optimizer.pt          the optimizer's state_dict (AdamW's exp_avg, exp_avg_sq, step per parameter)
        scaler.pt             fp16 runs: the gradient scaler's state (scale, growth tracker)
        rng.json              python / numpy RNG states; torch's (CPU and CUDA) in rng.pt
        state.json            step, epoch, position in the data order, best val loss, loss minimum
        manifest.json         sha256 + size of every file above: written last
    <run>/checkpoints/latest.json   which step directory to resume from (atomic replace)
    <run>/best/                     the best adapter by validation loss, peft format

A checkpoint is written into a hidden temp directory, every file fsynced, the manifest last,
then renamed into place and only then named in latest.json. A SIGKILL at any moment leaves
either the previous checkpoint as the latest or the new one complete; a temp directory left
behind is never read and is swept at the next save. Loading re-hashes every file against the
manifest, so a checkpoint damaged on disk later is refused rather than half-restored.

The learning-rate schedule is a pure function of the step (see core.training.loop), so the
step in state.json is the scheduler's whole state.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable

from weightgate.core.engine.atomic import fsync_dir, write_atomic
from weightgate.core.engine.errors import InputError

MANIFEST = "manifest.json"
LATEST = "latest.json"
FILES = ("adapter.safetensors", "optimizer.pt", "rng.pt", "rng.json", "state.json")
SCALER = "scaler.pt"
KEEP = 2   # step checkpoints kept on disk (the latest and the one before, in case the latest is damaged)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def adapter_state(model: Any) -> dict:
    return {name: p.detach().to("cpu").contiguous().clone() for name, p in model.named_parameters() if p.requires_grad}


def rng_state() -> tuple[dict, dict]:
    """(JSON-able python/numpy states, torch tensors)."""
    import numpy as np  # lazy: numpy only where it runs, never at import
    import torch  # lazy: torch only where it runs, never at import

    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    plain = {"python": [version, list(internal), gauss],
             "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # This process's GPU only (a torchrun worker has one): touching every GPU's generator
        # would open a CUDA context on each of them, and a CPU run must not start CUDA at all.
        tensors["cuda"] = torch.cuda.get_rng_state()
    return plain, tensors


def set_rng_state(plain: dict, tensors: dict) -> None:
    import numpy as np  # lazy: numpy only where it runs, never at import
    import torch  # lazy: torch only where it runs, never at import

    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = tensors.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):   # written by an older version: every GPU's state
            torch.cuda.set_rng_state_all(cuda)
        else:
            torch.cuda.set_rng_state(cuda)


def save_checkpoint(root: Path, step: int, model: Any, optimizer: Any, state: dict, *, scaler: Any = None) -> Path:
    """Write step `step`'s checkpoint atomically; return its directory."""
    import torch  # lazy: torch only where it runs, never at import
    from safetensors.torch import save_file  # lazy: safetensors only where it runs, never at import

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _sweep_temp(root)
    name = f"step-{step:06d}"
    tmp = root / f".tmp-{name}-{secrets.token_hex(3)}"
    tmp.mkdir()
    save_file(adapter_state(model), str(tmp / "adapter.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    plain, tensors = rng_state()
    torch.save(tensors, tmp / "rng.pt")
    (tmp / "rng.json").write_text(json.dumps(plain))
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    files = FILES
    if scaler is not None:
        torch.save(scaler.state_dict(), tmp / SCALER)
        files = (*FILES, SCALER)
    manifest = {}
    for file in files:
        _fsync_file(tmp / file)
        manifest[file] = {"sha256": _sha256(tmp / file), "size": (tmp / file).stat().st_size}
    (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": manifest}, indent=2))
    _fsync_file(tmp / MANIFEST)
    fsync_dir(tmp)
    final = root / name
    if final.exists():   # the same step written again after a resume: replace it whole
        trash = root / f".tmp-old-{name}-{secrets.token_hex(3)}"
        final.rename(trash)
        final_replaced = trash
    else:
        final_replaced = None
    tmp.rename(final)
    fsync_dir(root)
    write_atomic(root / LATEST, json.dumps({"step": step, "dir": name}) + "\n")
    if final_replaced is not None:
        shutil.rmtree(final_replaced, ignore_errors=True)
    _prune(root, keep=KEEP)
    return final


def _sweep_temp(root: Path) -> None:
    for leftover in root.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def verify_checkpoint(directory: Path) -> dict:
    """The manifest, after checking every file's size and sha256 (InputError if any differs)."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        raise InputError("checkpoint has no readable manifest: it was never completed", path=directory,
                         hint="resume from the checkpoint before it (weightgate keeps two)") from None
    for file, expected in manifest["files"].items():
        path = directory / file
        if not path.is_file() or path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
            raise InputError(f"checkpoint file {file} does not match its manifest (damaged after it was written)",
                             path=path, hint="resume from the checkpoint before it (weightgate keeps two)")
    return manifest


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint: the one latest.json names, else the newest that verifies."""
    root = Path(root)
    try:
        named = root / json.loads((root / LATEST).read_text())["dir"]
        verify_checkpoint(named)
        return named
    except (OSError, ValueError, KeyError, InputError):
        pass
    for candidate in sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True):
        try:
            verify_checkpoint(candidate)
            return candidate
        except InputError:
            continue
    return None


def load_checkpoint(directory: Path, model: Any, optimizer: Any, *, restore_rng: bool = True,
                    scaler: Any = None) -> dict:
    """Put the checkpoint's adapter, optimizer state, gradient scaler (and RNG) back; return its
    state.json. An fp16 run's checkpoint without the scaler's state is refused: resuming at
    another scale would not continue the run exactly."""
    import torch  # lazy: torch only where it runs, never at import
    from safetensors.torch import load_file  # lazy: safetensors only where it runs, never at import

    directory = Path(directory)
    verify_checkpoint(directory)
    tensors = load_file(str(directory / "adapter.safetensors"))
    params = dict(model.named_parameters())
    missing = [name for name, p in params.items() if p.requires_grad and name not in tensors]
    unknown = [name for name in tensors if name not in params]
    if missing or unknown:
        raise InputError(f"checkpoint does not fit this model: missing {missing[:3]}, unknown {unknown[:3]}",
                         path=directory, hint="resume with the same model and [training] settings")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    # Onto the CPU first: load_state_dict moves each state tensor to its parameter's device (a
    # rank on cuda:1 must not materialise rank 0's cuda:0 tensors on cuda:0).
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True, map_location="cpu"))
    if scaler is not None:
        if not (directory / SCALER).is_file():
            raise InputError("checkpoint has no gradient scaler state, and this run trains at fp16 with one",
                             path=directory, hint="resume with the precision the run started with")
        scaler.load_state_dict(torch.load(directory / SCALER, weights_only=True))
    if restore_rng:
        set_rng_state(json.loads((directory / "rng.json").read_text()),
                      torch.load(directory / "rng.pt", weights_only=True, map_location="cpu"))
    return json.loads((directory / "state.json").read_text())


def save_best(run_dir: Path, model: Any) -> Path:
    """The adapter in peft format (adapter_config.json + adapter_model.safetensors) as <run>/best,
    replaced atomically: written beside, then swapped by renames."""
    run_dir = Path(run_dir)
    best = run_dir / "best"
    tmp = run_dir / f".best-tmp-{secrets.token_hex(3)}"
    model.save_pretrained(str(tmp))
    for file in tmp.iterdir():
        _fsync_file(file)
    fsync_dir(tmp)
    old = run_dir / ".best-old"
    if old.exists():
        shutil.rmtree(old)
    if best.exists():
        best.rename(old)
    tmp.rename(best)
    fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)
    return best


def recover_best(run_dir: Path) -> None:
    """A SIGKILL between the two renames of save_best leaves only .best-old: put it back."""
    run_dir = Path(run_dir)
    if not (run_dir / "best").exists() and (run_dir / ".best-old").exists():
        (run_dir / ".best-old").rename(run_dir / "best")
    for leftover in run_dir.glob(".best-tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


# --- the restore check ----------------------------------------------------------------------


def _differences(expected: Any, actual: Any, where: str, out: list[str]) -> None:
    import torch  # lazy: torch only where it runs, never at import

    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor) or expected.dtype != actual.dtype or expected.shape != actual.shape:
            out.append(f"{where}: type, dtype or shape differs")
        elif not torch.equal(expected.view(torch.uint8) if expected.dtype != torch.bool and expected.dim() else expected,
                             actual.view(torch.uint8) if actual.dtype != torch.bool and actual.dim() else actual):
            out.append(f"{where}: values differ")
    elif isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            out.append(f"{where}: keys differ")
            return
        for key in expected:
            _differences(expected[key], actual[key], f"{where}.{key}", out)
    elif isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(expected) != len(actual):
            out.append(f"{where}: length differs")
            return
        for index, (a, b) in enumerate(zip(expected, actual)):
            _differences(a, b, f"{where}[{index}]", out)
    elif expected != actual:
        out.append(f"{where}: {expected!r} != {actual!r}")


def check_restore(directory: Path, model: Any, optimizer: Any, build_fresh: Callable[[], tuple[Any, Any]]) -> dict:
    """Restore `directory` into a fresh model + optimizer from `build_fresh()` and compare the
    adapter tensors and the optimizer state with the live ones bit for bit."""
    fresh_model, fresh_optimizer = build_fresh()
    load_checkpoint(directory, fresh_model, fresh_optimizer, restore_rng=False)
    problems: list[str] = []
    _differences(adapter_state(model), adapter_state(fresh_model), "adapter", problems)
    _differences(optimizer.state_dict(), fresh_optimizer.state_dict(), "optimizer", problems)
    tensors = len(adapter_state(model))
    states = sum(len(v) for v in optimizer.state_dict()["state"].values())
    return {"ok": not problems, "checkpoint": str(directory), "adapter_tensors": tensors,
            "optimizer_tensors": states, "differences": problems[:20]}


def check_scaler_restore(directory: Path, scaler: Any, make_scaler: Callable[[], Any], result: dict) -> dict:
    """`result` of check_restore, with the gradient scaler's state restored into a fresh scaler
    and compared with the live one (scale, growth tracker and factors)."""
    import torch  # lazy: torch only where it runs, never at import

    fresh = make_scaler()
    fresh.load_state_dict(torch.load(Path(directory) / SCALER, weights_only=True))
    problems: list[str] = []
    _differences(scaler.state_dict(), fresh.state_dict(), "scaler", problems)
    differences = result["differences"] + problems
    return {**result, "ok": result["ok"] and not problems, "differences": differences[:20], "scaler": True}
