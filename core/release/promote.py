"""`weightgate release promote`: `current` moves to a version only once its phase-6 checks pass.

    promote(ws, version=None)   version: the `candidate` by default. Makes it [decisions] release
                                (so phase 6 is decided on it), requires phase 6 passed on it
                                (checksums, manifest, gates it shipped through, merge check,
                                health, latency within the ceilings, licence, canary, ...) or an
                                override with its reason (GatesClosed otherwise); re-hashes its
                                files (a damaged version is never promoted, override or not);
                                writes the checklist as of now and the promotion into its
                                manifest and card, re-writes SHA256SUMS over them; then moves
                                `current` to it, `previous` to what was current, drops `candidate`
                                (read and written under the alias lock: a ship meanwhile is kept).

The aliases move last: a crash before leaves current where it was (a damaged version, exit 1,
is never promoted, override or not). Torch-free.
"""

from __future__ import annotations

import time
from typing import Callable

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import _user
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.registry import store
from weightgate.core.registry.manifest import dumps, read_manifest
from weightgate.core.registry.serving import serve_commands
from weightgate.core.registry.verify import hash_tree, read_sums, verify_version, write_stamp, write_sums
from weightgate.core.release.card import card_text
from weightgate.core.release.gate import checklist_snapshot, promote_gate
from weightgate.core.release.load import ReleaseCorrupt
from weightgate.core.tracking.sync import mirror_releases

Log = Callable[[str], None]


def promote_target(ws: Workspace, version: str | None = None, name: str | None = None) -> store.VersionRef:
    """The version to promote: the one named, else the candidate. Refuses the current one."""
    name = store.check_name(name or store.default_name(ws))
    aliases = store.read_aliases(ws, name)
    if version is None:
        if store.CANDIDATE not in aliases:
            raise InputError(f"{name} has no candidate to promote", path=store.name_dir(ws, name) / store.ALIASES_FILE,
                             hint="ship one first (weightgate release ship), or name a version: "
                                  "weightgate release promote v2")
        version = store.CANDIDATE
    ref = store.resolve(ws, version, name)
    if aliases.get(store.CURRENT) == ref.version:
        raise InputError(f"{ref.label} is already current", hint="weightgate release versions lists the others")
    return ref


def promote(ws: Workspace, version: str | None = None, name: str | None = None, *, override: str | None = None,
            log: Log | None = None) -> dict:
    log = log or (lambda message: None)
    ref = promote_target(ws, version, name)
    if store.release_decision(plain(ws.config())) != ref.label:
        store.set_release(ws, ref)   # phase 6 is decided on the version being promoted
        log(f"[decisions] release = {ref.label}: phase 6 is decided on it")
    gate = promote_gate(ws, ref.label, override)
    report = verify_version(ref)
    if not report.ok:
        write_stamp(ws, ref, report)
        raise ReleaseCorrupt(f"{ref.label}'s files do not match SHA256SUMS: {report.summary()}; nothing promoted",
                             path=ref.path, hint="ship again (a damaged version is never promoted)")
    before = store.read_aliases(ws, ref.name).get(store.CURRENT)
    promotion: dict = {"time": time.time(), "by": _user(), "from": before or ""}
    if gate.override is not None:
        promotion.update(override=gate.override, held_by=gate.held_ids)
        log(f"warning: promoting with closed gates ({', '.join(gate.held_ids)}); reason: {gate.override['reason']}")
    rewrite_record(ws, ref, checklist=checklist_snapshot(gate.report, "promote"), promotion=promotion)
    reason = "promote" if gate.open else f"promote with closed gates: {gate.override['reason']}"
    aliases, before = store.promote_aliases(ws, ref.name, ref.version, reason)
    gate.record(ws, "release promote", ref.label)
    log(f"current is now {ref.label}" + (f" (was {before})" if before else ""))
    mirror_releases(ws, log)   # the trackers' model version aliases follow current / previous
    return {"name": ref.name, "release": ref.label, "current": ref.version, "previous": aliases.get(store.PREVIOUS),
            "from": before, "gates_open": gate.open, "override": gate.override, "held_by": gate.held_ids,
            "path": str(ref.path)}


def rewrite_record(ws: Workspace, ref: store.VersionRef, **tables) -> None:
    """What the version went through ([gates], [checklist], [promotion]) into manifest.toml and
    README.md; SHA256SUMS re-written over them (the weights are untouched and stay as hashed),
    then re-stamped. The content digest leaves these tables out, so the version's identity holds."""
    manifest = read_manifest(ref.path)
    manifest.update(tables)
    manifest_text = dumps(manifest)
    card = card_text(manifest, serve_commands(manifest, ref.path, ws.root))
    sums = read_sums(ref.path)
    write_atomic(ref.path / store.MANIFEST_FILE, manifest_text)
    write_atomic(ref.path / store.CARD_FILE, card)
    sums.update(hash_tree(ref.path, [store.MANIFEST_FILE, store.CARD_FILE]))
    write_sums(ref.path, sums)
    for rel in (store.MANIFEST_FILE, store.CARD_FILE, store.SUMS_FILE):
        (ref.path / rel).chmod(0o644)
    write_stamp(ws, ref, verify_version(ref))
