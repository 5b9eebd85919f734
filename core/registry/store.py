"""The model registry inside the workspace: shipped versions, movable aliases, their history.

    registry/<name>/
        v1/, v2/, ...        one shipped version each (weights, tokenizer, SHA256SUMS,
                             manifest.toml, README.md card, eval/ results); never changed
        aliases.json         {"current": "v2", "previous": "v1", "candidate": "v3", ...}: movable
                             names; ship makes a version the candidate, promote makes it current
        history.jsonl        append-only: every alias move (who, when, from, to, why)
        .staging-*/          a version being built; renamed to vN when complete

A version is built in a staging directory and renamed into place in one step, so a crash
mid-ship leaves a staging directory (cleaned by the next ship), never half a version. Its weights
never change; promotion adds its record to manifest.toml and README.md (SHA256SUMS re-written to
cover them). Torch-free:
status, `versions` and `rollback` read this.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from weightgate.core.engine.atomic import append_line, fsync_dir, write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import _user
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.jsonl import iter_jsonl
from weightgate.core.engine.lock import read_lock
from weightgate.core.engine.workspace import Workspace

ALIASES_FILE = "aliases.json"
HISTORY_FILE = "history.jsonl"
MANIFEST_FILE = "manifest.toml"
SUMS_FILE = "SHA256SUMS"
CARD_FILE = "README.md"
STAGING_PREFIX = ".staging-"
CURRENT, PREVIOUS, CANDIDATE = "current", "previous", "candidate"
# Moved only by ship, promote and rollback, which keep [decisions] release in step.
MANAGED_ALIASES = (CURRENT, PREVIOUS, CANDIDATE)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
GENERIC_DIR_NAMES = {"model", "models", "weights", "snapshot", "checkpoint", "final", "best", "hf", "safetensors"}
# The quantization tag at the end of a GGUF's name: .Q4_1, -q4_k_m, .IQ3_XXS, -f16, .BF16
GGUF_QUANT_TAG = re.compile(r"[._-](?:I?Q\d+(?:_[0-9A-Z]+)*|F16|F32|BF16)$", re.IGNORECASE)
# A staging directory this old belongs to a ship that died (a ship takes minutes at most).
STALE_STAGING_S = 3600.0


@dataclass(frozen=True)
class VersionRef:
    name: str
    version: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def number(self) -> int:
        return int(VERSION_RE.match(self.version).group(1))


# --- names ----------------------------------------------------------------------------------


def slug(text: str) -> str:
    value = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:64]
    return value or "model"


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InputError(f"registry name {name!r} is not usable",
                         hint="lower-case letters, digits, '.', '_' and '-', starting with a letter or digit "
                              "(at most 64), e.g. --name dates-smollm2")
    return name


def check_alias(alias: str) -> str:
    if not ALIAS_RE.match(alias or "") or VERSION_RE.match(alias):
        raise InputError(f"alias {alias!r} is not usable",
                         hint="lower-case letters, digits, '_' and '-', starting with a letter, not of the form vN")
    return alias


def release_decision(config: dict) -> str:
    decisions = config.get("decisions") if isinstance(config.get("decisions"), dict) else {}
    value = decisions.get("release")
    return value if isinstance(value, str) else ""


def default_name(ws: Workspace, config: dict | None = None) -> str:
    """The registry name: the current release's, else the only one in registry/, else the locked
    model's directory or repo name, else the workspace directory's."""

    config = config if config is not None else plain(ws.config())
    release = release_decision(config)
    if "@" in release:
        return release.split("@", 1)[0]
    names = list_names(ws)
    if len(names) == 1:
        return names[0]

    lock = read_lock(ws)
    if lock is not None and lock.source:
        path = Path(lock.source.rstrip("/"))
        # ".../smollm2-135m-instruct/model": the directory that says what the model is.
        if path.name.lower() in GENERIC_DIR_NAMES and path.parent.name:
            path = path.parent
        name = path.name
        if name.lower().endswith(".gguf"):
            # A GGUF is converted to safetensors on load: what ships is not its quantization, so
            # its tag (SmolLM2-135M-Instruct.Q4_1) would name a precision the versions do not have.
            name = GGUF_QUANT_TAG.sub("", name[: -len(".gguf")])
        return slug(name)
    return slug(ws.root.name)


def list_names(ws: Workspace) -> list[str]:
    root = ws.registry_dir
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name))


def name_dir(ws: Workspace, name: str) -> Path:
    return ws.registry_dir / check_name(name)


# --- versions -------------------------------------------------------------------------------


def list_versions(ws: Workspace, name: str) -> list[VersionRef]:
    """Complete versions (a manifest present), oldest first."""
    root = name_dir(ws, name)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = VERSION_RE.match(path.name)
        if match and path.is_dir() and (path / MANIFEST_FILE).is_file():
            found.append(VersionRef(name, path.name, path))
    return sorted(found, key=lambda ref: ref.number)


def next_version(ws: Workspace, name: str) -> str:
    root = name_dir(ws, name)
    numbers = [int(m.group(1)) for p in (root.iterdir() if root.is_dir() else [])
               if (m := VERSION_RE.match(p.name))]
    return f"v{max(numbers, default=0) + 1}"


def resolve(ws: Workspace, ref: str | None, name: str | None = None) -> VersionRef:
    """A version from what people type: v2, 2, an alias (current, previous, ...), or name@v2."""
    text = (ref or CURRENT).strip()
    if "@" in text:
        name, text = text.split("@", 1)
    name = check_name(name or default_name(ws))
    versions = {v.version: v for v in list_versions(ws, name)}
    if not versions:
        raise InputError(f"nothing shipped under {name!r} yet", path=ws.registry_dir / name,
                         hint="ship a version first: weightgate release ship")
    if text.isdigit():
        text = f"v{int(text)}"
    if not VERSION_RE.match(text):
        aliases = read_aliases(ws, name)
        if text not in aliases:
            raise InputError(f"{name} has no alias {text!r}", path=name_dir(ws, name) / ALIASES_FILE,
                             hint="aliases: " + (", ".join(f"{k} -> {v}" for k, v in sorted(aliases.items()))
                                                 or "none yet"))
        text = aliases[text]
    if text not in versions:
        raise InputError(f"{name} has no version {text}", path=name_dir(ws, name),
                         hint="versions: " + ", ".join(versions))
    return versions[text]


# --- aliases and their history --------------------------------------------------------------


def read_aliases(ws: Workspace, name: str) -> dict[str, str]:
    path = name_dir(ws, name) / ALIASES_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno, column=exc.colno,
                         hint="aliases.json is written by weightgate; history.jsonl holds every move "
                              "to rebuild it from") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InputError("aliases.json must map alias names to versions", path=path)
    return dict(data)


def read_history(ws: Workspace, name: str) -> list[dict]:
    path = name_dir(ws, name) / HISTORY_FILE
    if not path.exists():
        return []
    return [line.value for line in iter_jsonl(path, allow_partial_tail=True) if isinstance(line.value, dict)]


def move_aliases(ws: Workspace, name: str, moves: dict[str, str | None], reason: str) -> dict[str, str]:
    """Point each alias at a version (None removes it); write aliases.json atomically and append
    one history line per alias that actually moved."""
    with _alias_lock(ws, name):
        return _move_aliases(ws, name, moves, reason)


@contextmanager
def _alias_lock(ws: Workspace, name: str):
    """Serialise read-modify-write of aliases.json between a ship job, a rollback and the TUI."""

    path = name_dir(ws, name) / ".aliases.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _move_aliases(ws: Workspace, name: str, moves: dict[str, str | None], reason: str) -> dict[str, str]:
    aliases = read_aliases(ws, name)
    versions = {v.version for v in list_versions(ws, name)}
    now = time.time()
    moved = []
    for alias, version in moves.items():
        if alias not in MANAGED_ALIASES:
            check_alias(alias)
        if version is not None and version not in versions:
            raise InputError(f"{name} has no version {version}", path=name_dir(ws, name))
        before = aliases.get(alias)
        if before == version:
            continue
        if version is None:
            aliases.pop(alias, None)
        else:
            aliases[alias] = version
        moved.append({"time": now, "alias": alias, "from": before, "to": version, "reason": reason,
                      "by": _user()})
    if moved:
        write_atomic(name_dir(ws, name) / ALIASES_FILE, json.dumps(aliases, indent=2, sort_keys=True) + "\n")
        for record in moved:
            append_line(name_dir(ws, name) / HISTORY_FILE, json.dumps(record, sort_keys=True))
    return aliases


def set_release(ws: Workspace, ref: VersionRef) -> None:
    """[decisions] release = "name@vN": the `release` fingerprint every ship.* item is tied to."""

    def change(doc):
        if "decisions" not in doc:
            doc["decisions"] = tomlkit.table()
        doc["decisions"]["release"] = ref.label
    ws.update_config(change)


class NeverPromoted(InputError):
    """Rollback may only return to a version that was current before: anything else must pass
    promote (its phase-6 checks, or a recorded override). Exit code 1."""

    exit_code = 1


def was_current(ws: Workspace, name: str, version: str) -> bool:
    """Has `current` ever pointed at this version (history.jsonl)?"""
    return any(move.get("alias") == CURRENT and move.get("to") == version for move in read_history(ws, name))


def rollback(ws: Workspace, target: str | None = None, name: str | None = None) -> dict:
    """Move `current` to `target` (default: `previous`), a version that was current before;
    `previous` to what was current; record the moves and the release decision. The history
    keeps every earlier move. A version never current (a candidate) goes through promote."""
    name = check_name(name or default_name(ws))
    aliases = read_aliases(ws, name)
    current = aliases.get(CURRENT)
    if target is None:
        if PREVIOUS not in aliases:
            raise InputError(f"{name} has no previous version to roll back to",
                             path=name_dir(ws, name) / ALIASES_FILE,
                             hint="name one: weightgate release rollback v1 (weightgate release versions lists them)")
        target = aliases[PREVIOUS]
    ref = resolve(ws, target, name)
    if ref.version == current:
        raise InputError(f"{ref.label} is already current", hint="weightgate release versions lists the others")
    if not was_current(ws, name, ref.version):
        raise NeverPromoted(f"{ref.label} was never current: rollback returns only to versions that were",
                            path=name_dir(ws, name) / HISTORY_FILE,
                            hint=f"promote it once its phase-6 checks pass: weightgate release promote {ref.version}")
    with _alias_lock(ws, name):
        aliases = _move_aliases(ws, name, _current_moves(ws, name, ref.version), reason="rollback")
    set_release(ws, ref)
    return {"name": name, "current": ref.version, "previous": aliases.get(PREVIOUS), "from": current,
            "release": ref.label}


def _current_moves(ws: Workspace, name: str, version: str) -> dict[str, str | None]:
    """`current` to `version`, `previous` to what was current (dropped if that version is gone),
    `candidate` dropped when it is this version. Read under the alias lock."""
    aliases = read_aliases(ws, name)
    before = aliases.get(CURRENT)
    existing = {v.version for v in list_versions(ws, name)}
    moves: dict[str, str | None] = {CURRENT: version}
    if before is not None and before != version:
        moves[PREVIOUS] = before if before in existing else None
    if aliases.get(CANDIDATE) == version:
        moves[CANDIDATE] = None
    return moves


def promote_aliases(ws: Workspace, name: str, version: str, reason: str) -> tuple[dict[str, str], str | None]:
    """The promotion's alias moves, read and written under one lock (a ship or rollback in
    between cannot be lost): (the aliases after, what was current before)."""
    with _alias_lock(ws, name):
        before = read_aliases(ws, name).get(CURRENT)
        return _move_aliases(ws, name, _current_moves(ws, name, version), reason=reason), before


def set_alias(ws: Workspace, alias: str, version: str | None, name: str | None = None) -> dict[str, str]:
    """Point a custom alias (e.g. `staging`, `tenant-a`) at a version, or remove it (None).
    `current`, `previous` and `candidate` move only by ship, promote and rollback, which keep the
    release in step."""
    name = check_name(name or default_name(ws))
    if alias in MANAGED_ALIASES:
        raise InputError(f"{alias!r} is moved by weightgate release ship, promote and rollback",
                         hint="weightgate release promote VERSION makes a version current once its checks pass; "
                              "weightgate release rollback VERSION moves current back")
    check_alias(alias)
    target = resolve(ws, version, name).version if version is not None else None
    if target is None and alias not in read_aliases(ws, name):
        raise InputError(f"{name} has no alias {alias!r} to remove")
    return move_aliases(ws, name, {alias: target}, reason="alias")


# --- building a version atomically -----------------------------------------------------------


def new_staging(ws: Workspace, name: str) -> Path:
    root = name_dir(ws, name)
    root.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(ws, name)
    path = root / f"{STAGING_PREFIX}{int(time.time())}-{secrets.token_hex(3)}"
    path.mkdir()
    return path


def clean_stale_staging(ws: Workspace, name: str, max_age_s: float = STALE_STAGING_S) -> list[str]:
    root = name_dir(ws, name)
    removed = []
    for path in root.glob(f"{STAGING_PREFIX}*"):
        try:
            if time.time() - path.stat().st_mtime > max_age_s:
                shutil.rmtree(path)
                removed.append(path.name)
        except OSError:
            continue
    return removed


def publish(ws: Workspace, name: str, staging: Path) -> VersionRef:
    """Rename a complete staging directory to the next vN (fsynced first). Another ship taking the
    same number first makes the rename fail; then the next number is tried."""
    _fsync_tree(staging)
    root = name_dir(ws, name)
    for _ in range(100):
        version = next_version(ws, name)
        target = root / version
        try:
            os.rename(staging, target)   # fails if target exists and is not empty
        except OSError:
            if target.exists():
                continue
            raise
        fsync_dir(root)
        return VersionRef(name, version, target)
    raise RuntimeError("could not find a free version number")


def _fsync_tree(root: Path) -> None:
    for directory, _dirs, files in os.walk(root):
        for file in files:
            fd = os.open(os.path.join(directory, file), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(directory)
