"""SHA256SUMS of a shipped version: write it, re-hash against it, and remember what was verified.

SHA256SUMS is in `sha256sum` format ("<hex>  <path>" a line, paths relative to the version
directory), so `cd registry/NAME/vN && sha256sum -c SHA256SUMS` verifies a copy anywhere without
weightgate. It covers every file of the version but itself (the manifest and the card included).

Re-hashing runs in parallel across files (core.engine.hashing). A verification stamp (each file's size
and mtime when its hash last matched) lives under .weightgate/releases/, outside the version, so
the status check can tell "unchanged since verified" from "touched: verify again" without hashing.
Torch-free.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.hashing import hash_files
from weightgate.core.engine.workspace import Workspace
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.store import SUMS_FILE, VersionRef

SUMS_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
OK, CHANGED, MISSING, EXTRA = "ok", "changed", "missing", "extra"
# SHA256SUMS lists another hash than manifest.toml's [[files]]: one of them was edited by hand.
DISAGREES = "sums_disagree_with_manifest"


def version_files(root: Path) -> list[str]:
    """Every regular file under `root` except SHA256SUMS, '/'-separated, sorted."""
    found = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for file in files:
            rel = os.path.relpath(os.path.join(directory, file), root).replace(os.sep, "/")
            if rel != SUMS_FILE:
                found.append(rel)
    return sorted(found)


def hash_tree(root: Path, paths: list[str] | None = None) -> dict[str, str]:
    paths = version_files(root) if paths is None else paths
    full = {rel: root / rel for rel in paths}
    digests = hash_files(list(full.values()))
    return {rel: digests[path] for rel, path in full.items()}


def write_sums(root: Path, digests: dict[str, str]) -> None:
    for rel in digests:
        if "\n" in rel or "\\" in rel:
            raise InputError(f"file name {rel!r} cannot be written to SHA256SUMS", path=root / rel,
                             hint="rename the file: no newlines or backslashes")
    text = "".join(f"{digests[rel]}  {rel}\n" for rel in sorted(digests))
    write_atomic(root / SUMS_FILE, text)


def read_sums(root: Path) -> dict[str, str]:
    path = root / SUMS_FILE
    if not path.is_file():
        raise InputError("no SHA256SUMS in this version", path=path,
                         hint="the version is incomplete or was changed by hand: ship again")
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        match = SUMS_LINE.match(line)
        if not match:
            raise InputError("not a sha256sum line (\"<64 hex>  <path>\")", path=path, line=number,
                             hint="SHA256SUMS is written by weightgate; restore it from a copy of the version")
        sums[match.group(2)] = match.group(1)
    return sums


@dataclass
class ReleaseReport:
    label: str
    root: str
    files: dict[str, str] = field(default_factory=dict)      # path -> ok | changed | missing | extra
    expected: dict[str, str] = field(default_factory=dict)
    actual: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    bytes_hashed: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.files) and all(status == OK for status in self.files.values())

    def problems(self) -> dict[str, str]:
        return {path: status for path, status in sorted(self.files.items()) if status != OK}

    def summary(self) -> str:
        if self.ok:
            return f"{self.label}: {len(self.files)} files match SHA256SUMS"
        return f"{self.label}: " + ", ".join(f"{path} ({status})" for path, status in self.problems().items())

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(ok=self.ok, problems=self.problems(), summary=self.summary())
        return data


def verify_version(ref: VersionRef) -> ReleaseReport:
    """Re-hash every file of the version against its SHA256SUMS: each changed, missing or extra
    file is named (an extra file is one SHA256SUMS does not list)."""
    began = time.perf_counter()
    root = ref.path
    expected = read_sums(root)
    on_disk = set(version_files(root))
    report = ReleaseReport(ref.label, str(root), expected=expected)
    present = sorted(p for p in expected if p in on_disk)
    actual = hash_tree(root, present)
    report.actual = actual
    report.bytes_hashed = sum((root / p).stat().st_size for p in present)
    for path, digest in expected.items():
        if path not in on_disk:
            report.files[path] = MISSING
        else:
            report.files[path] = OK if actual[path] == digest else CHANGED
    for path in on_disk - set(expected):
        report.files[path] = EXTRA
    for path, digest in _manifest_hashes(root).items():
        if expected.get(path) != digest and report.files.get(path) in (OK, None):
            report.files[path] = DISAGREES
    report.seconds = time.perf_counter() - began
    return report


def _manifest_hashes(root: Path) -> dict[str, str]:
    """path -> sha256 from manifest.toml's [[files]] (empty when the manifest cannot be read: its
    own line in SHA256SUMS reports that)."""

    try:
        files = read_manifest(root).get("files") or []
    except InputError:
        return {}
    return {str(f.get("path")): str(f.get("sha256")) for f in files if isinstance(f, dict)}


# --- the verification stamp (for the cheap status check) -------------------------------------


def stamp_path(ws: Workspace, ref: VersionRef) -> Path:
    return ws.state_dir / "releases" / ref.name / f"{ref.version}.json"


def file_stats(root: Path, paths) -> dict[str, list[int]]:
    stats = {}
    for rel in paths:
        try:
            st = (root / rel).stat()
            stats[rel] = [st.st_size, st.st_mtime_ns]
        except OSError:
            stats[rel] = [-1, -1]
    return stats


def write_stamp(ws: Workspace, ref: VersionRef, report: ReleaseReport) -> None:
    paths = sorted(set(report.files) | {SUMS_FILE})
    write_atomic(stamp_path(ws, ref), json.dumps({
        "version": ref.label, "ok": report.ok, "time": time.time(), "problems": report.problems(),
        "files": file_stats(ref.path, paths)}, indent=1, sort_keys=True) + "\n")


def read_stamp(ws: Workspace, ref: VersionRef) -> dict | None:
    try:
        data = json.loads(stamp_path(ws, ref).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def quick_state(ws: Workspace, ref: VersionRef) -> tuple[str, str, dict]:
    """(pass | fail, detail, values) from sizes and mtimes only: the last full verification holds
    while no file of the version was added, removed, resized or touched since."""
    stamp = read_stamp(ws, ref)
    if stamp is None:
        return "fail", f"{ref.label} was never verified: weightgate release verify {ref.version}", {}
    recorded = stamp.get("files") or {}
    now = file_stats(ref.path, sorted(set(recorded) | set(version_files(ref.path)) | {SUMS_FILE}))
    moved = sorted(rel for rel in now if recorded.get(rel) != now[rel])
    values = {"version": ref.label, "files": len(recorded), "verified_at": stamp.get("time")}
    if moved:
        values["touched"] = moved
        return "fail", (f"{', '.join(moved[:5])} changed on disk since {ref.label} was verified: "
                        f"weightgate release verify {ref.version}"), values
    if not stamp.get("ok"):
        values["problems"] = stamp.get("problems")
        problems = ", ".join(f"{p} ({s})" for p, s in (stamp.get("problems") or {}).items())
        return "fail", f"{ref.label} failed verification: {problems}", values
    return "pass", f"{ref.label}: {len(recorded) - 1} files match SHA256SUMS (size and mtime unchanged since)", values
