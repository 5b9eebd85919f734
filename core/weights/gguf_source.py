"""A GGUF source: the file you gave, hashed (against its published sha256 when one is known) and
its header checked, plus the safetensors model transformers loads, converted from it once and
cached by the GGUF's sha256. Both go into one weightgate.lock, so phase 2 re-verifies the bytes
you were given and the bytes that run:

    local_dir = <entry>     files  gguf/<name>   the GGUF (in the cache: a symlink to your file)
                                   model/...     the converted safetensors model
    load_dir  = "model"     later phases load <entry>/model

<entry> is the demo's cache entry for the demo model (its set-up job already converted it), else
<cache>/gguf/<sha256[:16]>/. Converting takes tens of seconds on a small model: `weightgate weights fetch`
runs it as the `lock_gguf` job. A published hash that does not match refuses the file before
anything is converted or locked.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.hashing import hash_files
from weightgate.core.engine.lock import HASH_COMPUTED, HASH_PUBLISHED, LockedFile, ModelLock, write_lock
from weightgate.core.engine.timers import LOADING, timed
from weightgate.core.engine.workspace import Workspace, default_cache_root
from weightgate.core.weights.checks import record_local_lock
from weightgate.core.weights.gguf_format import validate_gguf
from weightgate.core.weights.metadata import fetch_metadata
from weightgate.core.weights.sources import plan_files

MARKER = "weightgate-gguf.json"          # in <entry>/model: which GGUF it was converted from
DEMO_MARKER = "weightgate-demo.json"     # the demo model's provenance (core.demo.model)
LOAD_DIR = "model"

Log = Callable[[str], None]
Stage = Callable[[str, int, int], None]   # (stage, done, total)
STAGES = ("hash", "check header", "convert", "hash the model", "lock")


def _converted_from(model_dir: Path) -> str:
    """The GGUF sha256 a converted model directory records, or ''."""
    for name, key in ((MARKER, ("gguf_sha256",)), (DEMO_MARKER, ("source", "gguf_sha256"))):
        try:
            record = json.loads((model_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for part in key:
            record = record.get(part) if isinstance(record, dict) else None
        if isinstance(record, str):
            return record
    return ""


def _complete(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors"))


def find_twin(gguf_path: Path, sha256: str, cache_root: Path) -> Path | None:
    """An entry whose model/ was converted from these exact bytes: the GGUF's own entry (the demo's
    layout <entry>/gguf/<name> beside <entry>/model), else the cache's."""
    for entry in (gguf_path.parent.parent, cache_root / "gguf" / sha256[:16]):
        model = entry / LOAD_DIR
        if _complete(model) and _converted_from(model) == sha256 and (entry / "gguf" / gguf_path.name).exists():
            return entry
    return None


def build_twin(gguf_path: Path, sha256: str, cache_root: Path, *, log: Log, stage: Callable[[str], None]) -> Path:
    """Convert into a staging directory, then publish it as <cache>/gguf/<sha[:16]> in one rename."""

    entry = cache_root / "gguf" / sha256[:16]
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.partial-", dir=entry.parent))
    try:
        (staging / "gguf").mkdir()
        os.symlink(gguf_path.resolve(), staging / "gguf" / gguf_path.name)
        seconds = convert_gguf_to_safetensors(gguf_path, staging / LOAD_DIR, log=log,
                                              on_step=lambda name: stage(f"convert: {name}"))
        record = {"gguf": str(gguf_path.resolve()), "gguf_sha256": sha256, "dtype": DTYPE,
                  "seconds": seconds, "created": time.time()}
        (staging / LOAD_DIR / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if entry.exists():          # an incomplete entry from an older run: replace it
            shutil.rmtree(entry)
        os.rename(staging, entry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return entry


def lock_gguf_source(ws: Workspace, path: str | os.PathLike, *, published_sha256: str = "", provenance: str = "",
                     origin: str = "", cache_dir: str | os.PathLike | None = None, log: Log | None = None,
                     on_stage: Stage | None = None, progress=None) -> ModelLock:
    """Hash, check, convert (cached) and lock a GGUF file. See the module docstring."""

    log = log or (lambda message: None)
    total = len(STAGES)

    def stage(name: str, index: int) -> None:
        if on_stage:
            on_stage(name, index, total)

    gguf_path = Path(path).expanduser().resolve()
    if not gguf_path.is_file():
        raise InputError("no such GGUF file", path=gguf_path, hint="give the path of a .gguf file")
    stage("hash", 0)
    sha = hash_files([gguf_path], progress=progress)[gguf_path]
    expected = published_sha256.strip().lower().removeprefix("sha256:")
    if expected and sha != expected:
        raise InputError(f"{gguf_path.name}: sha256 {sha} is not the published {expected}", path=gguf_path,
                         hint="these are not the published bytes: download the file again from its source; "
                              "nothing was converted or locked")
    stage("check header", 1)
    validate_gguf(gguf_path)
    stage("convert", 2)
    cache_root = Path(cache_dir).expanduser() if cache_dir else default_cache_root()
    entry = find_twin(gguf_path, sha, cache_root)
    if entry is None:
        log(f"converting {gguf_path.name} to safetensors (once: cached by its sha256)")
        entry = build_twin(gguf_path, sha, cache_root, log=log, stage=lambda name: stage(name, 2))
    else:
        log(f"{gguf_path.name}: converted model found in {entry / LOAD_DIR} (cached)")
    stage("hash the model", 3)
    model_dir = entry / LOAD_DIR
    meta = fetch_metadata(str(model_dir))
    wanted, _skipped = plan_files([info.path for info in meta.files])
    model_files = {f"{LOAD_DIR}/{name}": model_dir / name for name in wanted}
    hashes = hash_files(list(model_files.values()), progress=progress)
    stage("lock", 4)
    now = time.time()
    in_entry = entry / "gguf" / gguf_path.name
    files = [LockedFile(path=f"gguf/{gguf_path.name}", size=gguf_path.stat().st_size, sha256=sha,
                        hash_source=HASH_PUBLISHED if expected else HASH_COMPUTED, verified_at=now,
                        mtime=in_entry.stat().st_mtime)]
    for rel, file_path in model_files.items():
        stat = file_path.stat()
        files.append(LockedFile(path=rel, size=stat.st_size, sha256=hashes[file_path], hash_source=HASH_COMPUTED,
                                verified_at=now, mtime=stat.st_mtime))
    gguf_meta = fetch_metadata(str(gguf_path))
    lock = ModelLock(kind="gguf", source=str(gguf_path), local_dir=str(entry), load_dir=LOAD_DIR,
                     license=gguf_meta.license or meta.license, remote_code=meta.remote_code,
                     provenance=provenance or f"converted from {gguf_path.name} (sha256 {sha[:16]}…)",
                     origin=origin, files=files)
    write_lock(ws, lock)

    record_local_lock(ws, lock)
    return lock


# Q4_1 / Q8_0 blocks dequantize to scale * q + min computed in float32: float32 holds them
# exactly. bfloat16 would round ~82% of the weights again (up to 0.39% relative), float16 ~48%
# (up to 0.05%): a second, silent quantization. The price is ~540 MB on disk instead of ~270 MB;
# choosing a smaller precision is phase 3's job, measured, not a side effect of the conversion.
DTYPE = "float32"


class ConversionError(InputError):
    """transformers could not load or save the model (e.g. the gguf package is missing)."""


def convert_gguf_to_safetensors(gguf_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                                dtype: str = DTYPE, log: Log | None = None,
                                on_step: Callable[[str], None] | None = None) -> dict[str, float]:
    """Dequantize the GGUF with transformers and save model + tokenizer as safetensors into `out_dir`.

    Returns wall seconds per step ({"load-gguf": .., "save": ..}); `on_step` hears each step's
    name as it starts. Slow (~40 s): run it in a job.
    """
    log = log or (lambda message: None)
    on_step = on_step or (lambda name: None)
    on_step("load-gguf")  # before the imports: they take seconds too
    began = time.perf_counter()
    gguf_path = Path(gguf_path)
    out = Path(out_dir)
    try:
        import gguf  # noqa: F401 - transformers needs it to read GGUF; fail here with the fix
    except ImportError:
        raise ConversionError("the gguf package is missing: transformers needs it to read GGUF files",
                              path=gguf_path, hint="pip install 'gguf>=0.10'") from None
    import torch  # lazy: torch only where it runs, never at import
    from transformers import (  # lazy: transformers only where it runs, never at import
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
    )

    torch_dtype = getattr(torch, dtype)
    seconds: dict[str, float] = {}
    try:
        with timed(LOADING):
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                          dtype=torch_dtype)
    except Exception as exc:  # noqa: BLE001 - any load failure is the same advice
        raise ConversionError(f"transformers could not load the GGUF: {type(exc).__name__}: {exc}", path=gguf_path,
                              hint="check the file's sha256; upgrade transformers and gguf") from exc
    seconds["load-gguf"] = time.perf_counter() - began
    log(f"loaded the GGUF in {seconds['load-gguf']:.1f} s")

    on_step("save")
    began = time.perf_counter()
    # A GGUF-loaded model refuses save_pretrained: copy its weights into a plain model built
    # from the same config minus the GGUF quantization entry.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(loaded.config).from_dict(config_dict)
    config.dtype = dtype
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # transformers 5 writes safetensors only
    # The GGUF gives no limit (transformers then says 1e30): the model's context is the limit.
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out)
    seconds["save"] = time.perf_counter() - began
    log(f"saved the model ({dtype}) in {seconds['save']:.1f} s")
    return seconds
