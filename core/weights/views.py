"""What the Selection and Verification screens show, as data read in a thread worker:

    read_shortlist   the candidates of weightgate.toml with their cached metadata (never the
                     network), smallest first, and what is wrong with the shortlist
    read_lock_view   weightgate.lock and the files on disk: which moved since they last matched
                     (size or mtime; no hashing), which paths are unsafe, and every locked
                     pickle's static scan (cached by path, size and mtime; never unpickled),
                     trust and safetensors twin
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.lock import ModelLock, changed_on_disk, read_lock, snapshot_dir, unsafe_reason
from weightgate.core.engine.workspace import Workspace
from weightgate.core.weights.candidates import LARGE
from weightgate.core.weights.metadata_cache import load_metadata
from weightgate.core.weights.pickle_policy import TRUST_PICKLE_COMMAND, is_trusted, pickle_key, twin_name
from weightgate.core.weights.picklescan import is_pickle_path, scan_file_cached
from weightgate.core.weights.sources import human_params


@dataclass(frozen=True)
class Candidate:
    spec: str
    position: int                  # its place in weightgate.toml (0 = first)
    note: str = ""
    parameters: int | None = None  # None: no cached metadata
    size_class: str = ""
    bf16_bytes: int | None = None
    license: str = ""
    remote_code: bool | None = None
    chosen: bool = False

    @property
    def has_metadata(self) -> bool:
        return bool(self.parameters)


@dataclass(frozen=True)
class Shortlist:
    candidates: tuple[Candidate, ...] = ()  # smallest first; those without metadata last
    chosen: str | None = None
    chosen_reason: str = ""
    warnings: tuple[str, ...] = ()
    error: str | None = None

    def get(self, spec: str | None) -> Candidate | None:
        return next((c for c in self.candidates if c.spec == spec), None)


def shortlist_warnings(in_file_order: list[Candidate], chosen: str | None, large: int) -> list[str]:
    """What is wrong with the shortlist, in words, for the lines under the table. `large`: the
    size (core.weights.candidates.LARGE, 7B) from which a shortlist should also hold a smaller model."""
    warnings: list[str] = []
    sized = [c for c in in_file_order if c.has_metadata]
    big = [c for c in sized if c.parameters >= large]
    if big and not any(c.parameters < large for c in sized):
        smallest = min(big, key=lambda c: c.parameters)
        warnings.append(f"a large model ({smallest.spec}, {human_params(smallest.parameters)}) is shortlisted "
                        "without a smaller one: add the smallest plausible model first (+)")
    order = [c.parameters for c in sized]
    if order != sorted(order):
        first = next(c for i, c in enumerate(sized) if i + 1 < len(sized) and c.parameters > sized[i + 1].parameters)
        smaller = min((c for c in sized if c.position > first.position), key=lambda c: c.parameters)
        warnings.append(f"weightgate.toml is not smallest first: it lists {first.spec} "
                        f"({human_params(first.parameters)}) before {smaller.spec} "
                        f"({human_params(smaller.parameters)}); reorder [[candidates]] (the table is sorted for you)")
    missing = [c.spec for c in in_file_order if not c.has_metadata]
    if missing:
        warnings.append(f"metadata missing for {', '.join(missing)}: select it and press i "
                        "(reads config and headers, downloads no weights)")
    if chosen and not any(c.spec == chosen for c in in_file_order):
        warnings.append(f"the chosen model {chosen} is not on the shortlist: add it (+) or choose another (c)")
    return warnings


def read_shortlist(ws: Workspace) -> Shortlist:
    """Candidates from weightgate.toml + the metadata cache. Runs in a thread worker."""

    try:
        config = plain(ws.config())
    except InputError as exc:
        return Shortlist(error=exc.message)
    entries = config.get("candidates")
    entries = [e for e in entries if isinstance(e, dict) and e.get("source")] if isinstance(entries, list) else []
    decisions = config.get("decisions") if isinstance(config.get("decisions"), dict) else {}
    chosen = str(decisions["model"]) if decisions.get("model") else None
    candidates = []
    for position, entry in enumerate(entries):
        spec = str(entry["source"])
        meta = load_metadata(ws, spec) or {}
        parameters = meta.get("parameter_count")
        parameters = int(parameters) if isinstance(parameters, (int, float)) and parameters > 0 else None
        bf16 = meta.get("bf16_bytes")
        candidates.append(Candidate(
            spec=spec, position=position, note=str(entry.get("note") or ""), parameters=parameters,
            size_class=str(meta.get("size_class") or ""),
            bf16_bytes=int(bf16) if isinstance(bf16, (int, float)) else (2 * parameters if parameters else None),
            license=str(meta.get("license") or ""),
            remote_code=meta.get("remote_code") if isinstance(meta.get("remote_code"), bool) else None,
            chosen=spec == chosen))
    warnings = shortlist_warnings(candidates, chosen, LARGE)
    ordered = sorted(candidates, key=lambda c: (not c.has_metadata, c.parameters or 0, c.position))
    return Shortlist(tuple(ordered), chosen, str(decisions.get("model_reason") or ""), tuple(warnings))


@dataclass(frozen=True)
class LockView:
    """weightgate.lock and the files on disk, as of one read."""

    lock: ModelLock | None = None
    root: str = ""
    changed: frozenset[str] = frozenset()   # size or mtime differ from the lock (or missing)
    missing: frozenset[str] = frozenset()
    unsafe: frozenset[str] = frozenset()    # paths the lock must not steer a read to
    chosen: str | None = None
    error: str | None = None
    pickles: dict[str, PickleInfo] = field(default_factory=dict)   # locked pickle files


@dataclass(frozen=True)
class ScanSummary:
    """What the static scanner says a pickle would import (never unpickled)."""

    format: str = ""
    imports: tuple[str, ...] = ()    # module.name it would import, allowlisted or not
    findings: tuple[str, ...] = ()   # module.name outside the allowlist (the file is then unsafe)
    error: str = ""                  # malformed / unreadable

    @property
    def safe(self) -> bool:
        return not self.findings and not self.error


@dataclass(frozen=True)
class PickleInfo:
    scan: ScanSummary
    trusted: bool = False      # [trust.pickle] names this file at its locked sha256
    twin: str | None = None    # its safetensors twin, when that is in the lock too
    full_path: str = ""
    trust_command: str = ""    # the exact `weightgate weights trust pickle` command for its locked bytes


def scan_summary(path: Path) -> ScanSummary:
    """The static scan of one pickle (picklescan caches it while its size and mtime stay the same)."""

    try:
        result = scan_file_cached(path)
    except InputError as exc:
        found = tuple(f.qualname for f in getattr(exc, "findings", ()) or ())
        return ScanSummary(error=exc.message, findings=found)
    return ScanSummary(format=result.format, imports=tuple(f"{module}.{name}" for module, name in result.imports),
                       findings=tuple(dict.fromkeys(f.qualname for f in result.findings)))


def _pickle_infos(ws: Workspace, lock: ModelLock, root: Path, unsafe: frozenset[str]) -> dict[str, PickleInfo]:
    infos = {}
    for entry in lock.files:
        if entry.path in unsafe or not is_pickle_path(entry.path):
            continue
        full = root / entry.path
        try:
            trusted = is_trusted(ws, full, entry.sha256)
        except InputError:
            trusted = False
        twin = twin_name(entry.path)
        command = f'{TRUST_PICKLE_COMMAND} {pickle_key(ws, full)} --sha256 {entry.sha256} --note "<why>"'
        infos[entry.path] = PickleInfo(scan_summary(full), trusted, twin if lock.file(twin) else None, str(full),
                                       command)
    return infos


def read_lock_view(ws: Workspace) -> LockView:
    """Runs in a thread worker: reads the lock, stats the files and scans the pickles (no hashing)."""

    chosen = None
    try:
        decisions = plain(ws.config()).get("decisions")
        if isinstance(decisions, dict) and decisions.get("model"):
            chosen = str(decisions["model"])
    except InputError:
        pass  # the banner shows a broken weightgate.toml; the lock still reads
    try:
        lock = read_lock(ws)
        if lock is None:
            return LockView(chosen=chosen)
        root = snapshot_dir(ws, lock)
    except InputError as exc:
        text = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        return LockView(chosen=chosen, error=text)
    unsafe = frozenset(entry.path for entry in lock.files if unsafe_reason(entry.path) is not None)
    safe = [entry for entry in lock.files if entry.path not in unsafe]
    changed = frozenset(changed_on_disk(replace(lock, files=safe), root))
    missing = frozenset(path for path in changed if not (root / path).exists())
    pickles = _pickle_infos(ws, lock, root, unsafe)
    return LockView(lock=lock, root=str(root), changed=changed, missing=missing, unsafe=unsafe, chosen=chosen,
                    pickles=pickles)
