"""`[tracking]` in weightgate.toml: where runs are mirrored to.

    [tracking]
    mlflow = "sqlite:///.weightgate/tracking/mlflow.db"   # or true (that store), or http(s)://host:port
    tensorboard = ".weightgate/tracking/tensorboard"      # or true (that directory): event files
    experiment = "weightgate"                             # the MLflow experiment (default: weightgate-<dir>)

A relative sqlite path or directory is taken from the workspace root, so the workspace can move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.workspace import Workspace

DEFAULT_MLFLOW = "sqlite:///.weightgate/tracking/mlflow.db"
DEFAULT_TENSORBOARD = ".weightgate/tracking/tensorboard"


@dataclass(frozen=True)
class TrackingConfig:
    mlflow: str | None = None          # a tracking URI, resolved (absolute sqlite path)
    tensorboard: Path | None = None    # an event-file directory
    experiment: str = "weightgate"

    @property
    def enabled(self) -> bool:
        return bool(self.mlflow or self.tensorboard)

    def destinations(self) -> list[str]:
        """One key per backend and place: state is kept per destination, so pointing a backend
        somewhere new mirrors everything there again, and the old place keeps what it had."""
        out = []
        if self.mlflow:
            out.append(f"mlflow:{self.mlflow}")
        if self.tensorboard:
            out.append(f"tensorboard:{self.tensorboard}")
        return out


def tracking_config(ws: Workspace, config: dict | None = None) -> TrackingConfig:
    config = config if config is not None else ws.config()
    table = config.get("tracking")
    if table is None:
        return TrackingConfig()
    if not isinstance(table, dict):
        raise InputError("[tracking] must be a table", path=ws.config_path)
    mlflow = _mlflow_uri(ws, table.get("mlflow"))
    tensorboard = table.get("tensorboard")
    if tensorboard is True:
        tensorboard = DEFAULT_TENSORBOARD
    if tensorboard in (None, False, ""):
        board = None
    elif isinstance(tensorboard, str):
        board = (ws.root / tensorboard).resolve()
    else:
        raise InputError(f"[tracking] tensorboard must be a directory or true, not {tensorboard!r}",
                         path=ws.config_path)
    experiment = table.get("experiment") or f"weightgate-{ws.root.name}"
    return TrackingConfig(mlflow=mlflow, tensorboard=board, experiment=str(experiment))


def _mlflow_uri(ws: Workspace, value) -> str | None:
    if value is True:
        value = DEFAULT_MLFLOW
    if value in (None, False, ""):
        return None
    if not isinstance(value, str):
        raise InputError(f"[tracking] mlflow must be a tracking URI or true, not {value!r}", path=ws.config_path,
                         hint='e.g. mlflow = "sqlite:///.weightgate/tracking/mlflow.db" or "http://mlflow:5000"')
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        # sqlite:///relative.db: relative to the workspace, not to wherever a job happens to run.
        value = "sqlite:///" + str((ws.root / value[len("sqlite:///"):]).resolve())
    elif "://" not in value:
        value = str((ws.root / value).resolve())   # a plain directory: MLflow's file store
    return value


def redact(uri: str) -> str:
    """The URI without a password or token in its user part (never in a journal or a log)."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", uri)
