"""The commands that serve a shipped version: plain transformers (+ peft), vLLM and TGI.

From the manifest alone (torch-free): a merged or base version is a model directory; an adapter
version is the locked base plus a LoRA directory; a quantized one is loaded with bitsandbytes
from the 16-bit weights (vLLM and TGI quantize in flight).
"""

from __future__ import annotations

import shlex
from pathlib import Path

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def base_dir_of(manifest: dict, workspace_root: Path) -> Path:
    where = Path(str(manifest["base"].get("local_dir") or manifest["base"].get("repo")))
    return where if where.is_absolute() else workspace_root / where


def serve_commands(manifest: dict, version_dir: Path, workspace_root: Path) -> dict:
    release, precision = manifest["release"], manifest["precision"]
    relation = release["relation"]
    name = release["name"]
    quant = precision.get("quantization") or {}
    dtype = "float16" if quant else DTYPES.get(precision.get("name"), "auto")
    context = int(manifest.get("serving", {}).get("context_length") or 0)
    version_dir = Path(version_dir)
    base = manifest["base"]
    base_ref = base.get("repo") if base.get("kind") == "hub" else str(base_dir_of(manifest, workspace_root))
    model = base_ref if relation == "adapter" else str(version_dir)
    q = shlex.quote

    vllm = ["vllm", "serve", q(model), "--dtype", dtype, "--served-model-name", q(name)]
    if relation == "adapter":
        if base.get("kind") == "hub" and base.get("commit"):
            vllm += ["--revision", base["commit"]]
        rank = int((manifest.get("adapter", {}).get("config") or {}).get("r") or 16)
        vllm += ["--enable-lora", "--lora-modules", q(f"{name}={version_dir}"), "--max-lora-rank", str(_lora_rank(rank))]
    if quant:
        vllm += ["--quantization", "bitsandbytes"]
    if context:
        vllm += ["--max-model-len", str(context)]

    tgi = ["text-generation-launcher", "--model-id", q(model)]
    if relation == "adapter":
        if base.get("kind") == "hub" and base.get("commit"):
            tgi += ["--revision", base["commit"]]
        tgi += ["--lora-adapters", q(f"{name}={version_dir}")]
    if quant:
        tgi += ["--quantize", "bitsandbytes-nf4" if quant.get("bits") == 4 else "bitsandbytes"]
    elif dtype in ("bfloat16", "float16"):
        tgi += ["--dtype", dtype]
    if context:
        tgi += ["--max-total-tokens", str(context), "--max-input-tokens", str(max(1, context - 1))]

    return {"vllm": " ".join(vllm), "tgi": " ".join(tgi), "transformers": transformers_snippet(
        relation, version_dir, base_ref, precision)}


def _lora_rank(rank: int) -> int:
    """vLLM accepts these maximum LoRA ranks; the smallest that holds the adapter's."""
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    return rank


def transformers_snippet(relation: str, version_dir: Path, base_ref: str, precision: dict) -> str:
    dtype = DTYPES.get(precision.get("name"), "auto")
    quant = precision.get("quantization") or {}
    load = f"dtype=torch.{dtype}" if dtype != "auto" else 'dtype="auto"'
    if quant:
        bits = quant.get("bits")
        load = ("quantization_config=BitsAndBytesConfig(load_in_8bit=True)" if bits == 8 else
                f"quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type={quant.get('quant_type')!r}, "
                f"bnb_4bit_use_double_quant={bool(quant.get('double_quant'))})")
    if relation == "adapter":
        return (f"model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({base_ref!r}, {load}, "
                f"use_safetensors=True), {str(version_dir)!r})")
    return f"model = AutoModelForCausalLM.from_pretrained({str(version_dir)!r}, {load}, use_safetensors=True)"
