"""Today's fingerprints of every input that evidence can depend on.

Evidence counts only while the fingerprints it recorded equal today's: change the precision
and every result taken at the old precision turns stale. Each fingerprint is computed lazily,
once per `Fingerprints` object (one status computation). Which item depends on which input is
declared once, in the checklist (`Item.inputs`); `INPUTS` says what each input is.
"""

from __future__ import annotations

from pathlib import Path
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


def find_adapter(ws: Workspace, value) -> Path | None:
    """`[decisions] adapter`: a directory (relative to the workspace) or an id under
    .weightgate/adapters/ (its `best/` when it has one); None when nothing of that name exists."""
    if not value:
        return None
    text = str(value.get("path") if isinstance(value, dict) else value)
    for candidate in (ws.root / text, ws.adapters_dir / text):
        for where in (candidate / "best", candidate):
            if (where / "adapter_config.json").is_file():
                return where.resolve()
    return None


# (path, size, mtime_ns, inode) -> sha256 of an adapter file: the adapter is fingerprinted at every
# status computation (the TUI recomputes on each job event), and an 8B model's LoRA is ~100 MB.
# A rewritten file gets a new mtime, as weights_on_disk already relies on.
_ADAPTER_FILE_DIGESTS: dict[tuple, str] = {}


def _adapter_file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _ADAPTER_FILE_DIGESTS:
        _ADAPTER_FILE_DIGESTS[key] = digest_file(path)
    return _ADAPTER_FILE_DIGESTS[key]


def adapter_files_digest(adapter: Path | None) -> str:
    if adapter is None:
        return ABSENT
    files = sorted(p for p in adapter.iterdir() if p.is_file() and p.name.startswith("adapter_"))
    return digest_value([(p.name, _adapter_file_digest(p)) for p in files])


def adapter_identity(decision, adapter: Path | None) -> str:
    """[decisions] adapter and the bytes of the adapter it names: a resumed run that writes a
    new best under the same id is another adapter. An eval run records the same value as its
    `adapter` component, so runs and evidence agree on what "today's adapter" is."""
    if not decision:
        return ABSENT
    return digest_value({"decision": decision, "files": adapter_files_digest(adapter)})


def _adapter(ws: Workspace, config: dict) -> str:
    decision = _decision(config, "adapter")
    return adapter_identity(decision, find_adapter(ws, decision) if decision else None)


def _keys(table: str, keys: tuple[str, ...]) -> Callable[[Workspace, dict], str]:
    """The digest of some keys of a table (absent keys left out), ABSENT when none is set."""
    def compute(ws: Workspace, config: dict) -> str:
        values = _table(config, table) or {}
        chosen = {key: values[key] for key in keys if isinstance(values, dict) and key in values}
        return digest_value(chosen) if chosen else ABSENT
    return compute


def _file_setting(setting: str, default: str) -> Callable[[Workspace, dict], str]:
    """The digest of the file a setting names (an eval set, the training data)."""
    def compute(ws: Workspace, config: dict) -> str:
        return digest_file(setting_path(ws, config, setting, default))
    return compute


# [training] keys that judge a finished run rather than shape it: changing the gate's margin
# re-decides the gate, it does not make the trained adapter stale.
GATE_KEYS = ("task_margin", "general_tolerance")
MEMORY_SETTING_KEYS = ("headroom", "context_length", "batch_size")
QUANT_SETTING_KEYS = ("quant_tolerance", "quant_reference")
PRICE_KEYS = ("price_per_hour", "price_per_1k_tokens")


def _train_config(ws: Workspace, config: dict) -> str:
    training = _table(config, "training")
    if not isinstance(training, dict):
        return ABSENT
    shaping = {key: value for key, value in training.items() if key not in GATE_KEYS}
    return digest_value(shaping) if shaping else ABSENT


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
    "adapter": _adapter,
    "evalset.task": _file_setting("eval_set", "evals/task.jsonl"),
    "evalset.general": _file_setting("general_set", "evals/general.jsonl"),
    "dataset": _file_setting("train_data", "data/train.jsonl"),
    "train_config": _train_config,
    "gate_config": _keys("training", GATE_KEYS),
    "data_config": _data_config,
    "memory_settings": _keys("settings", MEMORY_SETTING_KEYS),
    "quant_settings": _keys("settings", QUANT_SETTING_KEYS),
    "prices": _keys("settings", PRICE_KEYS),
    "release": _release,
}

# What each input is, in a person's words (`weightgate status --why`, the README's table).
INPUTS: dict[str, str] = {
    "requirements": "[requirements]: task, threshold, ceilings, deployment, intended use",
    "candidates": "[[candidates]]: the shortlist and what was read of each",
    "choice": "[decisions] model",
    "model": "the lock: source, revision and every file's sha256",
    "weights_on_disk": "size and mtime of every locked file on disk",
    "precision": "[decisions] precision",
    "adapter": "[decisions] adapter and its files' sha256",
    "evalset.task": "the task eval set file (cases, scorers, generation settings)",
    "evalset.general": "the general eval set file (cases, scorers, generation settings)",
    "dataset": "the training data file",
    "train_config": "[training], but for the gate's " + " and ".join(GATE_KEYS),
    "gate_config": "[training] " + ", ".join(GATE_KEYS),
    "data_config": "[data]: the training-data checks' thresholds",
    "memory_settings": "[settings] " + ", ".join(MEMORY_SETTING_KEYS),
    "quant_settings": "[settings] " + ", ".join(QUANT_SETTING_KEYS),
    "prices": "[settings] " + ", ".join(PRICE_KEYS),
    "release": "[decisions] release and that version's manifest identity",
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

