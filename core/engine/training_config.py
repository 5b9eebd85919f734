"""The [training] table of weightgate.toml: defaults from the seeds, checked values.

It lives in the engine because two phases read it and must read it the same way: phase 3
estimates training memory from these settings, phase 5 trains with them.

Every bad value is an InputError naming weightgate.toml, the line of the key and the fix. The
table's digest is the `train_config` fingerprint, so every setting here is part of what the
tune.* evidence is tied to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import key_line

MAX_EPOCHS = 3
DEFAULT_DIVERGENCE_FACTOR = 4.0

# The seeds: r 16, alpha 2r, dropout 0.05, lr 2e-4 (conservative), warmup 3 %, 1-3 epochs.
DEFAULTS: dict[str, Any] = {
    "r": 16,
    "alpha": 32,
    "dropout": 0.05,
    "lr": 2e-4,
    "warmup_ratio": 0.03,
    "epochs": 3,
    "target_modules": "auto",
    "effective_batch": 16,
    "micro_batch": "auto",
    "eval_every": 20,
    "seed": 42,
    "max_seq": "auto",
    "gradient_checkpointing": False,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "divergence_factor": DEFAULT_DIVERGENCE_FACTOR,
    "optimizer": "adamw",
    "attn_implementation": "auto",
    "method": "sft",
    "beta": 0.1,
}
# Seed 003's preference tuning: DPO with beta 0.1 and lr 5e-6 (a preference run starts from a
# model that already answers; the SFT learning rate would overshoot it).
DPO_DEFAULTS: dict[str, Any] = {"lr": 5e-6, "beta": 0.1}
METHODS = ("sft", "dpo")
OPTIMIZERS = ("adamw", "paged_adamw_8bit")
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2")
# Keys of the table that are not training hyperparameters (the keep-or-reject gate reads them).
GATE_KEYS = ("task_margin", "general_tolerance")


@dataclass
class TrainConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    lr: float = 2e-4
    warmup_ratio: float = 0.03
    epochs: int = 3
    target_modules: str | list[str] = "auto"
    effective_batch: int = 16
    micro_batch: str | int = "auto"
    eval_every: int = 20
    seed: int = 42
    max_seq: str | int = "auto"
    gradient_checkpointing: bool = False
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR
    optimizer: str = "adamw"                 # "paged_adamw_8bit": bitsandbytes' PagedAdamW8bit (the QLoRA recipe)
    attn_implementation: str = "auto"        # auto: flash_attention_2 where installed and supported, else sdpa
    method: str = "sft"                      # "sft": supervised (our loop); "dpo": preference pairs (TRL's DPOTrainer)
    beta: float = 0.1                        # DPO only: how far the policy may move from the reference
    notes: list[str] = field(default_factory=list)   # what was defaulted, for the documented config

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_training_config(table: dict | None, *, config_path: Path | None = None, text: str | None = None,
                         overrides: dict | None = None) -> TrainConfig:
    """[training] -> TrainConfig. Missing keys take the seeds' defaults (noted); wrong ones raise."""
    table = dict(table or {})
    table.update(overrides or {})
    if text is None and config_path is not None and config_path.exists():
        text = config_path.read_text(encoding="utf-8")

    def bad(key: str, message: str, hint: str) -> InputError:
        line = key_line(text, "training", key) if text else None
        return InputError(f"[training] {key}: {message}", path=config_path, line=line, hint=hint)

    values: dict[str, Any] = {}
    notes = []
    defaults = dict(DEFAULTS)
    if table.get("method") == "dpo":
        defaults.update(DPO_DEFAULTS)
    for key, default in defaults.items():
        if key in table:
            values[key] = table[key]
        else:
            values[key] = default
            notes.append(f"{key} = {default!r} (default)")
    unknown = sorted(set(table) - set(DEFAULTS) - set(GATE_KEYS))
    if unknown:
        raise bad(unknown[0], f"unknown setting {unknown[0]!r}",
                  f"known settings: {', '.join(list(DEFAULTS) + list(GATE_KEYS))}")

    def positive_int(key: str, *, auto: bool = False) -> None:
        value = values[key]
        if auto and value == "auto":
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            alternative = ' or "auto"' if auto else ""
            raise bad(key, f"must be a whole number >= 1{alternative}, got {value!r}",
                      f"e.g. {key} = {DEFAULTS[key] if DEFAULTS[key] != 'auto' else 4}")

    for key in ("r", "alpha", "epochs", "effective_batch", "eval_every"):
        positive_int(key)
    positive_int("micro_batch", auto=True)
    positive_int("max_seq", auto=True)
    if not isinstance(values["seed"], int) or isinstance(values["seed"], bool) or values["seed"] < 0:
        raise bad("seed", f"must be a whole number >= 0, got {values['seed']!r}", "e.g. seed = 42")
    if values["epochs"] > MAX_EPOCHS:
        raise bad("epochs", f"{values['epochs']} epochs is more than {MAX_EPOCHS}",
                  f"LoRA on a small dataset overfits and forgets past {MAX_EPOCHS} epochs (the seeds say 1-3); "
                  f"add data instead, or set epochs = {MAX_EPOCHS}")
    if not _number(values["dropout"]) or not 0 <= values["dropout"] < 1:
        raise bad("dropout", f"must be a number in [0, 1), got {values['dropout']!r}", "e.g. dropout = 0.05")
    if not _number(values["lr"]) or not values["lr"] > 0:
        raise bad("lr", f"must be a number > 0, got {values['lr']!r}", "e.g. lr = 2e-4")
    if not _number(values["warmup_ratio"]) or not 0 <= values["warmup_ratio"] < 1:
        raise bad("warmup_ratio", f"must be a number in [0, 1), got {values['warmup_ratio']!r}",
                  "e.g. warmup_ratio = 0.03")
    for key in ("weight_decay", "max_grad_norm"):
        if not _number(values[key]) or values[key] < 0:
            raise bad(key, f"must be a number >= 0, got {values[key]!r}", f"e.g. {key} = {DEFAULTS[key]}")
    if not _number(values["divergence_factor"]) or values["divergence_factor"] <= 1:
        raise bad("divergence_factor", f"must be a number > 1, got {values['divergence_factor']!r}",
                  "e.g. divergence_factor = 4 (stop when the loss exceeds 4x its running minimum)")
    if not isinstance(values["gradient_checkpointing"], bool):
        raise bad("gradient_checkpointing", f"must be true or false, got {values['gradient_checkpointing']!r}",
                  "gradient_checkpointing = false")
    if values["optimizer"] not in OPTIMIZERS:
        raise bad("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {values['optimizer']!r}",
                  'optimizer = "paged_adamw_8bit" (8-bit state, paged to the host under memory spikes) or "adamw"')
    if values["attn_implementation"] not in ATTENTION:
        raise bad("attn_implementation", f"must be one of {', '.join(ATTENTION)}, got {values['attn_implementation']!r}",
                  'attn_implementation = "auto" (flash_attention_2 where installed and supported, else sdpa)')
    if values["method"] not in METHODS:
        raise bad("method", f"must be one of {', '.join(METHODS)}, got {values['method']!r}",
                  'method = "sft" (prompt/answer examples) or "dpo" ({"prompt", "chosen", "rejected"} pairs)')
    if not _number(values["beta"]) or not values["beta"] > 0:
        raise bad("beta", f"must be a number > 0, got {values['beta']!r}", "e.g. beta = 0.1 (the seed's DPO default)")
    targets = values["target_modules"]
    if targets != "auto" and not (isinstance(targets, list) and targets
                                  and all(isinstance(t, str) and t for t in targets)):
        raise bad("target_modules", f"must be \"auto\" or a list of module names, got {targets!r}",
                  'target_modules = "auto" (every attention and MLP projection) or ["q_proj", "v_proj"]')
    if "alpha" not in table:
        values["alpha"] = 2 * values["r"]   # alpha = 2r follows r when only r is set
    values["lr"] = float(values["lr"])
    for key in ("dropout", "warmup_ratio", "weight_decay", "max_grad_norm", "divergence_factor", "beta"):
        values[key] = float(values[key])
    return TrainConfig(**values, notes=notes)


def workspace_training_config(ws, overrides: dict | None = None) -> TrainConfig:
    config = plain(ws.config())
    table = config.get("training") if isinstance(config.get("training"), dict) else {}
    return read_training_config(table, config_path=ws.config_path, overrides=overrides)
