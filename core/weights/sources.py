"""Model sources: a hub repo (`org/name[@revision]`), a local directory, a local `.gguf` file;
and what we can learn about a model *without downloading its weights*.

Hub metadata costs a few kilobytes per model, whatever its size:
  - one model-info call at the pinned commit (`?blobs=True`): every file with its size, git
    blob id and, for LFS files, the published sha256; the card data (licence);
  - config.json (a small git file, checked against its published git blob id);
  - each safetensors shard's header through HTTP range requests (8-byte length + the JSON),
    which gives the exact parameter count by dtype. The first request asks for a prefix sized
    to the shard (size / 10000, at most 64 KiB) so real shards need one request and tiny test
    shards do not pay for a fixed 100 kB probe; the rest of a big header is a second request.
    A server that ignores Range is read only as far as needed, then the stream is closed.
  - README.md only if the card data carries no licence.

huggingface_hub is imported inside the functions that talk to the hub: importing this module
must stay cheap (the TUI imports it at start-up).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Iterable
from urllib.parse import quote

from weightgate.core.engine.errors import InputError
from weightgate.core.weights.safetensors_format import (
    SafetensorsError,
    SafetensorsInfo,
    header_length,
    validate_header,
    validate_safetensors,
)

HUB, LOCAL, GGUF = "hub", "local", "gguf"
DEFAULT_REVISION = "main"

HEADER_PROBE_MAX = 64 * 1024            # first range request: at most this much
HEADER_PROBE_SHARE = 10_000             # ... and at most 0.01% of the shard
CONFIG_MAX_BYTES = 4 * 1024 * 1024
README_MAX_BYTES = 256 * 1024
HTTP_TIMEOUT_S = 30.0

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


class HubError(InputError):
    """The hub (or the network) said no: repo or revision not found, unreachable, bad answer."""

    exit_code = 1


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


@dataclass
class ModelMetadata:
    source: Source
    commit: str = ""                               # pinned 40-hex commit (hub)
    files: list[FileInfo] = field(default_factory=list)
    weight_format: str = ""                        # "safetensors" | "gguf" | "pickle" | ""
    weight_files: list[str] = field(default_factory=list)
    parameters: dict[str, int] = field(default_factory=dict)   # dtype -> count (exact, from headers)
    architecture: str = ""
    model_type: str = ""
    context_length: int | None = None
    num_layers: int | None = None
    num_attention_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    hidden_size: int | None = None
    vocab_size: int | None = None
    sliding_window: int | None = None
    sliding_window_layers: list[int] | None = None  # which layers use it (None: unknown or all)
    license: str = ""
    remote_code: bool = False
    remote_code_reasons: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)      # the raw config.json
    bytes_fetched: int = 0                          # network bytes spent on this metadata
    warnings: list[str] = field(default_factory=list)

    @property
    def parameter_count(self) -> int:
        return sum(self.parameters.values())

    @property
    def size_class(self) -> str:
        return size_class(self.parameter_count) if self.parameters else "?"

    @property
    def bf16_bytes(self) -> int:
        return 2 * self.parameter_count

    @property
    def weight_bytes(self) -> int:
        sizes = {f.path: f.size or 0 for f in self.files}
        return sum(sizes.get(path, 0) for path in self.weight_files)

    def file(self, path: str) -> FileInfo | None:
        return next((f for f in self.files if f.path == path), None)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["source"] = {**asdict(self.source), "display": str(self.source)}
        data.update(parameter_count=self.parameter_count, size_class=self.size_class, bf16_bytes=self.bf16_bytes,
                    weight_bytes=self.weight_bytes)
        return data


def size_class(parameters: int) -> str:
    for limit, label in SIZE_CLASSES:
        if parameters < limit:
            return label
    return ">40B"


def fetch_metadata(source: Source | str, *, commit: str | None = None, endpoint: str | None = None,
                   token: str | bool | None = None, parameters: bool = True) -> ModelMetadata:
    """Metadata for any source, without downloading weights. A hub source is pinned first
    (`commit`, if given, must be the commit the caller already pinned). parameters=False
    skips the safetensors headers (the download needs only files, licence and remote code)."""
    if isinstance(source, str):
        source = parse_source(source)
    if source.kind == HUB:
        return _hub_metadata(source, commit=commit, endpoint=endpoint, token=token, parameters=parameters)
    if source.kind == LOCAL:
        return local_metadata(source)
    return gguf_metadata(source)


# --- the hub --------------------------------------------------------------------------------


def hub_endpoint(endpoint: str | None = None) -> str:
    """The hub to talk to. HF_ENDPOINT is read now, not at import (huggingface_hub reads it
    once at import), so a process that set it late still goes where it asked."""
    from huggingface_hub import constants  # lazy: huggingface_hub only where it runs, never at import

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0

    def add(self, count: int) -> None:
        self.bytes += count   # += on an int under the GIL; metadata fetches are few


def _hub_headers(token: str | bool | None) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers  # lazy: huggingface_hub only where it runs, never at import

    # The token goes into the request header only; it is never logged or stored by us.
    return build_hf_headers(token=token, library_name="weightgate")


class _hub_errors:
    """Turn the client's exceptions into HubError with the repo and revision named."""

    def __init__(self, repo_id: str, revision: str, endpoint: str, what: str = "") -> None:
        self.repo_id, self.revision, self.endpoint, self.what = repo_id, revision, endpoint, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, InputError):
            return False
        import httpx2  # lazy: the hub's HTTP client, only when a request failed
        from huggingface_hub import errors as hf_errors  # lazy: huggingface_hub only where it runs, never at import

        where = f"{self.repo_id}@{self.revision}" + (f" ({self.what})" if self.what else "")
        if isinstance(exc, hf_errors.GatedRepoError):
            raise HubError(f"{self.repo_id} is gated: accept its terms on the hub and log in",
                           hint="`hf auth login`, or set HF_TOKEN") from None
        if isinstance(exc, hf_errors.RepositoryNotFoundError):
            raise HubError(f"no model repo {self.repo_id} on {self.endpoint} (or it is private)",
                           hint="check the name; for a private repo log in (`hf auth login` or HF_TOKEN)") from None
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            raise HubError(f"{self.repo_id} has no revision {self.revision!r}",
                           hint="give an existing branch, tag or commit sha") from None
        if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
            raise HubError(f"{where}: file not found on the hub") from None
        if isinstance(exc, hf_errors.HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            raise HubError(f"{where}: the hub answered HTTP {status}",
                           hint="try again later; if it persists, check HF_ENDPOINT") from None
        if isinstance(exc, (httpx2.TransportError, OSError)):
            raise HubError(f"{where}: cannot reach {self.endpoint}: {type(exc).__name__}: {exc}",
                           hint="check the network (and HF_ENDPOINT / proxy settings), then retry") from None
        return False


def resolve_revision(repo_id: str, revision: str | None = None, *, endpoint: str | None = None,
                     token: str | bool | None = None) -> str:
    """The 40-hex commit a branch, tag or (short) sha points to now: the pin."""
    check_repo_id(repo_id)
    revision = revision or DEFAULT_REVISION
    check_revision(revision)
    endpoint = hub_endpoint(endpoint)
    from huggingface_hub import HfApi  # lazy: huggingface_hub only where it runs, never at import

    with _hub_errors(repo_id, revision, endpoint, "resolving the revision"):
        info = HfApi(endpoint=endpoint, token=token, library_name="weightgate").model_info(
            repo_id, revision=revision, expand=["sha"], timeout=HTTP_TIMEOUT_S)
    sha = getattr(info, "sha", None)
    if not isinstance(sha, str) or not is_commit(sha):
        raise HubError(f"{repo_id}@{revision}: the hub gave no commit sha ({sha!r})",
                       hint="is HF_ENDPOINT a Hugging Face Hub?")
    if is_commit(revision) and sha != revision:
        raise HubError(f"{repo_id}: asked for commit {revision}, the hub answered {sha}")
    return sha


def hub_files(repo_id: str, commit: str, *, endpoint: str | None = None, token: str | bool | None = None,
              counter: _Counter | None = None) -> tuple[list[FileInfo], dict]:
    """Every file at `commit` (size, blob id, published LFS sha256) and the raw model info.
    Names are validated before anything else looks at them."""
    from huggingface_hub import HfApi  # noqa: F401 - the client's own parsing is used below
    from huggingface_hub.hf_api import ModelInfo  # lazy: huggingface_hub only where it runs, never at import
    from huggingface_hub.utils import (  # lazy: huggingface_hub only where it runs, never at import
        get_session,
        hf_raise_for_status,
    )

    endpoint = hub_endpoint(endpoint)
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(commit, safe='')}"
    with _hub_errors(repo_id, commit, endpoint, "listing files"):
        response = get_session().get(url, headers=_hub_headers(token), params={"blobs": True},
                                     timeout=HTTP_TIMEOUT_S)
        hf_raise_for_status(response)
        if counter is not None:
            counter.add(len(response.content))
        try:
            data = response.json()
        except ValueError:
            raise HubError(f"{repo_id}@{commit}: the model info is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("siblings"), list):
        raise HubError(f"{repo_id}@{commit}: the model info has no file list")
    if data.get("sha") != commit:
        raise HubError(f"{repo_id}: asked for commit {commit}, the model info is for {data.get('sha')!r}")
    check_repo_paths([s.get("rfilename") if isinstance(s, dict) else s for s in data["siblings"]],
                     repo_id=repo_id)
    info = ModelInfo(**data)
    files = []
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        sha256 = lfs.sha256.lower() if lfs is not None and isinstance(lfs.sha256, str) else None
        if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise HubError(f"{repo_id}@{commit}: {sibling.rfilename!r} has a malformed published sha256")
        files.append(FileInfo(path=sibling.rfilename, size=sibling.size, sha256=sha256, lfs=lfs is not None,
                              blob_id=sibling.blob_id))
    return files, data


def _hub_metadata(source: Source, *, commit: str | None, endpoint: str | None,
                  token: str | bool | None, parameters: bool = True) -> ModelMetadata:
    endpoint = hub_endpoint(endpoint)
    if commit is None:
        commit = resolve_revision(source.repo_id, source.revision_or_default, endpoint=endpoint, token=token)
    elif not is_commit(commit):
        raise InputError(f"a pinned commit is 40 hex digits, not {commit!r}")
    counter = _Counter()
    files, info = hub_files(source.repo_id, commit, endpoint=endpoint, token=token, counter=counter)
    meta = ModelMetadata(source=source, commit=commit, files=files)
    by_path = {f.path: f for f in files}

    if "config.json" in by_path:
        raw = _fetch_small(source.repo_id, commit, by_path["config.json"], endpoint, token, counter,
                           CONFIG_MAX_BYTES)
        meta.config = _parse_config(raw, f"{source.repo_id}@{commit[:12]}:config.json")
    else:
        meta.warnings.append("no config.json in the repo")
    _apply_config(meta, meta.config)

    _apply_weights(meta, by_path)
    if meta.weight_format == "safetensors" and parameters:
        headers = _hub_safetensors_headers(source.repo_id, commit, [by_path[p] for p in meta.weight_files],
                                           endpoint, token, counter)
        meta.parameters = count_parameters(headers.values())
    elif meta.weight_format == "gguf":
        meta.warnings.append("a GGUF repo: parameter counts need a chosen GGUF file")

    card = info.get("cardData") if isinstance(info.get("cardData"), dict) else None
    meta.license = license_from_card(card)
    if not meta.license and "README.md" in by_path:
        readme = _fetch_small(source.repo_id, commit, by_path["README.md"], endpoint, token, counter,
                              README_MAX_BYTES, verify=False)
        meta.license = license_from_card(front_matter(readme.decode("utf-8", errors="replace")))
    meta.remote_code_reasons = remote_code_reasons(meta.config, by_path)
    meta.remote_code = bool(meta.remote_code_reasons)
    meta.bytes_fetched = counter.bytes
    return meta


def _resolve_url(endpoint: str, repo_id: str, commit: str, path: str) -> str:
    from huggingface_hub import hf_hub_url  # lazy: huggingface_hub only where it runs, never at import

    return hf_hub_url(repo_id, path, revision=commit, endpoint=endpoint)


def _fetch_small(repo_id: str, commit: str, info: FileInfo, endpoint: str, token, counter: _Counter,
                 limit: int, *, verify: bool = True) -> bytes:
    """A small file's bytes in memory, checked against its published git blob id / sha256."""
    if info.size is not None and info.size > limit:
        raise HubError(f"{repo_id}@{commit[:12]}: {info.path} is {info.size} bytes, more than the {limit} "
                       "expected of it")
    url = _resolve_url(endpoint, repo_id, commit, info.path)
    data = _get_range(url, 0, limit, token=token, counter=counter, what=(repo_id, commit, info.path, endpoint))
    if verify:
        _check_small_file(repo_id, commit, info, data)
    return data


def _check_small_file(repo_id: str, commit: str, info: FileInfo, data: bytes) -> None:
    if info.size is not None and len(data) != info.size:
        raise HubError(f"{repo_id}@{commit[:12]}: {info.path}: got {len(data)} bytes, the hub lists {info.size}")
    if info.sha256:
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise HubError(f"{repo_id}@{commit[:12]}: {info.path} does not match its published sha256")
    elif info.blob_id:
        if git_blob_id(data) != info.blob_id:
            raise HubError(f"{repo_id}@{commit[:12]}: {info.path} does not match its published git blob id")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _get_range(url: str, start: int, length: int, *, token, counter: _Counter, what: tuple) -> bytes:
    """`length` bytes from `start` (fewer at the end of the file), over a streamed GET with a
    Range header. A server that ignores Range is read only as far as needed."""
    from huggingface_hub.utils import (  # lazy: huggingface_hub only where it runs, never at import
        get_session,
        hf_raise_for_status,
    )

    repo_id, commit, path, endpoint = what
    headers = {**_hub_headers(token), "Range": f"bytes={start}-{start + length - 1}",
               "Accept-Encoding": "identity"}
    out = bytearray()
    with _hub_errors(repo_id, commit, endpoint, path):
        with get_session().stream("GET", url, headers=headers, timeout=HTTP_TIMEOUT_S) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            skip = 0
            if response.status_code == 200:
                skip = start                      # Range ignored: the body starts at byte 0
            elif response.status_code == 206:
                content_range = response.headers.get("Content-Range", "")
                match = re.match(r"bytes (\d+)-", content_range)
                if not match or int(match.group(1)) != start:
                    raise HubError(f"{repo_id}@{commit[:12]}: {path}: the server answered range "
                                   f"{content_range!r} to a request from byte {start}")
            else:
                raise HubError(f"{repo_id}@{commit[:12]}: {path}: unexpected HTTP {response.status_code}")
            for chunk in response.iter_raw():
                counter.add(len(chunk))
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                out += chunk
                if len(out) >= length:
                    break                         # leaving the block closes the stream
    return bytes(out[:length])


def _hub_safetensors_headers(repo_id: str, commit: str, shards: list[FileInfo], endpoint: str, token,
                             counter: _Counter) -> dict[str, SafetensorsInfo]:
    """Each shard's header through range requests, checked by core.weights.safetensors_format against the
    size the hub lists: a hostile header is refused here with the same fault codes as on disk."""
    def one(info: FileInfo) -> tuple[str, SafetensorsInfo]:
        url = _resolve_url(endpoint, repo_id, commit, info.path)
        what = (repo_id, commit, info.path, endpoint)
        where = f"{repo_id}@{commit[:12]}:{info.path}"
        if info.size is None:   # the layout check needs the file's end
            raise HubError(f"{where}: the hub lists no size for this file, so its header cannot be checked")
        probe = max(8, min(HEADER_PROBE_MAX, info.size // HEADER_PROBE_SHARE))
        head = _get_range(url, 0, probe, token=token, counter=counter, what=what)
        try:
            if len(head) < min(8, info.size):
                raise HubError(f"{where}: the server sent {len(head)} bytes of a {info.size}-byte file")
            n = header_length(head, info.size, path=where)
            if len(head) < 8 + n:
                head += _get_range(url, len(head), 8 + n - len(head), token=token, counter=counter, what=what)
            if len(head) < 8 + n:
                raise HubError(f"{where}: the server sent {len(head)} bytes of an {8 + n}-byte header")
            return info.path, validate_header(head, info.size, path=where)
        except SafetensorsError as exc:
            # The stock hint says to fetch the file again; the hub would serve the same bytes.
            raise replace(exc, hint="the hub's copy of the file is malformed: do not use this model") from None

    # A few shards in parallel: each is one or two small requests, mostly latency.
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(shards)))) as pool:
        return dict(pool.map(one, shards))


def count_parameters(headers: Iterable[SafetensorsInfo]) -> dict[str, int]:
    """Exact parameter counts by dtype over a model's safetensors shards."""
    counts: dict[str, int] = {}
    for header in headers:
        for dtype, count in header.params_by_dtype().items():
            counts[dtype] = counts.get(dtype, 0) + count
    return dict(sorted(counts.items()))


# --- config, licence, remote code -----------------------------------------------------------


def _parse_config(raw: bytes, where: str) -> dict:
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{where}: config.json is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"{where}: config.json is not a JSON object")
    return config


def _apply_weights(meta: ModelMetadata, paths: Iterable[str]) -> None:
    """Which files hold the weights, in which format: the safetensors set, else the GGUF files,
    else root-level pickles (training leftovers aside). Hub and local sources decide alike."""
    paths = sorted(paths)
    if safetensors := weight_files(paths):
        meta.weight_format, meta.weight_files = "safetensors", safetensors
    elif ggufs := [p for p in paths if p.lower().endswith(".gguf")]:
        meta.weight_format, meta.weight_files = "gguf", ggufs
    elif pickles := [p for p in paths if "/" not in p and p.lower().endswith(PICKLE_SUFFIXES)
                     and p not in TRAINING_LEFTOVERS]:
        meta.weight_format, meta.weight_files = "pickle", pickles
        meta.warnings.append("pickle weights only: they must be scanned and trusted before any use")


def _first(config: dict, *keys: str) -> Any:
    for key in keys:
        value = config.get(key)
        if value is not None:
            return value
    return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return max(value)   # per-layer lists (some configs): the largest bounds the memory
    return None


def _apply_config(meta: ModelMetadata, config: dict) -> None:
    """Architecture and attention shape from a transformers config (a multimodal model's
    language part lives under text_config)."""
    if not config:
        return
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    merged = {**config, **{k: v for k, v in text.items() if v is not None}}
    architectures = config.get("architectures")
    meta.architecture = architectures[0] if isinstance(architectures, list) and architectures else ""
    meta.model_type = str(config.get("model_type") or text.get("model_type") or "")
    meta.architecture = meta.architecture or meta.model_type
    meta.context_length = _int_or_none(_first(merged, "max_position_embeddings", "n_positions",
                                              "max_sequence_length", "seq_length", "n_ctx"))
    meta.num_layers = _int_or_none(_first(merged, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    meta.num_attention_heads = _int_or_none(_first(merged, "num_attention_heads", "n_head", "num_heads",
                                                   "n_heads"))
    meta.hidden_size = _int_or_none(_first(merged, "hidden_size", "n_embd", "d_model", "dim"))
    meta.vocab_size = _int_or_none(_first(merged, "vocab_size", "padded_vocab_size"))
    kv = _first(merged, "num_key_value_heads", "num_kv_heads", "n_kv_heads", "multi_query_group_num")
    if kv is None and merged.get("multi_query") is True:
        kv = 1
    meta.num_kv_heads = _int_or_none(kv) if kv is not None else meta.num_attention_heads
    head_dim = _int_or_none(merged.get("head_dim"))
    if head_dim is None and meta.hidden_size and meta.num_attention_heads:
        head_dim = meta.hidden_size // meta.num_attention_heads
    meta.head_dim = head_dim
    meta.sliding_window, meta.sliding_window_layers = sliding_window_of(merged, meta.num_layers)


def sliding_window_of(config: dict, num_layers: int | None) -> tuple[int | None, list[int] | None]:
    """(window, layers using it). Layers come from `layer_types` when the config lists them,
    else from `sliding_window_pattern` (every Nth layer global), else Qwen2's
    `max_window_layers`; a plain `sliding_window` applies to every layer."""
    window = _int_or_none(config.get("sliding_window"))
    if window is None or window <= 0 or config.get("use_sliding_window") is False:
        return None, None
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        layers = [i for i, kind in enumerate(layer_types) if kind == "sliding_attention"]
        return (window, layers) if layers else (None, None)
    pattern = _int_or_none(config.get("sliding_window_pattern"))
    if pattern and num_layers:
        return window, [i for i in range(num_layers) if (i + 1) % pattern != 0]
    max_window_layers = _int_or_none(config.get("max_window_layers"))
    if config.get("use_sliding_window") is True and max_window_layers is not None and num_layers:
        return window, [i for i in range(num_layers) if i >= max_window_layers]
    return window, list(range(num_layers)) if num_layers else None


def front_matter(text: str) -> dict | None:
    """A model card's YAML front matter (None when absent or unreadable)."""
    match = re.match(r"^\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", text, re.S)
    if not match:
        return None
    try:
        import yaml  # lazy: only to read a model card's front matter

        data = yaml.safe_load(match.group(1))
    except Exception:  # noqa: BLE001 - a broken card is "no licence found", not a crash
        found = re.search(r"^license:\s*['\"]?([^'\"\n]+)", match.group(1), re.M)
        return {"license": found.group(1).strip()} if found else None
    return data if isinstance(data, dict) else None


def license_from_card(card: dict | None) -> str:
    if not isinstance(card, dict):
        return ""
    value = card.get("license")
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    value = str(value).strip() if value else ""
    if value == "other" and card.get("license_name"):
        value = f"other: {card['license_name']}"
    return value


def remote_code_reasons(config: dict, paths: Iterable[str] = ()) -> list[str]:
    """Why loading this model would run code from its repo: an `auto_map` (or
    `custom_pipelines`) anywhere in the raw config JSON (composite configs nest them, e.g. in
    text_config; the raw JSON, not what transformers makes of it), or Python files in the repo.
    The one detector: metadata, the download and core.weights.pickle_policy's trust check all use it."""
    reasons = []
    for where, value in _find_keys(config, ("auto_map", "custom_pipelines")):
        if isinstance(value, dict):
            shown = ", ".join(f"{k} -> {v}" for k, v in list(value.items())[:4])
        else:
            shown = str(value)[:120]
        reasons.append(f"config.json {where}: {shown}")
    for path in sorted(paths):
        if path.lower().endswith(".py"):
            reasons.append(f"python file {path}")
    return reasons


def _find_keys(data: Any, keys: tuple[str, ...], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """(dotted path, value) of every `keys` entry in nested dicts (bounded depth)."""
    found: list[tuple[str, Any]] = []
    if not isinstance(data, dict) or depth > 8:
        return found
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key in keys and value:
            found.append((where, value))
        elif isinstance(value, dict):
            found.extend(_find_keys(value, keys, where, depth + 1))
    return found


# --- local directories and GGUF files -------------------------------------------------------


def local_files(root: Path) -> list[FileInfo]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel.startswith(".") or "/." in rel:
                continue
            try:
                size = full.stat().st_size     # follows symlinks: an HF snapshot dir works too
            except OSError:
                continue
            files.append(FileInfo(path=rel, size=size))
    return files


def local_metadata(source: Source) -> ModelMetadata:
    root = Path(source.path)
    files = local_files(root)
    meta = ModelMetadata(source=source, files=files)
    paths = {f.path for f in files}
    if "config.json" in paths:
        meta.config = _parse_config((root / "config.json").read_bytes(), str(root / "config.json"))
    else:
        meta.warnings.append("no config.json in the directory")
    _apply_config(meta, meta.config)
    _apply_weights(meta, paths)
    if meta.weight_format == "safetensors":
        meta.parameters = count_parameters(validate_safetensors(root / p) for p in meta.weight_files)
    if "README.md" in paths:
        with open(root / "README.md", "rb") as handle:
            readme = handle.read(README_MAX_BYTES)
        meta.license = license_from_card(front_matter(readme.decode("utf-8", errors="replace")))
    meta.remote_code_reasons = remote_code_reasons(meta.config, paths)
    meta.remote_code = bool(meta.remote_code_reasons)
    return meta


def gguf_metadata(source: Source) -> ModelMetadata:
    """Architecture, attention shape, licence and parameter counts from a GGUF header."""
    path = Path(source.path)
    try:
        from gguf import GGUFReader  # lazy: gguf only where it runs, never at import

        reader = GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file, named
        raise InputError(f"cannot read the GGUF header: {type(exc).__name__}: {exc}", path=path) from None

    def value(key: str) -> Any:
        item = reader.fields.get(key)
        if item is None:
            return None
        try:
            return item.contents()
        except Exception:  # noqa: BLE001
            return None

    arch = str(value("general.architecture") or "")
    meta = ModelMetadata(source=source, files=[FileInfo(path=path.name, size=path.stat().st_size)],
                         weight_format="gguf", weight_files=[path.name])
    meta.architecture = meta.model_type = arch
    meta.context_length = _int_or_none(value(f"{arch}.context_length"))
    meta.num_layers = _int_or_none(value(f"{arch}.block_count"))
    meta.num_attention_heads = _int_or_none(value(f"{arch}.attention.head_count"))
    kv = _int_or_none(value(f"{arch}.attention.head_count_kv"))
    meta.num_kv_heads = kv if kv is not None else meta.num_attention_heads
    meta.hidden_size = _int_or_none(value(f"{arch}.embedding_length"))
    meta.head_dim = _int_or_none(value(f"{arch}.attention.key_length"))
    if meta.head_dim is None and meta.hidden_size and meta.num_attention_heads:
        meta.head_dim = meta.hidden_size // meta.num_attention_heads
    window = _int_or_none(value(f"{arch}.attention.sliding_window"))
    if window:
        meta.sliding_window = window
        meta.sliding_window_layers = list(range(meta.num_layers)) if meta.num_layers else None
    vocab = value("tokenizer.ggml.tokens")
    meta.vocab_size = len(vocab) if isinstance(vocab, list) else _int_or_none(value(f"{arch}.vocab_size"))
    meta.license = str(value("general.license") or "")
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        dtype = getattr(tensor.tensor_type, "name", str(tensor.tensor_type))
        counts[dtype] = counts.get(dtype, 0) + int(tensor.n_elements)
    meta.parameters = dict(sorted(counts.items()))
    return meta
