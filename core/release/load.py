"""Load a shipped version the way it ships: verified first, then from the registry directory
(merged, base, quantized) or the pinned base plus the registry's adapter (adapter versions).
torch is imported inside functions only."""

from __future__ import annotations

from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.hashing import hash_files
from weightgate.core.memory.loading import load_model
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.serving import base_dir_of
from weightgate.core.registry.store import VersionRef
from weightgate.core.registry.verify import verify_version


class ReleaseCorrupt(InputError):
    """A registry file (or the base an adapter points to) does not match its recorded hash."""

    exit_code = 1


def verify_base(manifest: dict, workspace_root: Path, *, sizes_only: bool = False) -> Path:
    """The base directory an adapter version points to, after every base file recorded in the
    manifest matched its size and sha256 (its size only, with sizes_only: a quick probe)."""
    root = base_dir_of(manifest, workspace_root)
    files = manifest["base"].get("files") or []
    problems = []
    present = {}
    for entry in files:
        path = root / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']} (missing)")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{entry['path']} (size differs)")
        else:
            present[path] = entry
    digests = {path: entry["sha256"] for path, entry in present.items()} if sizes_only else hash_files(list(present))
    problems += [f"{entry['path']} (changed)" for path, entry in present.items() if digests[path] != entry["sha256"]]
    if problems:
        raise ReleaseCorrupt(f"the base this adapter version points to does not match its manifest: "
                             f"{', '.join(problems)}", path=root,
                             hint="restore the locked base model (weightgate weights fetch) before loading this version")
    return root


def verified_version(ref: VersionRef):
    """Re-hash the version against SHA256SUMS; raise naming every changed, missing or extra file."""

    report = verify_version(ref)
    if not report.ok:
        raise ReleaseCorrupt(f"{ref.label} does not match its SHA256SUMS: "
                             + ", ".join(f"{path} ({status})" for path, status in report.problems().items()),
                             path=ref.path, hint="do not serve it: restore the version from a copy, or roll back "
                                                 "(weightgate release rollback)")
    return report


def load_dirs(ref: VersionRef, manifest: dict, workspace_root: Path) -> tuple[Path, Path | None]:
    """(model directory, adapter directory or None) to load the version from."""
    if manifest["release"]["relation"] == "adapter":
        return verify_base(manifest, workspace_root), ref.path
    return ref.path, None


def load_version(ref: VersionRef, workspace_root: Path, *, device: str | None = None, verify: bool = True):
    """A core.memory.loading.LoadedModel of the version at its shipped precision."""

    if verify:
        verified_version(ref)
    manifest = read_manifest(ref.path)
    model_dir, adapter = load_dirs(ref, manifest, workspace_root)
    return load_model(model_dir, manifest["precision"]["name"], adapter, device), manifest
