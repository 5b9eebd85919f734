"""The Deployment screen's registry view: every shipped version with its aliases, relation,
precision, scores and checksum state, and the selected version's manifest, health, latency and
serve commands.

`read_versions` (a thread worker) reads registry/<name>/ through core.registry.versions and checks each
version's files by size and mtime against its last full verification (core.registry.verify.
quick_state: no hashing on the UI's behalf).
"""

from __future__ import annotations

from rich.text import Text
from textual.content import Content

from weightgate.core.registry.checks import gates_line
from weightgate.tui.widgets.fitted_table import Column, FittedTable

MARKS = {"pass": ("✓ ", "green"), "fail": ("✗ ", "red"), "stale": ("↻ ", "yellow"), "waived": ("~ ", "yellow")}


class VersionsTable(FittedTable):
    COLUMNS = (
        Column("version", "Version", 8),
        Column("aliases", "Aliases", 18),
        Column("relation", "Relation", 9, drop=2),
        Column("precision", "Prec.", 6, drop=3),
        Column("scores", "Scores"),
        Column("checksum", "Checksums", 11),
        Column("created", "Shipped (UTC)", 19, drop=1),
    )
    DEFAULT_CSS = """
    VersionsTable { height: auto; max-height: 8; min-height: 2; overflow-x: hidden; }
    """

    def cells(self, row: dict) -> dict[str, Text]:
        aliases = ", ".join(row.get("aliases") or [])
        state, _ = row.get("checksum", ("fail", ""))
        scores = "  ".join(f"{e['set']} {e['score']:.3f}" for e in row.get("evals") or []
                           if isinstance(e.get("score"), (int, float)))
        return {"version": Text(row["version"], style="bold" if "current" in (row.get("aliases") or []) else ""),
                "aliases": Text(aliases, style="bold"), "relation": Text(str(row.get("relation") or "?")),
                "precision": Text(str(row.get("precision") or "?")), "scores": Text(scores or "-"),
                "checksum": Text("✓ match" if state == "pass" else "✗ check", style="green" if state == "pass" else "red"),
                "created": Text(str(row.get("created_utc") or "-"))}


MERGE_WORDS = {"merged": "adapter merged into the base", "separate": "adapter kept separate",
               "refused": "adapter not merged (refused at this precision)"}


def merge_words(decision: str | None) -> str:
    """The manifest's merge decision as words; nothing for a version without an adapter."""
    if not decision or decision in ("none", "-"):
        return ""
    return MERGE_WORDS.get(decision, f"merge: {decision}")


def base_words(row: dict) -> str:
    """The base model and what pins it: the hub commit, else the revision, else (a local
    directory or a GGUF) the lock's checksums; never a bare "@ ?"."""
    base = row.get("base") or "?"
    if row.get("base_commit"):
        return f"{base} @ {str(row['base_commit'])[:12]}"
    if row.get("base_revision"):
        return f"{base} @ {row['base_revision']}"
    kind = row.get("base_kind")
    return f"{base} ({kind + ', ' if kind else ''}pinned by the lock's checksums, no commit)"


def detail_text(row: dict | None, report=None) -> Content:
    """The selected version: manifest facts, checksum state, health and latency, serve commands."""
    if row is None:
        return Content.assemble(("Nothing shipped yet. ", "bold"),
                                ("s ships the workspace's model (and adapter) as v1: weights, tokenizer, "
                                 "SHA256SUMS, manifest.toml and a model card under registry/.", "$text-muted"))
    if "error" in row:
        return Content.assemble((f"{row['version']}: ", "bold"), (row["error"], "$error"))
    facts = " · ".join(part for part in (row.get("relation"), row.get("precision"), merge_words(row.get("merge")))
                       if part)
    lines = [Content.assemble((row.get("label", row["version"]), "bold"), f"  {facts}"),
             Content(f"base      {base_words(row)}"),
             Content(f"content   {str(row.get('content_digest') or '?')[:23]}")]
    gates = row.get("gates")
    if isinstance(gates, dict):
        lines.append(Content.assemble("gates     ", ("✓ " if gates.get("open") else "✗ ",
                                                     "green" if gates.get("open") else "red"), gates_line(gates)))
    else:
        lines.append(Content.assemble("gates     ", ("? ", "yellow"), "shipped before weightgate recorded its gates"))
    state, detail = row.get("checksum", ("fail", "?"))
    lines.append(Content.assemble("checksums ", ("✓ " if state == "pass" else "✗ ", "green" if state == "pass" else "red"),
                                  detail))
    for e in row.get("evals") or []:
        if isinstance(e.get("score"), (int, float)):
            lines.append(Content(f"eval      {e['set']:<8} {e['score']:.3f} ({e.get('passed')}/{e.get('cases')}) "
                                 f"run {e.get('run')}"))
    if report is not None:
        for item_id, label in (("ship.health", "health"), ("ship.latency", "latency"), ("ship.canary", "canary")):
            try:
                status = report.item(item_id)
            except KeyError:
                continue
            values = status.values or {}
            if values.get("version") not in (row.get("label"), None) and status.status != "todo":
                continue
            look = {"pass": ("✓ ", "green"), "fail": ("✗ ", "red"), "stale": ("↻ ", "yellow")}.get(status.status,
                                                                                                ("· ", ""))
            lines.append(Content.assemble(f"{label:<10}", look, status.detail[:150]))
    if "candidate" in (row.get("aliases") or []):
        lines += _candidate_lines(row, report)
    serve = row.get("serve") or {}
    refused = serve.get("refused") or {}
    for engine, label in (("vllm", "vllm"), ("sglang", "sglang"), ("transformers_serve", "tf serve")):
        command = serve.get(engine)
        if command:
            lines.append(Content.assemble((f"{label:<10}", "$text-muted"), str(command)[:200]))
        elif engine in refused:
            lines.append(Content.assemble((f"{label:<10}", "$text-muted"), ("✗ ", "red"), str(refused[engine])[:200]))
    for endpoint in row.get("endpoints") or []:
        lines.append(Content.assemble(("serving   ", "bold"), f"{endpoint['url']} (job {endpoint['job']}, "
                                                              f"pid {endpoint['pid']}; stop: weightgate cancel "
                                                              f"{endpoint['job']})"))
    return Content("\n").join(lines)


def _candidate_lines(row: dict, report) -> list[Content]:
    """The candidate's flow: its phase-6 checks at a glance, and the next key to press."""
    if report is None:
        return []
    phase = report.phase(6)
    decided = next((s.values.get("release") for s in phase.items if s.item.id == "ship.version"), None)
    if decided != row.get("label"):
        return [Content.styled(f"candidate: phase 6 is decided on {decided or 'another version'}; p decides it on "
                               "this one and promotes it if it passes", "$text-muted")]
    marks = [Content.assemble(MARKS.get(s.status, ("· ", ""))[0], s.item.id.removeprefix("ship."))
             for s in phase.items if s.item.severity.value != "optional"]
    todo = {s.item.id for s in phase.blocking}
    steps = [key for item, key in (("ship.health", "h health"), ("ship.canary", "k canary")) if item in todo]
    if phase.locked:
        step = "phases 1-5 hold it: p asks for the override's reason"
    elif phase.state == "passed":
        step = "phase 6 passed: p promotes it to current"
    else:
        step = ", ".join(steps + ["then p promotes"]) if steps else "the items below say what each needs"
    return [Content.assemble(("candidate ", "bold"), Content(" ").join(marks)),
            Content.assemble(("next      ", "$text-muted"), step)]
