"""Pickle and remote-code policy: refused by default, trusted explicitly, per file or per commit.

Trust lives in weightgate.toml, written through `Workspace.update_config` so people's comments
survive:

    [trust.pickle."checkpoints/pytorch_model.bin"]
    sha256 = "9f86d0..."          # trust is for these exact bytes; a changed file is untrusted
    note = "our own fine-tune, built by CI job 4411"
    trusted_at = "2025-06-01T12:00:00Z"

    [trust.remote_code."org/name"]
    commit = "0123...89ab"        # 40 hex digits; the code at any other commit is not trusted
    note = "reviewed modeling_x.py line by line"
    trusted_at = "..."

Why there is no `allow_unsafe`: trust answers "do I believe these bytes came from where I
think", the scan answers "what would loading them run". A file whose scan is not clean imports
something outside what a state dict of tensors needs, so it is either hostile or not weights
(training_args.bin, rng_state.pth); neither is made safe by believing in its origin. The only
loader weightgate has, `torch.load(weights_only=True)`, would refuse most such files anyway,
and its own allowlist has had bypasses (CVE-2025-32434), so the scanner is the second lock on
the door and must not have a key under the mat. Someone who needs such a file converts it in a
throwaway sandbox and brings back safetensors.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

import tomlkit

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.hashing import sha256_file, sha256_handle
from weightgate.core.engine.workspace import Workspace
from weightgate.core.weights.metadata import remote_code_reasons
from weightgate.core.weights.pickle_rules import PickleFinding, PickleScanError, ScanResult
from weightgate.core.weights.picklescan import PICKLE_SUFFIXES, scan_file_cached, scan_handle
from weightgate.core.weights.safetensors_format import validate_safetensors
from weightgate.core.weights.sources import is_commit

TRUST_TABLE = "trust"
PICKLE_TABLE = "pickle"
REMOTE_CODE_TABLE = "remote_code"

# The commands named in hints; the CLI implements them with these exact spellings.
TRUST_PICKLE_COMMAND = "weightgate weights trust pickle"
TRUST_REMOTE_CODE_COMMAND = "weightgate weights trust remote-code"

UNTRUSTED = "untrusted"
CHANGED = "changed"
UNSAFE = "unsafe"
MALFORMED = "malformed"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_REPO = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class PickleRefused(InputError):
    """A pickle file weightgate will not load; `reason` is one of UNTRUSTED/CHANGED/UNSAFE/MALFORMED."""

    reason: str = UNTRUSTED
    sha256: str = ""
    findings: tuple[PickleFinding, ...] = ()


@dataclass
class RemoteCodeRefused(InputError):
    """A model that needs its own Python code, without a trust at this exact commit."""

    repo: str = ""
    commit: str = ""
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class PickleTrust:
    path: str
    sha256: str
    note: str
    trusted_at: str = ""


@dataclass(frozen=True)
class RemoteCodeTrust:
    repo: str
    commit: str
    note: str
    trusted_at: str = ""


@dataclass(frozen=True)
class RemoteCodeCheck:
    needed: bool                 # the repo carries code that transformers would run
    reasons: tuple[str, ...]     # why we think so: "config.json has auto_map", "modeling_x.py"
    trusted_commit: str = ""     # set when needed and trusted at this commit


# --- pickle trust ---------------------------------------------------------------------------


def pickle_key(ws: Workspace, path: str | os.PathLike) -> str:
    """How a file is named in [trust.pickle]: relative to the workspace, '/'-separated, if it
    is inside it; otherwise its absolute path (files in the Hugging Face cache). `..` is
    normalised away; symlinks are not followed."""
    full = _full_path(ws, path)
    try:
        return full.relative_to(Path(os.path.abspath(ws.root))).as_posix()
    except ValueError:
        return full.as_posix()


def trust_pickle(ws: Workspace, relative_path: str | os.PathLike, sha256: str, note: str, *,
                 despite_findings: bool = False) -> PickleTrust:
    """Record that a person trusts the file with exactly these bytes, and why.

    If the file is present, `sha256` must be its hash now: trusting a hash that is not the
    file's would look like consent while protecting nothing. A file whose scan finds imports
    outside the allowlist (or that is not a readable pickle) is trusted only with
    despite_findings, and even then never loaded: check_pickle_allowed refuses an unsafe scan
    whatever its trust says.
    """
    sha = _check_sha256(sha256)
    note = _check_note(note)
    key = pickle_key(ws, relative_path)
    full = _full_path(ws, relative_path)
    if full.is_file():
        actual = sha256_file(full)
        if actual != sha:
            raise InputError(f"the file's sha256 is {actual}, not {sha}", path=full,
                             hint="trust the hash of the bytes you reviewed; re-download if it changed")
        problem = scan_problem(full)
        if problem and not despite_findings:
            raise InputError(f"{problem}: trusting it would not make it loadable (an unsafe scan is refused "
                             "whatever its trust says)", path=full,
                             hint="ask the publisher for safetensors; to record your trust anyway, add "
                                  "--despite-findings")
    trust = PickleTrust(path=key, sha256=sha, note=note, trusted_at=_now())
    _save(ws, PICKLE_TABLE, key, {"sha256": trust.sha256, "note": trust.note, "trusted_at": trust.trusted_at})
    return trust


def scan_problem(path: Path) -> str:
    """'' when the static scan of the file is clean, else what it found (named, first few)."""
    try:
        scan = scan_file_cached(path)
    except PickleScanError as exc:
        return f"not a readable pickle: {exc.message}"
    if scan.safe:
        return ""
    dangerous = [f for f in scan.findings if f.severity == "dangerous"]
    shown = sorted({f.qualname for f in (dangerous or scan.findings)})
    what = "dangerous import(s)/call(s)" if dangerous else "import(s)/call(s) outside the allowlist"
    return f"the scan found {len(shown)} {what}: {', '.join(shown[:4])}" + (" ..." if len(shown) > 4 else "")


def untrust_pickle(ws: Workspace, relative_path: str | os.PathLike) -> bool:
    """Remove a file's trust; False if it was not trusted."""
    return _remove(ws, PICKLE_TABLE, pickle_key(ws, relative_path))


def pickle_trust(ws: Workspace, path: str | os.PathLike) -> PickleTrust | None:
    key = pickle_key(ws, path)
    entry = _entries(ws, PICKLE_TABLE).get(key)
    if entry is None:
        return None
    sha, note = entry.get("sha256"), entry.get("note", "")
    if not isinstance(sha, str) or not _SHA256.match(sha.lower()) or not isinstance(note, str):
        raise InputError(f'[trust.pickle."{key}"] needs sha256 = "<64 hex digits>" and a note string',
                         path=ws.config_path, hint=f"remove the entry and run `{TRUST_PICKLE_COMMAND}` again")
    return PickleTrust(path=key, sha256=sha.lower(), note=note, trusted_at=str(entry.get("trusted_at", "")))


def is_trusted(ws: Workspace, path: str | os.PathLike, sha256: str) -> bool:
    trust = pickle_trust(ws, path)
    return trust is not None and trust.sha256 == sha256.strip().lower()


def check_pickle_allowed(ws: Workspace, path: str | os.PathLike) -> ScanResult:
    """The scan of a pickle file that may be loaded (with torch.load(weights_only=True)).

    Raises PickleRefused unless the scan is clean AND the workspace trusts these exact bytes.
    The scan comes first: a file that is unsafe is refused whatever its trust says, and the
    message then lists what it would import instead of suggesting to trust it.
    """
    full = _full_path(ws, path)
    try:
        handle = open(full, "rb")
    except OSError as exc:
        raise PickleRefused(f"cannot read the file: {exc.strerror or exc}", path=full, reason=MALFORMED) from None
    with handle:
        scan, _sha = check_pickle_handle(ws, full, handle)
    return scan


def check_pickle_handle(ws: Workspace, path: str | os.PathLike, handle: BinaryIO) -> tuple[ScanResult, str]:
    """check_pickle_allowed on an open file; returns the scan and the sha256 of those bytes.

    The conversion job hashes, scans and loads through one handle, so the bytes checked are the
    bytes loaded even if someone replaces the file (rename) meanwhile.
    """
    full = _full_path(ws, path)
    key = pickle_key(ws, path)
    sha = _sha256_handle(handle)
    try:
        scan = scan_handle(handle, full)
    except PickleScanError as exc:
        raise PickleRefused(f"not a loadable pickle: {exc.message}", path=full, reason=MALFORMED, sha256=sha,
                            findings=exc.findings,
                            hint="weightgate never loads a malformed pickle; get the weights as safetensors") from None
    if not scan.safe:
        shown = "; ".join(f.describe() for f in scan.findings[:5])
        more = f" (and {len(scan.findings) - 5} more)" if len(scan.findings) > 5 else ""
        raise PickleRefused(
            f"pickle scan found {len(scan.findings)} import(s)/call(s) outside the state-dict allowlist: "
            f"{shown}{more}", path=full, reason=UNSAFE, sha256=sha, findings=scan.findings,
            hint="weightgate will not load this file, trusted or not; ask the publisher for safetensors, "
                 "or convert it yourself in a disposable sandbox")
    trust = pickle_trust(ws, key)
    command = f'{TRUST_PICKLE_COMMAND} {_shell_quote(key)} --sha256 {sha} --note "<why you trust this file>"'
    if trust is None:
        raise PickleRefused(
            "pickle files are refused unless you trust them: loading a pickle can run code", path=full,
            reason=UNTRUSTED, sha256=sha,
            hint=f"the scan is clean ({len(scan.imports)} allowlisted imports); if you trust where these bytes "
                 f"came from, run: {command}")
    if trust.sha256 != sha:
        raise PickleRefused(
            f"the file changed since it was trusted (trusted sha256 {trust.sha256[:12]}, now {sha[:12]})",
            path=full, reason=CHANGED, sha256=sha,
            hint=f"trust is for exact bytes; if the new bytes are ones you trust, run: {command}")
    return scan, sha


# --- safetensors twins ----------------------------------------------------------------------
# A trusted pickle is still not what later phases load: they load with use_safetensors=True, so
# a pickle-only model becomes usable once each pickle weight file has a safetensors "twin" next
# to it, converted from exactly the trusted bytes (the twin's header metadata carries the source's
# sha256) and locked in weightgate.lock like any other file.

TWIN_SOURCE_KEY = "source_sha256"        # in the twin's __metadata__, written by the conversion job
PICKLE_INDEX = "pytorch_model.bin.index.json"
TWIN_INDEX = "model.safetensors.index.json"
_HF_PICKLE_NAME = re.compile(r"^pytorch_model(?P<shard>-\d{5}-of-\d{5})?$")
_TWIN_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")


def twin_name(path: str) -> str:
    """The safetensors file a pickle weight file converts to, '/'-separated like lock paths.

    Named the way transformers looks for weights with use_safetensors=True: the Hugging Face
    pickle names map to theirs (pytorch_model.bin -> model.safetensors, pytorch_model-00001-of-
    00002.bin -> model-00001-of-00002.safetensors); any other file keeps its stem."""

    posix = PurePosixPath(str(path).replace("\\", "/"))
    name = posix.name
    stem = name
    for suffix in sorted(PICKLE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        stem = PurePosixPath(name).stem
    match = _HF_PICKLE_NAME.match(stem)
    if match:
        stem = "model" + (match["shard"] or "")
    return str(posix.with_name(stem + ".safetensors"))


def is_twin_shard(path: str) -> bool:
    return bool(_TWIN_SHARD.match(PurePosixPath(path).name))


def twin_source_sha256(path: str | os.PathLike) -> str | None:
    """The sha256 of the pickle a safetensors file was converted from (its header metadata), or
    None when it names none. Reads the header only; a bad header raises core.weights.safetensors_format's
    typed error."""

    info = validate_safetensors(path)
    value = (info.metadata or {}).get(TWIN_SOURCE_KEY)
    return value.lower() if isinstance(value, str) and _SHA256.match(value.lower()) else None


# --- remote code ----------------------------------------------------------------------------


def check_remote_code(ws: Workspace, repo: str, commit: str, config_json: dict,
                      files: Iterable[str] = ()) -> RemoteCodeCheck:
    """Allow a model's custom code only if the workspace trusts `repo` at exactly `commit`.

    What counts as custom code is core.weights.sources.remote_code_reasons: the rule the metadata and
    the download apply, so this check never disagrees with them about the same repo."""
    reasons = tuple(remote_code_reasons(config_json, files))
    if not reasons:
        return RemoteCodeCheck(needed=False, reasons=())
    repo = _check_repo(repo)
    shown = "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")
    if not is_commit(commit.strip().lower()):
        raise RemoteCodeRefused(
            f"{repo} needs remote code ({shown}) and {commit!r} is not a pinned commit",
            path=ws.config_path, repo=repo, commit=commit, reasons=reasons,
            hint="remote code is trusted only at a 40-hex commit; resolve the revision to its commit first")
    commit = commit.strip().lower()
    command = f'{TRUST_REMOTE_CODE_COMMAND} {repo}@{commit} --note "<what you reviewed>"'
    trust = remote_code_trust(ws, repo)
    if trust is None:
        raise RemoteCodeRefused(
            f"{repo} needs remote code ({shown}); weightgate eval runs no code from a model repo without consent",
            path=ws.config_path, repo=repo, commit=commit, reasons=reasons,
            hint=f"prefer a model that needs none; after reviewing the code at that commit, run: {command}")
    if trust.commit != commit:
        raise RemoteCodeRefused(
            f"{repo} is trusted at commit {trust.commit[:12]}, not at {commit[:12]}: the code may have changed",
            path=ws.config_path, repo=repo, commit=commit, reasons=reasons,
            hint=f"review the code at {commit[:12]}, then run: {command}")
    return RemoteCodeCheck(needed=True, reasons=reasons, trusted_commit=commit)


def trust_remote_code(ws: Workspace, repo: str, commit: str, note: str) -> RemoteCodeTrust:
    """Trust `repo`'s code at one commit (replacing any earlier pin: the pin moves explicitly)."""
    repo = _check_repo(repo)
    commit = _check_commit(commit)
    note = _check_note(note)
    trust = RemoteCodeTrust(repo=repo, commit=commit, note=note, trusted_at=_now())
    _save(ws, REMOTE_CODE_TABLE, repo, {"commit": trust.commit, "note": trust.note, "trusted_at": trust.trusted_at})
    return trust


def untrust_remote_code(ws: Workspace, repo: str) -> bool:
    return _remove(ws, REMOTE_CODE_TABLE, _check_repo(repo))


def remote_code_trust(ws: Workspace, repo: str) -> RemoteCodeTrust | None:
    entry = _entries(ws, REMOTE_CODE_TABLE).get(repo)
    if entry is None:
        return None
    commit, note = entry.get("commit"), entry.get("note", "")
    if not isinstance(commit, str) or not is_commit(commit.lower()) or not isinstance(note, str):
        raise InputError(f'[trust.remote_code."{repo}"] needs commit = "<40 hex digits>" and a note string',
                         path=ws.config_path, hint=f"remove the entry and run `{TRUST_REMOTE_CODE_COMMAND}` again")
    return RemoteCodeTrust(repo=repo, commit=commit.lower(), note=note, trusted_at=str(entry.get("trusted_at", "")))


# --- helpers --------------------------------------------------------------------------------


def _sha256_handle(handle: BinaryIO) -> str:
    """The whole file's sha256, leaving the handle at the start for the scan and the load."""
    handle.seek(0)
    sha = sha256_handle(handle)
    handle.seek(0)
    return sha


def _full_path(ws: Workspace, path: str | os.PathLike) -> Path:
    # abspath, not resolve: the files of a Hugging Face snapshot are symlinks to blobs/<hash>,
    # and the trust should name the file the person reviewed. The sha256 pins the bytes anyway.
    raw = Path(path)
    return Path(os.path.abspath(raw if raw.is_absolute() else ws.root / raw))


def _check_sha256(sha256: str) -> str:
    sha = str(sha256).strip().lower().removeprefix("sha256:")
    if not _SHA256.match(sha):
        raise InputError(f"{sha256!r} is not a sha256 (64 hex digits)",
                         hint="`sha256sum FILE` prints it; trust is tied to the exact bytes")
    return sha


def _check_commit(commit: str) -> str:
    value = str(commit).strip()
    if is_commit(value.lower()):
        return value.lower()
    if _HEX.match(value) and 4 <= len(value) < 40:
        raise InputError(f"{value!r} is a short commit sha; remote code is trusted only at a full 40-hex commit",
                         hint="give all 40 hex digits (the hub shows them on the commit page)")
    raise InputError(f"{value!r} is a branch or tag name, not a commit: a branch can move to code you never reviewed",
                     hint="pin the exact 40-hex commit you reviewed")


def _check_repo(repo: str) -> str:
    value = str(repo).strip()
    if not _REPO.match(value) or ".." in value:
        raise InputError(f"{repo!r} is not a hub repo id", hint="use org/name")
    return value


def _check_note(note: str) -> str:
    value = " ".join(str(note).split())
    if not value:
        raise InputError("trust needs a note saying why",
                         hint='e.g. --note "our own checkpoint, built by CI job 4411"')
    return value


def _table(doc, name: str):
    """doc[trust][name], created as dotted super-tables so only the entries get headers."""
    if TRUST_TABLE not in doc:
        doc.add(TRUST_TABLE, tomlkit.table(is_super_table=True))
    trust = doc[TRUST_TABLE]
    if name not in trust:
        trust.add(name, tomlkit.table(is_super_table=True))
    return trust[name]


def _entries(ws: Workspace, name: str) -> dict:
    trust = ws.config().get(TRUST_TABLE, {})
    table = trust.get(name, {}) if isinstance(trust, dict) else {}
    if not isinstance(table, dict):
        raise InputError(f"[{TRUST_TABLE}.{name}] must be a table", path=ws.config_path)
    return {str(key): value for key, value in table.items() if isinstance(value, dict)}


def _save(ws: Workspace, name: str, key: str, fields: dict[str, str]) -> None:
    """[trust.<name>."<key>"] = fields, replacing that entry only (the rest of the file, comments
    included, is kept by update_config)."""
    def change(doc):
        entry = tomlkit.table()
        for field_name, value in fields.items():
            entry.add(field_name, value)
        _table(doc, name)[key] = entry

    ws.update_config(change)


def _remove(ws: Workspace, name: str, key: str) -> bool:
    removed = False

    def change(doc):
        nonlocal removed
        table = doc.get(TRUST_TABLE, {}).get(name, {})
        if key in table:
            del table[key]
            removed = True

    if key in _entries(ws, name):
        ws.update_config(change)
    return removed


def _shell_quote(text: str) -> str:
    return text if re.match(r"^[\w./@:+-]+$", text) else "'" + text.replace("'", "'\"'\"'") + "'"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
