"""What the device can compute, and the choices that follow from it: bfloat16 or float16 for
the half-precision parts (16-bit inference on CUDA, the 4-bit compute dtype of QLoRA, LoRA
training's autocast), and which attention implementation a model is loaded with.

bfloat16 needs compute capability 8.0 (Ampere) or newer: a T4 (7.5) or V100 (7.0) emulates it
through float32 (torch.cuda.is_bf16_supported(including_emulation=True) says yes there, and it
is slow), so only native support counts. Without it the half dtype is float16, and training at
float16 needs a gradient scaler (core.training.amp).

Torch-free at import. The capability is probed with torch (`probe_cuda`) where a model runs;
a torch-free caller (the TUI's estimate) gets the probed one when this process probed it, else
NVML's compute capability, else an assumption that says so (`source = "assumed"`): the bytes
of bf16 and fp16 are the same, so the estimate's totals do not depend on it, only its
compute-dtype label.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict, dataclass

import tomlkit

from weightgate.core.engine.errors import InputError
from weightgate.core.memory.nvml import NA, nvml_query  # torch-free; pynvml only when queried

BF16_MIN_CAPABILITY = (8, 0)
FLASH_MIN_CAPABILITY = (8, 0)       # flash-attn 2 supports Ampere and newer
ATTENTION_CHOICES = ("auto", "sdpa", "eager", "flash_attention_2")


@dataclass(frozen=True)
class Capability:
    kind: str                                   # "cuda" | "cpu"
    name: str = ""
    compute_capability: tuple[int, int] | None = None
    bf16: bool = False                          # native bfloat16 (not emulated)
    source: str = "probed"                      # "probed" (torch) | "nvml" | "assumed" | "cpu"

    @property
    def label(self) -> str:
        if self.kind != "cuda":
            return "the CPU"
        cc = f"compute capability {self.compute_capability[0]}.{self.compute_capability[1]}" \
            if self.compute_capability else "compute capability unknown"
        return f"{self.name or 'GPU'} ({cc})"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["compute_capability"] = list(self.compute_capability) if self.compute_capability else None
        return data


CPU = Capability("cpu", "CPU", None, False, "cpu")
# Not probed in this process (no torch here): Ampere or newer assumed, as most GPUs in use are.
ASSUMED_CUDA = Capability("cuda", "GPU", None, True, "assumed")
_PROBED: dict[int, Capability] = {}


def _index(device: str) -> int:
    _, _, index = str(device).partition(":")
    return int(index) if index.isdigit() else 0


def probe_cuda(device: str = "cuda") -> Capability:
    """The GPU's capability as torch reports it (cached per device index)."""
    index = _index(device)
    if index in _PROBED:
        return _PROBED[index]
    import torch  # lazy: torch only where it runs, never at import

    if not torch.cuda.is_available():
        raise InputError(f"device {device}: torch sees no CUDA device", hint="use the CPU, or check the driver")
    major, minor = torch.cuda.get_device_capability(index)
    with torch.cuda.device(index):
        bf16 = bool(torch.cuda.is_bf16_supported(including_emulation=False))
    found = Capability("cuda", str(torch.cuda.get_device_name(index)), (int(major), int(minor)), bf16, "probed")
    _PROBED[index] = found
    return found


def capability_for(device: str, capability: Capability | None = None) -> Capability:
    """`capability` when given (tests fake a GPU this way), else the device's: the CPU, a probed
    GPU, or (torch-free callers in a process that never loaded torch) ASSUMED_CUDA."""
    if capability is not None:
        return capability
    if not str(device).startswith("cuda"):
        return CPU
    if _index(device) in _PROBED or "torch" in sys.modules:
        try:
            return probe_cuda(device)
        except InputError:
            return ASSUMED_CUDA
    return nvml_capability(_index(device)) or ASSUMED_CUDA


def nvml_capability(index: int) -> Capability | None:
    """The GPU's compute capability from NVML, for a process that has not loaded torch (the TUI's
    estimate): the same answer as torch's for native bfloat16 (8.0 and newer), without the
    seconds torch takes to import. None when NVML cannot say."""
    handle = nvml_query("nvmlDeviceGetHandleByIndex", index, default=NA)
    if handle is NA:
        return None
    found = nvml_query("nvmlDeviceGetCudaComputeCapability", handle, default=NA)
    if found is NA or not isinstance(found, (tuple, list)) or len(found) != 2:
        return None
    major, minor = int(found[0]), int(found[1])
    name = nvml_query("nvmlDeviceGetName", handle, default="GPU")
    return Capability("cuda", str(name), (major, minor), (major, minor) >= BF16_MIN_CAPABILITY, "nvml")


def half_choice(capability: Capability) -> tuple[str, str]:
    """(dtype, reason) of the half-precision parts on this device: "bfloat16", "float16", or
    "float32" on the CPU (no fast half precision there)."""
    if capability.kind != "cuda":
        return "float32", "the CPU: no fast half precision, so float32"
    if capability.bf16:
        why = "assumed (not probed in this process)" if capability.source == "assumed" else "native on"
        return "bfloat16", f"bfloat16 {why} {capability.label}: float32's range, no gradient scaler needed"
    return "float16", (f"{capability.label} has no native bfloat16 (needs 8.0+): float16, and training at "
                       "float16 runs with autocast and a gradient scaler")


def refuse_bf16(capability: Capability) -> None:
    """A decided bf16 on a GPU without it: refused, with what to decide instead."""
    if capability.kind == "cuda" and not capability.bf16:
        raise InputError(f"precision bf16: {capability.label} has no native bfloat16 (it needs compute "
                         "capability 8.0 or newer; emulated bf16 runs through float32, slowly)",
                         hint='decide fp16 on this GPU ([decisions] precision = "fp16", or `weightgate memory fit` '
                              "to choose again), or nf4/int8, whose compute dtype follows the GPU")


def flash_attention_available(capability: Capability) -> tuple[bool, str]:
    if capability.kind != "cuda":
        return False, "flash-attention runs on CUDA only"
    if importlib.util.find_spec("flash_attn") is None:
        return False, "the flash_attn package is not installed"
    if capability.compute_capability is None or capability.compute_capability < FLASH_MIN_CAPABILITY:
        return False, f"{capability.label}: flash-attention 2 needs compute capability 8.0 or newer"
    return True, f"flash_attn installed and {capability.label} supports it"


def attention_choice(requested: str, capability: Capability) -> tuple[str, str]:
    """(attn_implementation for from_pretrained, reason). auto: flash_attention_2 where it is
    installed and supported, else sdpa (torch's fused attention, transformers' default)."""
    wanted = str(requested or "auto").strip().lower()
    if wanted not in ATTENTION_CHOICES:
        raise InputError(f"unknown attn_implementation {requested!r}", hint="one of: " + ", ".join(ATTENTION_CHOICES))
    flash, why = flash_attention_available(capability)
    if wanted == "flash_attention_2" and not flash:
        raise InputError(f"attn_implementation flash_attention_2: {why}",
                         hint='use "sdpa" (torch\'s fused attention) or "auto"')
    if wanted == "auto":
        return ("flash_attention_2", f"auto: {why}") if flash else ("sdpa", f"auto: sdpa, as {why}")
    if wanted == "eager":
        return "eager", "eager, as asked: it keeps the seq x seq attention weights (more memory)"
    return wanted, f"{wanted}, as asked"


def record_compute_decision(ws, capability: Capability) -> tuple[str, str]:
    """[decisions] compute_dtype and compute_dtype_reason for this device (tomlkit: comments
    survive); returns (dtype, reason). Not part of the precision fingerprint: the eval run
    identity carries the dtype itself (core.memory.loading.precision_spec)."""
    dtype, reason = half_choice(capability)

    def change(doc) -> None:
        if "decisions" not in doc:
            doc["decisions"] = tomlkit.table()
        doc["decisions"]["compute_dtype"] = dtype
        doc["decisions"]["compute_dtype_reason"] = reason

    ws.update_config(change)
    return dtype, reason


def training_amp(spec: dict) -> dict:
    """How training computes at a precision spec (core.memory.loading.precision_spec): autocast
    to its half compute dtype, and a gradient scaler for float16, whose gradients below ~6e-8
    underflow to zero (bfloat16 has float32's exponent range and needs none). Torch-free: the
    estimate and the trainer read the same answer."""
    compute = (spec.get("quantization") or {}).get("compute_dtype") or spec.get("dtype")
    if compute == "float16":
        return {"autocast": "float16", "scaler": True,
                "reason": "float16 compute: autocast, with a gradient scaler so small gradients do not underflow"}
    if compute == "bfloat16":
        return {"autocast": "bfloat16", "scaler": False,
                "reason": "bfloat16 compute: autocast; float32's exponent range, so no gradient scaler"}
    return {"autocast": None, "scaler": False, "reason": "float32 compute: no autocast, no gradient scaler"}
