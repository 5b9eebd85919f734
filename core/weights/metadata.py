"""What we can learn about a model *without downloading its weights*, for any source.

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
A local directory or GGUF file is read from disk: config, headers, licence, remote code.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from weightgate.core.engine.errors import InputError
from weightgate.core.weights.hub import (
    CONFIG_MAX_BYTES,
    README_MAX_BYTES,
    _Counter,
    _fetch_small,
    _hub_safetensors_headers,
    hub_endpoint,
    hub_files,
    resolve_revision,
)
from weightgate.core.weights.safetensors_format import SafetensorsInfo, validate_safetensors
from weightgate.core.weights.sources import (
    HUB,
    LOCAL,
    PICKLE_SUFFIXES,
    TRAINING_LEFTOVERS,
    FileInfo,
    Source,
    is_commit,
    parse_source,
    size_class,
    weight_files,
)


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


def count_parameters(headers: Iterable[SafetensorsInfo]) -> dict[str, int]:
    """Exact parameter counts by dtype over a model's safetensors shards."""
    counts: dict[str, int] = {}
    for header in headers:
        for dtype, count in header.params_by_dtype().items():
            counts[dtype] = counts.get(dtype, 0) + count
    return dict(sorted(counts.items()))


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


def local_files(root: Path) -> list[FileInfo]:
    """Every file of a local model directory. Refuses, naming the path, what could block a read
    or steer it elsewhere: a FIFO, socket or device (opening a FIFO waits forever), and a symlink
    that leaves the directory (in a Hugging Face cache snapshot, links into the repo's blobs/
    are what the cache is made of, and are allowed)."""
    files = []
    inside = [root.resolve()]
    if root.parent.name == "snapshots":
        inside.append(root.parent.parent.resolve())
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel.startswith(".") or "/." in rel:
                continue
            try:
                if full.is_symlink():
                    target = full.resolve()
                    if not any(target.is_relative_to(base) for base in inside):
                        raise InputError(f"{rel} is a symlink to {target}, outside the model directory", path=full,
                                         hint="copy the file into the directory (weightgate locks only what is "
                                              "inside it), or remove the link")
                mode = full.stat().st_mode     # follows symlinks: an HF snapshot dir works too
            except OSError:
                continue
            if not stat.S_ISREG(mode):
                kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
                raise InputError(f"{rel} is {kind}: a model file must be a regular file (reading it could block "
                                 "forever)", path=full, hint="remove it from the model directory")
            files.append(FileInfo(path=rel, size=full.stat().st_size))
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
