"""The commands that serve a shipped version as it was evaluated: `transformers serve`, vLLM,
SGLang, and the plain transformers (+ peft) load.

From the manifest alone (torch-free): a merged or base version is a model directory; an adapter
version is the locked base plus a LoRA directory; a quantized one is the 16-bit weights that the
engine quantizes in flight, as weightgate's own loader did when it was evaluated.

A command is printed only when the engine would serve what was evaluated. Otherwise the engine's
entry is None and `refused[engine]` says why and what would work instead; the record of
ship.serving and the model card carry that reason. Why engines refuse:
- vLLM's and SGLang's in-flight bitsandbytes quantization is 4-bit NF4 only, so an int8 (or fp4)
  version would be served at another precision than the one its eval results are for;
- `transformers serve` loads a model directory (config.json + weights): it cannot load a PEFT
  adapter directory, and its `bnb-4bit` is NF4 with double quantization only.
Adapters get distinct names: the base is served as NAME-base and the LoRA as NAME, so a request for
NAME always gets the adapter, whatever an engine version does with a name given twice.
"""

from __future__ import annotations

import shlex
from pathlib import Path

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ENGINES = ("transformers_serve", "vllm", "sglang")
DEFAULT_HOST = "127.0.0.1"
PORTS = {"transformers_serve": 8000, "vllm": 8000, "sglang": 30000}
# vLLM accepts these maximum LoRA ranks (--max-lora-rank choices).
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def base_dir_of(manifest: dict, workspace_root: Path) -> Path:
    where = Path(str(manifest["base"].get("local_dir") or manifest["base"].get("repo")))
    return where if where.is_absolute() else workspace_root / where


def served_names(manifest: dict) -> dict:
    """The model names clients ask for: the release's name is always what was evaluated."""
    name = manifest["release"]["name"]
    if manifest["release"]["relation"] == "adapter":
        return {"model": name, "base": f"{name}-base", "lora": name}
    return {"model": name}


def serve_argv(manifest: dict, version_dir: Path, workspace_root: Path, *, host: str = DEFAULT_HOST,
               ports: dict | None = None) -> tuple[dict, dict]:
    """({engine: argv list or None}, {engine: why refused}) for ENGINES."""
    ports = {**PORTS, **(ports or {})}
    builders = {"transformers_serve": _transformers_serve, "vllm": _vllm, "sglang": _sglang}
    argv, refused = {}, {}
    for engine in ENGINES:
        args, why = builders[engine](_Version(manifest, Path(version_dir), workspace_root), host, ports[engine])
        argv[engine] = args
        if why:
            refused[engine] = why
    return argv, refused


def serve_commands(manifest: dict, version_dir: Path, workspace_root: Path, *, host: str = DEFAULT_HOST) -> dict:
    """Shell commands per engine (None where refused), the refusals, the served names, and the
    plain transformers load (`transformers`)."""
    argv, refused = serve_argv(manifest, version_dir, workspace_root, host=host)
    version = _Version(manifest, Path(version_dir), workspace_root)
    commands: dict = {engine: shlex.join(args) if args else None for engine, args in argv.items()}
    commands["transformers"] = transformers_snippet(version.relation, version.dir, version.base_ref,
                                                    manifest["precision"])
    commands["refused"] = refused
    commands["served_names"] = served_names(manifest)
    return commands


class _Version:
    """What the builders read from a manifest."""

    def __init__(self, manifest: dict, version_dir: Path, workspace_root: Path) -> None:
        release, precision, base = manifest["release"], manifest["precision"], manifest["base"]
        self.manifest = manifest
        self.relation = release["relation"]
        self.names = served_names(manifest)
        self.quant = precision.get("quantization") or {}
        self.precision = precision.get("name")
        # A quantized version keeps its 16-bit weights: the engine's dtype is that of the non-quantized parts.
        # precision.dtype is a torch dtype name (float32, bfloat16, ...), what weightgate's own loader used.
        self.dtype = str(precision.get("dtype") or ("float16" if self.quant else DTYPES.get(self.precision, "auto")))
        self.context = int(manifest.get("serving", {}).get("context_length") or 0)
        self.dir = version_dir
        self.hub_commit = base.get("commit") if base.get("kind") == "hub" else None
        self.base_ref = base.get("repo") if base.get("kind") == "hub" else str(base_dir_of(manifest, workspace_root))
        self.model = self.base_ref if self.relation == "adapter" else str(version_dir)
        self.rank = int((manifest.get("adapter", {}).get("config") or {}).get("r") or 16)

    @property
    def bits(self):
        return self.quant.get("bits")

    def inflight_4bit_nf4(self) -> bool:
        return self.bits == 4 and self.quant.get("quant_type") == "nf4"


def _lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds the adapter's."""
    return next((allowed for allowed in LORA_RANKS if rank <= allowed), rank)


def _inflight_refusal(v: _Version, engine: str) -> str | None:
    if not v.quant or v.inflight_4bit_nf4():
        return None
    what = "int8" if v.bits == 8 else f"{v.bits}-bit {v.quant.get('quant_type') or ''}".strip()
    return (f"{engine}'s in-flight bitsandbytes quantization is 4-bit NF4, but this version was evaluated at {what} "
            f"({v.precision}): {engine} would serve another precision than the one its eval results are for. "
            f"Instead: `transformers serve` with --quantization bnb-8bit serves int8 as evaluated"
            if v.bits == 8 else
            f"{engine}'s in-flight bitsandbytes quantization is 4-bit NF4, but this version was evaluated at {what} "
            f"({v.precision}). Instead: ship and evaluate it at nf4, or serve the 16-bit weights without "
            "quantization (more memory) after evaluating that precision")


def _vllm(v: _Version, host: str, port: int) -> tuple[list | None, str | None]:
    why = _inflight_refusal(v, "vLLM")
    if why:
        return None, why + ("; or serve the 16-bit weights with vLLM after evaluating them at fp16/bf16"
                            if v.bits == 8 else "")
    args = ["vllm", "serve", v.model, "--host", host, "--port", str(port), "--dtype", v.dtype]
    if v.relation == "adapter":
        if v.hub_commit:
            args += ["--revision", v.hub_commit]
        args += ["--served-model-name", v.names["base"], "--enable-lora", "--lora-modules",
                 f"{v.names['lora']}={v.dir}", "--max-lora-rank", str(_lora_rank(v.rank))]
    else:
        args += ["--served-model-name", v.names["model"]]
    if v.quant:
        args += ["--quantization", "bitsandbytes"]
    if v.context:
        args += ["--max-model-len", str(v.context)]
    return args, None


def _sglang(v: _Version, host: str, port: int) -> tuple[list | None, str | None]:
    why = _inflight_refusal(v, "SGLang")
    if why:
        return None, why
    args = ["python", "-m", "sglang.launch_server", "--model-path", v.model, "--host", host, "--port", str(port),
            "--dtype", v.dtype]
    if v.relation == "adapter":
        if v.hub_commit:
            args += ["--revision", v.hub_commit]
        args += ["--served-model-name", v.names["base"], "--enable-lora", "--lora-paths",
                 f"{v.names['lora']}={v.dir}", "--max-lora-rank", str(v.rank)]
    else:
        args += ["--served-model-name", v.names["model"]]
    if v.quant:
        args += ["--quantization", "bitsandbytes"]
    if v.context:
        args += ["--context-length", str(v.context)]
    return args, None


def transformers_serve_refusal(manifest: dict) -> str | None:
    """Why `transformers serve` cannot serve this version as evaluated (None: it can)."""
    relation = manifest["release"]["relation"]
    quant = manifest["precision"].get("quantization") or {}
    if relation == "adapter":
        return ("`transformers serve` loads a model directory (config.json + weights) and cannot load a PEFT "
                "adapter directory on top of a base. Instead: ship the version merged (weightgate release ship "
                "--merge, 16/32-bit only) and serve that, or serve base + LoRA with the vLLM or SGLang command")
    if quant and quant.get("bits") == 4 and not (quant.get("quant_type") == "nf4" and quant.get("double_quant")):
        return (f"`transformers serve --quantization bnb-4bit` is NF4 with double quantization, but this version was "
                f"evaluated at 4-bit {quant.get('quant_type')} (double quant {bool(quant.get('double_quant'))}). "
                "Instead: evaluate and ship at nf4 (weightgate's nf4 uses double quantization)")
    return None


def _transformers_serve(v: _Version, host: str, port: int) -> tuple[list | None, str | None]:
    why = transformers_serve_refusal(v.manifest)
    if why:
        return None, why
    return ["transformers", "serve", *transformers_serve_options(v.manifest, v.dir, host=host, port=port)], None


def transformers_serve_options(manifest: dict, version_dir: Path, *, host: str = DEFAULT_HOST,
                               port: int = PORTS["transformers_serve"]) -> list[str]:
    """`transformers serve` arguments after the subcommand: the version directory preloaded (the only model
    served), the evaluated dtype and in-flight quantization, loopback unless asked."""
    v = _Version(manifest, Path(version_dir), Path("."))
    args = [str(version_dir), "--host", host, "--port", str(port), "--dtype", v.dtype]
    if v.quant:
        args += ["--quantization", "bnb-8bit" if v.bits == 8 else "bnb-4bit"]
    if v.context:
        args += ["--max-model-len", str(v.context)]
    return args


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
