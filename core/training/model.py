"""The base model at the decided precision with a trainable peft LoRA on top.

LoRA: the base in its precision's dtype (fp32 on the CPU for 16-bit decisions would change
what is trained, so the precision spec of core.memory.loading is followed as it is), frozen.
QLoRA (the decided precision is 4-bit): bitsandbytes NF4 with double quantization, compute in
bf16 on a GPU that has it, fp16 on one that does not (core.memory.capability) and fp32 on the
CPU, prepared with peft's k-bit preparation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.timers import LOADING, timed
from weightgate.core.memory.layout import ATTENTION_ROLES, MLP_ROLES
from weightgate.core.memory.loading import bnb_config, precision_spec

FOUR_BIT = ("nf4", "fp4")


def method_for(precision: str) -> str:
    return "qlora" if precision in FOUR_BIT else "lora"


def linear_module_names(model: Any) -> list[str]:
    """Qualified names of every Linear-like leaf module (plain, bnb 8-bit or 4-bit)."""
    import torch  # lazy: torch only where it runs, never at import

    names = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear8bitLt", "Linear4bit"):
            names.append(name)
    return names


def detect_targets(model: Any, wanted: str | list[str] = "auto") -> list[str]:
    """LoRA target role names: "auto" = every attention and MLP projection the model has (by
    module name, as core.memory.estimate's roles), never the output head or the embeddings."""
    roles_present = {name.rpartition(".")[2] for name in linear_module_names(model)}
    if wanted == "auto":
        targets = sorted(role for role in roles_present if role in ATTENTION_ROLES or role in MLP_ROLES)
        if not targets:
            raise InputError("found no attention or MLP projections to put LoRA on",
                             hint=f"set [training] target_modules to some of: {', '.join(sorted(roles_present))}")
        return targets
    missing = [t for t in wanted if t not in roles_present]
    forbidden = [t for t in wanted if t in ("lm_head", "embed_tokens", "wte", "embed_out")]
    if forbidden:
        raise InputError(f"[training] target_modules: {', '.join(forbidden)} is the output head or an embedding",
                         hint="LoRA goes on the attention and MLP projections; remove it")
    if missing:
        raise InputError(f"[training] target_modules: the model has no Linear named {', '.join(missing)}",
                         hint=f"its Linear modules: {', '.join(sorted(roles_present))}")
    return list(wanted)


@timed(LOADING)
def load_base(model_dir: Path, precision: str, device: str = "cpu", attn_implementation: str = "sdpa") -> Any:
    """The frozen base model at `precision` (safetensors only, no remote code), with the
    attention implementation the run's plan chose (core.training.precision_plan)."""
    import torch  # lazy: torch only where it runs, never at import
    from transformers import AutoModelForCausalLM  # lazy: transformers only where it runs, never at import


    spec = precision_spec(precision, Path(model_dir), device)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, spec["dtype"]), "use_safetensors": True,
                              "trust_remote_code": False, "attn_implementation": attn_implementation}
    quant = spec["quantization"]
    if quant:
        kwargs["quantization_config"] = bnb_config(quant)
        kwargs["device_map"] = device
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if not quant:
        model = model.to(device)
    model.config.use_cache = False   # training: no KV cache
    return model


def add_lora(model: Any, *, r: int, alpha: int, dropout: float, targets: list[str], quantized: bool,
             gradient_checkpointing: bool, seed: int) -> Any:
    """Wrap in a peft LoRA; the adapter's initial values come from `seed` alone."""
    import torch  # lazy: torch only where it runs, never at import
    from peft import (  # lazy: peft only where it runs, never at import
        LoraConfig,
        get_peft_model,
        prepare_model_for_kbit_training,
    )

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        for module in model.modules():
            # bitsandbytes repacks a 4-bit weight for its AVX512-BF16 CPU kernel at the first
            # no-grad eval forward (a validation pass) and keeps it so: training steps after that
            # compute through another kernel (measured: 1.3e-4 apart after 3 steps), so a run
            # resumed before its next validation would diverge from the uninterrupted one.
            if getattr(module, "support_avx512bf16_for_cpu", False):
                module.support_avx512bf16_for_cpu = False
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                        task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)   # lora_A's init: the same adapter start on every rank and every resume
        peft_model = get_peft_model(model, config)
    return peft_model


def trainable_parameters(model: Any) -> list[tuple[str, Any]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]
