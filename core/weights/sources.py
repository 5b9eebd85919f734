"""Model sources: a hub repo (`org/name[@revision]`), a local directory, a local `.gguf` file.
Parsing and checking a source spec and the hub's file names, which files a model needs (safetensors
first; pickle only when nothing else exists), size classes. What a source holds is read by
metadata.py; the hub's HTTP side is hub.py.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from weightgate.core.engine.errors import InputError

HUB, LOCAL, GGUF = "hub", "local", "gguf"
DEFAULT_REVISION = "main"
# Pickle-based formats (never needed when safetensors exist) and other frameworks' weights.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
OTHER_WEIGHT_SUFFIXES = (".h5", ".msgpack", ".onnx", ".onnx_data", ".ot", ".tflite", ".mlmodel", ".gguf",
                         ".npz", ".joblib")
TRAINING_LEFTOVERS = ("optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "rng_state.pth",
                      "training_args.bin", "trainer_state.json")
# Small files a model needs besides its weights.
NEEDED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "tokenizer.model", "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt",
                "merges.txt", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
                "chat_template.json", "preprocessor_config.json", "processor_config.json", "README.md",
                "LICENSE", "LICENSE.txt", "LICENSE.md", "USE_POLICY.md", "NOTICE", "params.json")

SIZE_CLASSES = ((1e9, "<1B"), (3e9, "1-3B"), (8e9, "3-8B"), (15e9, "8-15B"), (40e9, "15-40B"))

_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_RE = re.compile(rf"^{_NAME_PART}/{_NAME_PART}$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/+-]{0,254}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.safetensors$")


# --- sources --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    kind: str                      # HUB | LOCAL | GGUF
    spec: str                      # as the user gave it
    repo_id: str = ""              # HUB
    revision: str = ""             # HUB: what was asked ("" means main)
    path: str = ""                 # LOCAL / GGUF: absolute path

    @property
    def revision_or_default(self) -> str:
        return self.revision or DEFAULT_REVISION

    def __str__(self) -> str:
        if self.kind == HUB:
            return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id
        return self.path


def parse_source(spec: str, *, cwd: str | os.PathLike | None = None) -> Source:
    """`org/name`, `org/name@revision`, a local directory or a local `.gguf` file.

    An `org/name` that exists as a directory under cwd is taken as that directory, as
    transformers does; write `./org/name` or `/abs/path` to be explicit either way.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("empty model source",
                         hint="give a hub repo (org/name or org/name@revision), a directory or a .gguf file")
    text = spec.strip()
    base = Path(cwd) if cwd is not None else Path.cwd()
    looks_like_path = (text.startswith(("/", "./", "../", "~")) or text in (".", "..")
                       or text.lower().endswith(".gguf") or "\\" in text)
    candidate = base / Path(text).expanduser()   # an absolute (or ~) path ignores base
    if "@" not in text and candidate.exists():
        return _path_source(text, candidate.resolve())
    if looks_like_path:
        raise InputError(f"no such file or directory: {text}", path=candidate,
                         hint="check the path, or give a hub repo as org/name")
    repo_id, at, revision = text.partition("@")
    if at and not revision:
        raise InputError(f"{text!r}: nothing after '@'", hint="write org/name@revision (a branch, tag or commit)")
    check_repo_id(repo_id)
    if revision:
        check_revision(revision)
    return Source(kind=HUB, spec=spec, repo_id=repo_id, revision=revision)


def _path_source(spec: str, path: Path) -> Source:
    if path.is_dir():
        return Source(kind=LOCAL, spec=spec, path=str(path))
    if path.suffix.lower() == ".gguf":
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic != b"GGUF":
            raise InputError(f"not a GGUF file (starts with {magic!r}, expected b'GGUF')", path=path)
        return Source(kind=GGUF, spec=spec, path=str(path))
    raise InputError("not a model source: a file that is not .gguf", path=path,
                     hint="give a hub repo (org/name[@revision]), a model directory or a .gguf file")


def check_repo_id(repo_id: str) -> None:
    problem = None
    if repo_id.count("/") != 1:
        problem = "a hub repo id is org/name (exactly one '/')"
    elif not _REPO_RE.match(repo_id):
        problem = "org and name use letters, digits, '-', '_' and '.', and start and end with a letter or digit"
    elif "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        problem = "'--', '..' and a trailing '.git' are not allowed in a repo id"
    if problem:
        raise InputError(f"malformed hub repo id {repo_id!r}: {problem}",
                         hint="e.g. HuggingFaceTB/SmolLM2-135M-Instruct or org/name@v1.0")


def check_revision(revision: str) -> None:
    if (not _REVISION_RE.match(revision) or ".." in revision or revision.endswith(("/", ".lock"))
            or "//" in revision):
        raise InputError(f"malformed revision {revision!r}",
                         hint="a branch, a tag or a commit sha (letters, digits, '.', '_', '-', '/')")


def is_commit(revision: str) -> bool:
    return bool(_COMMIT_RE.match(revision or ""))


# --- hub file names -------------------------------------------------------------------------


def repo_path_problem(name: Any) -> str | None:
    """Why a file name from the hub is unsafe to use as a path under a snapshot, or None."""
    if not isinstance(name, str) or not name:
        return "empty or not a string"
    if "\x00" in name:
        return "contains NUL"
    if "\\" in name:
        return "contains a backslash"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' component"
    if len(name) > 1024 or any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in parts):
        return "is too long"
    return None


def check_repo_paths(names: Iterable[Any], *, repo_id: str = "") -> None:
    """Refuse the whole listing if any name is hostile: one bad name means a hostile server."""
    bad = [(name, problem) for name in names if (problem := repo_path_problem(name))]
    if bad:
        shown = "; ".join(f"{name!r} ({problem})" for name, problem in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        where = f" in {repo_id}" if repo_id else ""
        raise HubError(f"refusing unsafe file names{where}: {shown}{more}",
                       hint="a hub listing must hold only relative paths without '..', backslashes or NUL; "
                            "do not use this source")


# --- what to fetch --------------------------------------------------------------------------


def weight_files(paths: Iterable[str]) -> list[str]:
    """The safetensors files that make up the model, or [] when it has none.

    The sharded set named like the index (`model-00001-of-00003.safetensors` next to
    `model.safetensors.index.json`), else `model.safetensors`, else the root-level files
    other than `consolidated*` (a duplicate some repos ship for other runtimes).
    """
    paths = sorted(paths)
    root = [p for p in paths if "/" not in p and p.endswith(".safetensors")]
    shards: dict[str, list[str]] = {}
    for path in root:
        if match := _SHARD_RE.match(path):
            shards.setdefault(match["prefix"], []).append(path)
    indexed = [p[: -len(".safetensors.index.json")] for p in paths if p.endswith(".safetensors.index.json")
               and "/" not in p]
    for prefix in indexed + ["model"] + sorted(shards):
        if prefix in shards:
            return shards[prefix]
    if "model.safetensors" in root:
        return ["model.safetensors"]
    return [p for p in root if not p.startswith("consolidated")]


def plan_files(paths: Iterable[str], *, include_remote_code: bool = False) -> tuple[list[str], dict[str, str]]:
    """(files to fetch, {skipped file: why}) for a model repo.

    Safetensors preferred: with safetensors present, pickle files and other formats are
    skipped. Without them, pickle weights are fetched (to be scanned; loading one still needs
    explicit trust). Training leftovers are always skipped; `*.py` only with remote code trusted.
    """
    paths = sorted(set(paths))
    weights = set(weight_files(paths))
    index_files = {p for p in paths if p.endswith(".safetensors.index.json") and "/" not in p}
    wanted, skipped = [], {}
    for path in paths:
        name = PurePosixPath(path).name
        lower = name.lower()
        if path in weights or path in index_files or path in NEEDED_FILES:
            wanted.append(path)
        elif name in TRAINING_LEFTOVERS:
            skipped[path] = "training leftover, not part of the model"
        elif lower.endswith(".py"):
            if include_remote_code:
                wanted.append(path)
            else:
                skipped[path] = "remote code (not trusted)"
        elif lower.endswith(".safetensors"):
            skipped[path] = "not part of the selected safetensors set"
        elif lower.endswith(PICKLE_SUFFIXES):
            if weights:
                skipped[path] = "pickle weights; safetensors are present"
            elif "/" not in path and lower.endswith((".bin", ".pt", ".pth", ".ckpt")):
                wanted.append(path)   # pickle-only model: fetched to be scanned, never loaded untrusted
            else:
                skipped[path] = "pickle file outside the model root"
        elif lower.endswith(OTHER_WEIGHT_SUFFIXES):
            skipped[path] = ("weights in another format" if weights or not lower.endswith(".gguf")
                             else "a GGUF variant: choose one explicitly (include=...)")
        elif "/" not in path and lower.endswith((".json", ".txt", ".model", ".jinja")):
            wanted.append(path)       # small root-level config / tokenizer files
        else:
            skipped[path] = "not needed to load the model"
    return wanted, skipped


# --- metadata -------------------------------------------------------------------------------


@dataclass
class FileInfo:
    path: str
    size: int | None = None
    sha256: str | None = None      # the published LFS sha256 (hub); None when nothing is published
    lfs: bool = False
    blob_id: str | None = None     # git object id (hub)


def size_class(parameters: int) -> str:
    for limit, label in SIZE_CLASSES:
        if parameters < limit:
            return label
    return ">40B"


# --- the hub --------------------------------------------------------------------------------


# --- config, licence, remote code -----------------------------------------------------------


# --- local directories and GGUF files -------------------------------------------------------


def _trim(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def human_params(count: int | float | None) -> str:
    """135M, 1.7B, 8B, 70B; 150K for a tiny test model; '?' when unknown."""
    if not count:
        return "?"
    count = float(count)
    if count >= 1e9:
        return f"{_trim(count / 1e9)}B"
    if count >= 1e6:
        return f"{count / 1e6:.0f}M"
    if count >= 1e3:
        return f"{count / 1e3:.0f}K"
    return f"{count:.0f}"


class HubError(InputError):
    """The hub (or the network) said no: repo or revision not found, unreachable, bad answer."""

    exit_code = 1
