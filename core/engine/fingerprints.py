"""Today's fingerprints of every input that evidence can depend on.

Evidence counts only while the fingerprints it recorded equal today's: change the precision
and every result taken at the old precision turns stale. Each fingerprint is computed lazily,
once per `Fingerprints` object (one status computation).
"""

from __future__ import annotations

from typing import Callable

import tomllib

from weightgate.core.engine.digest import ABSENT, digest_file, digest_value
from weightgate.core.engine.lock import lock_digest, read_lock, snapshot_dir
from weightgate.core.engine.workspace import Workspace, setting_path


def plain(value) -> object:
    """tomlkit containers -> plain Python, so digests ignore comments and formatting."""
    if hasattr(value, "unwrap"):
        return value.unwrap()
    return value


def _table(config: dict, *keys: str):
    node = config
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return plain(node)


def _decision(config: dict, key: str):
    decisions = _table(config, "decisions") or {}
    return decisions.get(key)


def _requirements(ws: Workspace, config: dict) -> str:
    return digest_value(_table(config, "requirements"))


def _candidates(ws: Workspace, config: dict) -> str:
    return digest_value(_table(config, "candidates") or [])


def _model(ws: Workspace, config: dict) -> str:
    return lock_digest(read_lock(ws))


def _weights_on_disk(ws: Workspace, config: dict) -> str:
    """Size and mtime of every locked file as it is on disk now: a touched file makes every
    hash verification of it stale, without re-hashing at status time."""

    lock = read_lock(ws)
    if lock is None:
        return ABSENT
    try:
        root = snapshot_dir(ws, lock)
    except Exception:
        return ABSENT
    seen = []
    for entry in sorted(lock.files, key=lambda f: f.path):
        try:
            stat = (root / entry.path).stat()
            seen.append((entry.path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            seen.append((entry.path, None, None))
    return digest_value(seen)


def _decided(key: str) -> Callable[[Workspace, dict], str]:
    """The digest of [decisions].<key>, ABSENT while nothing is decided."""
    def compute(ws: Workspace, config: dict) -> str:
        decision = _decision(config, key)
        return digest_value(decision) if decision else ABSENT
    return compute


def _release(ws: Workspace, config: dict) -> str:
    """[decisions] release ("name@vN") and that version's identity (its manifest's content digest
    and ship time): a version number reused after a deletion is another release, so evidence
    about the old one never counts for the new one."""
    label = _decision(config, "release")
    if not label:
        return ABSENT
    name, _, version = str(label).partition("@")
    identity: dict = {}
    try:
        with open(ws.registry_dir / name / version / "manifest.toml", "rb") as handle:
            release = tomllib.load(handle).get("release") or {}
        identity = {"content_digest": release.get("content_digest"), "created": release.get("created")}
    except (OSError, ValueError):
        identity = {"manifest": "unreadable"}
    return digest_value({"release": label, **identity})


def _file_setting(setting: str, default: str) -> Callable[[Workspace, dict], str]:
    """The digest of the file a setting names (an eval set, the training data)."""
    def compute(ws: Workspace, config: dict) -> str:
        return digest_file(setting_path(ws, config, setting, default))
    return compute


def _train_config(ws: Workspace, config: dict) -> str:
    training = _table(config, "training")
    return digest_value(training) if training else ABSENT


def _data_config(ws: Workspace, config: dict) -> str:
    """The [data] table: the thresholds the training-data checks judged with."""
    data = _table(config, "data")
    return digest_value(data) if data else ABSENT


COMPUTE: dict[str, Callable[[Workspace, dict], str]] = {
    "requirements": _requirements,
    "candidates": _candidates,
    "choice": _decided("model"),
    "model": _model,
    "weights_on_disk": _weights_on_disk,
    "precision": _decided("precision"),
    "adapter": _decided("adapter"),
    "evalset.task": _file_setting("eval_set", "evals/task.jsonl"),
    "evalset.general": _file_setting("general_set", "evals/general.jsonl"),
    "dataset": _file_setting("train_data", "data/train.jsonl"),
    "train_config": _train_config,
    "data_config": _data_config,
    "release": _release,
}


class Fingerprints:
    """Lazy, cached view of today's fingerprints for one workspace."""

    def __init__(self, ws: Workspace, config: dict | None = None):
        self.ws = ws
        self.config = config if config is not None else plain(ws.config())
        self._cache: dict[str, str] = {}

    def get(self, name: str) -> str:
        if name not in self._cache:
            try:
                compute = COMPUTE[name]
            except KeyError:
                raise KeyError(f"unknown fingerprint {name!r}; known: {', '.join(COMPUTE)}") from None
            self._cache[name] = compute(self.ws, self.config)
        return self._cache[name]

    def of(self, names) -> dict[str, str]:
        return {name: self.get(name) for name in names}

    def changed(self, recorded: dict[str, str]) -> list[str]:
        """Names whose recorded digest differs from today's (unknown names count as changed)."""
        return [name for name, digest in recorded.items() if name not in COMPUTE or self.get(name) != digest]

