"""What `weightgate release versions` shows (and the Deployment screen can read): every shipped version
of a registry name with its aliases, relation, precision, scores, digest and serve commands.
Torch-free."""

from __future__ import annotations

import time

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.workspace import Workspace
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.serving import serve_commands
from weightgate.core.registry.store import check_name, default_name, list_versions, read_aliases, read_history


def list_release_versions(ws: Workspace, name: str | None = None) -> dict:
    name = check_name(name or default_name(ws))
    aliases = read_aliases(ws, name)
    by_version: dict[str, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        by_version.setdefault(version, []).append(alias)
    rows = []
    history = read_history(ws, name)
    current_before = {move.get("to") for move in history if move.get("alias") == "current"}
    for ref in list_versions(ws, name):
        try:
            manifest = read_manifest(ref.path)
        except InputError as exc:
            rows.append({"version": ref.version, "path": str(ref.path), "error": exc.message,
                         "aliases": by_version.get(ref.version, [])})
            continue
        release = manifest["release"]
        created = float(release.get("created") or 0)
        rows.append({
            "version": ref.version, "label": ref.label, "path": str(ref.path),
            "aliases": by_version.get(ref.version, []), "relation": release.get("relation"),
            "precision": manifest.get("precision", {}).get("name"), "created": created,
            "created_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created)) if created else "-",
            "content_digest": release.get("content_digest"), "base": manifest.get("base", {}).get("repo"),
            "base_commit": manifest.get("base", {}).get("commit"),
            "base_kind": manifest.get("base", {}).get("kind"),
            "base_revision": manifest.get("base", {}).get("revision"),
            "evals": [{"set": e.get("set"), "score": e.get("score"), "passed": e.get("passed"),
                       "cases": e.get("cases"), "run": e.get("run")} for e in manifest.get("evals", [])],
            "merge": manifest.get("merge", {}).get("decision"),
            "gates": manifest.get("gates") if isinstance(manifest.get("gates"), dict) else None,
            "promoted": isinstance(manifest.get("promotion"), dict),
            "was_current": ref.version in current_before,
            "serve": serve_commands(manifest, ref.path, ws.root),
        })
    return {"name": name, "aliases": aliases, "versions": rows, "history": history}
