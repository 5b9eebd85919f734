"""How a run computes, decided once when it is prepared and recorded in run.json (and from
there in the release manifest): the half dtype by the GPU's capability (bf16 where native,
else fp16), autocast and a gradient scaler for fp16 compute, the optimizer (AdamW, or
bitsandbytes' paged 8-bit AdamW, the QLoRA recipe's answer to memory spikes) and the attention
implementation (sdpa, or flash-attention 2 where installed and supported).

A resumed run reads the plan back: it computes as it started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from weightgate.core.memory.capability import Capability, attention_choice, half_choice, training_amp
from weightgate.core.memory.loading import precision_spec


def training_precision_plan(precision: str, model_dir: Path | None, device: str, cfg: dict,
                            capability: Capability) -> dict:
    """The run's plan (JSON-able). Refuses a bf16 precision on a GPU without native bf16 and
    flash_attention_2 where it cannot run (core.memory.capability says why)."""
    spec = precision_spec(precision, model_dir, device, capability)
    amp = training_amp(spec)
    half, half_reason = half_choice(capability)
    attention, attention_reason = attention_choice(cfg.get("attn_implementation", "auto"), capability)
    optimizer = cfg.get("optimizer", "adamw")
    return {"capability": capability.to_dict(), "dtype": spec["dtype"],
            "compute_dtype": (spec.get("quantization") or {}).get("compute_dtype") or spec["dtype"],
            "half_dtype": half, "half_reason": half_reason,
            "autocast": amp["autocast"], "scaler": amp["scaler"], "amp_reason": amp["reason"],
            "optimizer": optimizer,
            "optimizer_reason": ("bitsandbytes PagedAdamW8bit: 8-bit moments, paged to host memory under spikes"
                                 if optimizer == "paged_adamw_8bit" else "torch AdamW: fp32 moments"),
            "attn_implementation": attention, "attn_reason": attention_reason}


def build_optimizer(params: list, cfg: dict, optimizer: str) -> Any:
    if optimizer == "paged_adamw_8bit":
        import bitsandbytes as bnb  # lazy: bitsandbytes only where it runs, never at import

        return bnb.optim.PagedAdamW8bit(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    import torch  # lazy: torch only where it runs, never at import

    return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], foreach=True)


def make_scaler(plan: dict, device: str) -> Any:
    """torch.amp.GradScaler on the run's device type when the plan says fp16 needs one, else None."""
    if not plan.get("scaler"):
        return None
    import torch  # lazy: torch only where it runs, never at import

    return torch.amp.GradScaler("cuda" if str(device).startswith("cuda") else "cpu")

