"""The health probe's child process: `python -m weightgate.core.release.health_probe VERSION_DIR WORKSPACE_ROOT`.

Cold by construction (a fresh interpreter): verify the version's files against SHA256SUMS (and
the pinned base an adapter points to), load it with plain transformers (+ peft for an adapter),
exactly as a server would, send one ping prompt, and print one JSON line:
    {"status": "ready" | "failed", "detail", "verify_seconds", "load_seconds", "first_request_ms",
     "warm_request_ms", "answer", "loaded_at", "finished_at"}
Exit code 0 ready, 1 not ready (corrupt files, load error, no answer), 2 bad input. The parent
(core.release.health) owns the timeout (exit 3).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.memory.loading import bnb_config, flushed_subnormals
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.serving import base_dir_of
from weightgate.core.registry.store import VERSION_RE, VersionRef
from weightgate.core.registry.verify import read_sums, version_files
from weightgate.core.release.load import ReleaseCorrupt, verified_version, verify_base

PING = "ping"
MAX_NEW_TOKENS = 8


def _emit(result: dict, code: int) -> int:
    result["finished_at"] = time.time()
    print(json.dumps(result), flush=True)
    return code


def probe(version_dir: Path, workspace_root: Path, *, sizes_only: bool = False, prompt: str = PING) -> tuple[dict, int]:
    result: dict = {"status": "failed", "version": str(version_dir)}
    try:
        manifest = read_manifest(version_dir)
        release = manifest["release"]
        if not VERSION_RE.match(version_dir.name):
            raise InputError("not a version directory (vN)", path=version_dir)
    except (InputError, KeyError) as exc:
        result["detail"] = str(exc)
        return result, 2
    ref = VersionRef(release["name"], version_dir.name, version_dir)
    result["version"] = ref.label

    began = time.perf_counter()
    try:
        _verify(ref, manifest, workspace_root, sizes_only)
    except InputError as exc:
        result["detail"] = exc.message
        return result, 1
    result["verify_seconds"] = round(time.perf_counter() - began, 3)
    result["verified"] = "sizes" if sizes_only else "sha256"

    began = time.perf_counter()
    try:
        model, tokenizer = _load(ref, manifest, workspace_root)
    except Exception as exc:   # any load failure means: not ready
        result["detail"] = f"loading failed: {type(exc).__name__}: {exc}"
        return result, 1
    result["load_seconds"] = round(time.perf_counter() - began, 3)
    result["loaded_at"] = time.time()

    began = time.perf_counter()
    # The shipped precision spec says whether CPU subnormals flush (5x faster decode on real models).
    answer, tokens = _ping(model, tokenizer, prompt, flush=bool(manifest["precision"].get("flush_denormal")))
    result["first_request_ms"] = round((time.perf_counter() - began) * 1000, 1)
    result["answer"], result["answer_tokens"] = answer, tokens
    # A second, warm request: the first pays for lazy initialisation, a server's steady state does not.
    began = time.perf_counter()
    _ping(model, tokenizer, prompt, flush=bool(manifest["precision"].get("flush_denormal")))
    result["warm_request_ms"] = round((time.perf_counter() - began) * 1000, 1)
    if tokens == 0:
        result["detail"] = "the model answered the ping with nothing"
        return result, 1
    result["status"] = "ready"
    result["detail"] = f"answered {prompt!r} with {tokens} token(s)"
    return result, 0


def _verify(ref, manifest: dict, workspace_root: Path, sizes_only: bool) -> None:
    if sizes_only:
        recorded = {f["path"]: f["size"] for f in manifest.get("files", [])}
        listed = read_sums(ref.path)
        on_disk = set(version_files(ref.path))
        problems = [f"{p} (missing)" for p in listed if p not in on_disk]
        problems += [f"{p} (size differs)" for p, size in recorded.items()
                     if p in on_disk and (ref.path / p).stat().st_size != size]
        if problems:
            raise ReleaseCorrupt(f"{ref.label}: " + ", ".join(problems), path=ref.path)
    else:
        verified_version(ref)
    if manifest["release"]["relation"] == "adapter":
        verify_base(manifest, workspace_root, sizes_only=sizes_only)


def _load(ref, manifest: dict, workspace_root: Path):
    import torch  # lazy: torch only where it runs, never at import
    from transformers import (  # lazy: transformers only where it runs, never at import
        AutoModelForCausalLM,
        AutoTokenizer,
    )


    precision = manifest["precision"]
    quant = precision.get("quantization") or {}
    kwargs = {"dtype": getattr(torch, precision.get("dtype") or "float32"), "use_safetensors": True,
              "trust_remote_code": False}
    if quant:
        kwargs["quantization_config"] = bnb_config(quant)
    adapter = manifest["release"]["relation"] == "adapter"
    model_dir = base_dir_of(manifest, workspace_root) if adapter else ref.path
    # Where a server would put it: the GPU when there is one.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if quant:
        kwargs["device_map"] = device
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if not quant:
        model = model.to(device)
    if adapter:
        from peft import PeftModel  # lazy: peft only where it runs, never at import

        model = PeftModel.from_pretrained(model, str(ref.path), is_trainable=False)
    model.eval()
    return model, AutoTokenizer.from_pretrained(ref.path)


def _ping(model, tokenizer, prompt: str, flush: bool = False) -> tuple[str, int]:
    import torch  # lazy: torch only where it runs, never at import


    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    else:
        encoded = tokenizer(prompt, return_tensors="pt")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = {key: value.to(model.device) for key, value in encoded.items()}
    flush = flush and model.device.type == "cpu"
    with flushed_subnormals(torch, flush), torch.inference_mode():
        output = model.generate(**encoded, do_sample=False, max_new_tokens=MAX_NEW_TOKENS, pad_token_id=pad)
    new = output[0, encoded["input_ids"].shape[1]:].tolist()
    stops = {tokenizer.eos_token_id, pad}
    real = [t for t in new if t not in stops]
    return tokenizer.decode(real, skip_special_tokens=True), len(real)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weightgate.core.release.health_probe")
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("workspace_root", type=Path)
    parser.add_argument("--sizes-only", action="store_true")
    parser.add_argument("--prompt", default=PING)
    args = parser.parse_args(argv)
    result, code = probe(args.version_dir.resolve(), args.workspace_root.resolve(), sizes_only=args.sizes_only,
                         prompt=args.prompt)
    return _emit(result, code)


if __name__ == "__main__":
    sys.exit(main())
