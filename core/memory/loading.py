"""Load a model at a precision (optionally with a LoRA adapter): what a precision name means
(dtype, and the bitsandbytes quantization for int8 / nf4 / fp4, by device), the loader, and the
CPU's subnormal flushing that keeps fp32 training fast.

torch / transformers / peft / bitsandbytes are imported inside functions only: the helpers that
describe a precision are used torch-free by the run identity (core.evaluation.runner), the
memory estimate and the status checks. Generation is evaluation/generation.py.
"""

from __future__ import annotations

import ctypes
import json
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.timers import LOADING, timed
from weightgate.core.memory.capability import capability_for, half_choice, refuse_bf16

# Counts model.generate calls in this process: tests prove that re-scoring generates nothing.
CALLS = {"generate": 0, "load": 0}

CANONICAL = ("fp32", "bf16", "fp16", "int8", "nf4", "fp4")
ALIASES = {
    "float32": "fp32", "full": "fp32", "f32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16", "half": "fp16", "f16": "fp16",
    "8bit": "int8", "8-bit": "int8", "llm.int8": "int8", "int8 (llm.int8)": "int8", "q8": "int8",
    "4bit": "nf4", "4-bit": "nf4", "nf4-dq": "nf4", "q4": "nf4",
}
DTYPE_OF = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
PRECISION_OF_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


# --- precision (torch-free) ------------------------------------------------------------------


def precision_name(value: Any, model_dir: Path | None = None) -> str:
    """The canonical precision for `[decisions] precision`: a name ("bf16", "int8", "nf4",
    "native", aliases such as "bfloat16" or "4bit") or a table with a name/dtype key."""
    if isinstance(value, dict):
        value = value.get("name") or value.get("precision") or value.get("dtype")
    name = str(value or "native").strip().lower()
    name = ALIASES.get(name, name)
    if name in ("native", "auto", "default"):
        return native_precision(model_dir)
    if name not in CANONICAL:
        raise InputError(f"unknown precision {value!r}",
                         hint="[decisions] precision is one of: native, " + ", ".join(CANONICAL))
    return name


def native_precision(model_dir: Path | None) -> str:
    """The checkpoint's own dtype (config.json), fp32 when it does not say."""
    config = read_json(Path(model_dir) / "config.json") if model_dir else {}
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return PRECISION_OF_DTYPE.get(dtype, "fp32")


def precision_spec(value: Any, model_dir: Path | None = None, device: str = "cpu",
                   capability: Any = None, *, check: bool = True) -> dict:
    """Everything about a precision that changes outputs: the canonical name, the dtype of the
    modules that stay unquantized, and bitsandbytes' settings. On the CPU the unquantized parts
    and the 4-bit compute run in float32 (CPUs have no fast half precision); on a GPU in
    bfloat16 where it is native, else float16 (core.memory.capability: `capability` fakes a
    GPU in tests). A bf16 on a GPU without it is refused (`check`; an estimate only sizes it)."""
    name = precision_name(value, model_dir)
    cuda = device.startswith("cuda")
    cap = capability_for(device, capability)
    half = half_choice(cap)[0]
    if name == "bf16" and cuda and check:
        refuse_bf16(cap)
    # On the CPU, subnormal floats flush to zero: activations of real models (the demo's) hit
    # subnormal products, which x86 computes 5-15x slower. It can change a last bit of a logit,
    # so it is part of the precision, and of the run identity.
    flush = not cuda
    if name in DTYPE_OF:
        return {"name": name, "dtype": DTYPE_OF[name], "quantization": None, "flush_denormal": flush}
    if name == "int8":
        # LLM.int8's matmul computes in float16 on a GPU, whatever the GPU.
        return {"name": name, "dtype": "float16" if cuda else "float32", "flush_denormal": flush,
                "quantization": {"method": "bitsandbytes", "bits": 8, "threshold": 6.0}}
    return {"name": name, "dtype": half, "flush_denormal": flush,
            "quantization": {"method": "bitsandbytes", "bits": 4, "quant_type": name,
                             "double_quant": True, "compute_dtype": half}}


# --- model files (torch-free) -----------------------------------------------------------------


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- prompts ----------------------------------------------------------------------------------


# --- loading ----------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    model_dir: Path
    precision: dict
    device: str
    adapter: Path | None = None
    footprint_bytes: int = 0
    load_seconds: float = 0.0

    @property
    def templated(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def default_device() -> str:
    import torch  # lazy: torch only where it runs, never at import

    return "cuda" if torch.cuda.is_available() else "cpu"


def bnb_config(quant: dict) -> Any:
    """transformers' BitsAndBytesConfig for a precision spec's `quantization` table: the one
    place the spec turns into bitsandbytes settings (eval, training, the shipped-version probe)."""
    import torch  # lazy: torch only where it runs, never at import
    from transformers import BitsAndBytesConfig  # lazy: transformers only where it runs, never at import

    if quant.get("bits") == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=quant.get("threshold", 6.0))
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant.get("quant_type", "nf4"),
                              bnb_4bit_use_double_quant=bool(quant.get("double_quant", True)),
                              bnb_4bit_compute_dtype=getattr(torch, quant.get("compute_dtype") or "float32"))


@timed(LOADING)
def load_model(model_dir: str | Path, precision: Any = "native", adapter: str | Path | None = None,
               device: str | None = None, attn_implementation: str = "sdpa") -> LoadedModel:
    """The model at `precision` (fp32/bf16/fp16, or int8/nf4/fp4 through bitsandbytes, which
    runs on the CPU too), with a peft adapter on top when given, in eval mode; and its tokenizer
    set up for left padding. Safetensors only: remote code is never trusted here."""
    import torch  # lazy: torch only where it runs, never at import
    from transformers import (  # lazy: transformers only where it runs, never at import
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    began = time.perf_counter()
    model_dir = Path(model_dir)
    device = device or default_device()
    spec = precision_spec(precision, model_dir, device)
    if spec["flush_denormal"] and not subnormals_flush_everywhere(torch):
        # Not every thread can be switched: compute subnormals everywhere (slower, consistent).
        spec["flush_denormal"] = False
        warnings.warn("cannot flush subnormal floats in every CPU thread here; computing them (slower)")
    kwargs: dict[str, Any] = {"dtype": getattr(torch, spec["dtype"]), "use_safetensors": True,
                              "trust_remote_code": False, "attn_implementation": attn_implementation}
    quant = spec["quantization"]
    if quant:
        kwargs["quantization_config"] = bnb_config(quant)
        kwargs["device_map"] = device
        # bitsandbytes says so on every 8-bit matmul; the cast is documented above.
        warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if not quant:
        model = model.to(device)
    footprint = int(model.get_memory_footprint())
    if adapter is not None:
        from peft import PeftModel  # lazy: peft only where it runs, never at import

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        footprint = sum(p.numel() * p.element_size() for p in model.parameters()) + \
            sum(b.numel() * b.element_size() for b in model.buffers())
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token   # a padded position is masked out anyway
    CALLS["load"] += 1
    return LoadedModel(model, tokenizer, model_dir, spec, device, Path(adapter) if adapter else None,
                       footprint, time.perf_counter() - began)


# --- subnormal floats -------------------------------------------------------------------------
# torch.set_flush_denormal sets the MXCSR of the calling thread only. OpenMP worker threads that
# already exist keep computing subnormals; then which thread computed a chunk of a tensor would
# decide its last bits, and chunking follows tensor sizes, i.e. the batch size. So the flag is
# set in every thread of torch's GNU OpenMP pool too, and only for the duration of a generate
# call (it is process-wide CPU state that other code in the process must not inherit).

_GOMP: dict = {}


def _gomp():
    """torch's libgomp and a callback per flag value, or None where that is not what runs."""
    if "lib" not in _GOMP:
        import torch  # lazy: torch only where it runs, never at import

        _GOMP["lib"] = None
        try:
            with open("/proc/self/maps", encoding="utf-8") as maps:
                libraries = sorted({line.split()[-1] for line in maps if "libgomp" in line})
            if libraries:
                lib = ctypes.CDLL(libraries[0])
                callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
                lib.GOMP_parallel.argtypes = [callback_type, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                lib.GOMP_parallel.restype = None
                _GOMP.update(lib=lib, on=callback_type(lambda _: torch.set_flush_denormal(True)),
                             off=callback_type(lambda _: torch.set_flush_denormal(False)))
        except (OSError, AttributeError):
            pass
    return _GOMP["lib"]


def _flush_everywhere(torch, on: bool) -> bool:
    torch.set_flush_denormal(on)
    lib = _gomp()
    if lib is None:
        return False
    lib.GOMP_parallel(_GOMP["on" if on else "off"], None, torch.get_num_threads(), 0)   # every pool thread
    return True


@contextmanager
def flushed_subnormals(torch, enabled: bool = True) -> Iterator[None]:
    if not enabled:
        yield
        return
    _flush_everywhere(torch, True)
    try:
        yield
    finally:
        _flush_everywhere(torch, False)


def subnormals_flush_everywhere(torch) -> bool:
    """Probe: inside flushed_subnormals, does every intra-op thread flush? (A subnormal product
    must come out zero in every chunk of a tensor split across all threads.)"""
    size = max(1 << 20, torch.get_num_threads() * (1 << 16))
    tiny = torch.full((size,), 1e-30, dtype=torch.float32)
    with flushed_subnormals(torch):
        flushed = not bool(((tiny * 1e-10) != 0).any())
    return flushed


# --- generation -------------------------------------------------------------------------------
