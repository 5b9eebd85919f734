"""The `[data]` table of weightgate.toml: thresholds of the training-data checks, checked values.

    [data]
    near_duplicate_threshold = 0.7   # Jaccard similarity of distinctive character 5-grams
    leakage_threshold = 0.7          # share of an eval case's distinctive 5-grams inside an example
    val_fraction = 0.1               # the validation split
    max_tag_ratio = 10.0             # most common tag / least common tag above this is a skew

Also read: [requirements] quality_threshold elsewhere, and from [training]: max_seq (an int
caps the token length below the model's context) and the gate's task_margin / general_tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace, setting_path

DEFAULTS = {"near_duplicate_threshold": 0.7, "leakage_threshold": 0.7, "val_fraction": 0.1, "max_tag_ratio": 10.0}
RANGES = {"near_duplicate_threshold": (0.3, 1.0), "leakage_threshold": (0.3, 1.0), "val_fraction": (0.01, 0.5),
          "max_tag_ratio": (1.0, 1e9)}
GATE_DEFAULTS = {"task_margin": 0.05, "general_tolerance": 0.02}


@dataclass(frozen=True)
class DataSettings:
    near_duplicate_threshold: float = 0.7
    leakage_threshold: float = 0.7
    val_fraction: float = 0.1
    max_tag_ratio: float = 10.0
    max_seq: int | None = None          # [training] max_seq when it is a number

    def to_dict(self) -> dict:
        return asdict(self)


def _table(config: dict, name: str) -> dict:
    value = config.get(name) if isinstance(config, dict) else None
    return value if isinstance(value, dict) else {}


def _fraction(table: dict, key: str, default: float, where: str, low: float, high: float, path) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InputError(f"[{where}] {key} must be a number from {low:g} to {high:g}, got {value!r}", path=path,
                         hint=f"e.g. {key} = {default}")
    return float(value)


def data_settings(config: dict, path=None) -> DataSettings:
    table = _table(config, "data")
    unknown = sorted(set(table) - set(DEFAULTS))
    if unknown:
        raise InputError(f"[data] has an unknown setting {unknown[0]!r}", path=path,
                         hint="known settings: " + ", ".join(DEFAULTS))
    values = {key: _fraction(table, key, default, "data", *RANGES[key], path) for key, default in DEFAULTS.items()}
    max_seq = _table(config, "training").get("max_seq")
    values["max_seq"] = max_seq if isinstance(max_seq, int) and not isinstance(max_seq, bool) and max_seq > 0 else None
    return DataSettings(**values)


def gate_settings(config: dict, path=None) -> dict:
    """task_margin and general_tolerance of the keep-or-reject gate ([training], seeds' defaults)."""
    table = _table(config, "training")
    return {key: _fraction(table, key, default, "training", 0.0, 1.0, path) for key, default in GATE_DEFAULTS.items()}


DEFAULT_TRAIN_DATA = "data/train.jsonl"


def train_data_path(ws: Workspace, config: dict | None = None) -> Path:
    config = config if config is not None else plain(ws.config())
    return setting_path(ws, config, "train_data", DEFAULT_TRAIN_DATA)
