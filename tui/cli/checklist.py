"""The checklist's commands, at the top level: init, status, attest, waive, revoke."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from weightgate.core.engine import evidence
from weightgate.core.engine.checklist import get_item
from weightgate.core.engine.dependencies import render_why
from weightgate.core.engine.errors import WeightgateError
from weightgate.core.engine.status import Report, override_line
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.gates import compute_report, explain_item
from weightgate.tui.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    STATE,
    JsonOpt,
    command,
    fail,
    say_if_locked,
    workspace,
)

ItemArg = Annotated[str, typer.Argument(help="Item id, e.g. select.domain_fit (`weightgate status` lists them).")]

STATUS_MARK = {"pass": "✓", "fail": "✗", "stale": "↻", "todo": "·", "waived": "~", "not-needed": "–"}
STATE_MARK = {"passed": "✓", "open": "▶", "stale": "↻", "locked": "🔒", "not-needed": "–"}


commands = typer.Typer(add_completion=False)   # top-level: init, status, attest, waive, revoke


@command(commands)
def init(directory: Annotated[Optional[Path], typer.Argument(help="Where to create it (default: -w or .)")] = None,
         as_json: JsonOpt = False) -> None:
    """Create a workspace: a commented weightgate.toml, evals/ and .weightgate/."""
    target = directory or STATE["workspace"] or Path.cwd()
    try:
        ws = init_workspace(target)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps({"workspace": str(ws.root), "config": str(ws.config_path)}))
    else:
        print(f"Created a workspace in {ws.root}")
        print(f"  next: fill in [requirements] in {ws.config_path.name}, "
              f"write 20-50 real cases in evals/task.jsonl, then run `weightgate status`")


@command(commands)
def status(as_json: JsonOpt = False,
           gate: Annotated[Optional[int], typer.Option("--gate", min=1, max=6,
                                                      help="Exit 1 unless phase N is open.")] = None,
           phase: Annotated[Optional[int], typer.Option("--phase", min=1, max=6,
                                                       help="Show only phase N's items.")] = None,
           why: Annotated[Optional[str], typer.Option(
               "--why", metavar="ITEM",
               help="One item's inputs: fingerprints when decided and today, and which changed.")] = None) -> None:
    """Phases, items and what holds each gate.

    Exit 1 when an open phase has a failed or stale item, or with --gate N while phase N is locked;
    with --why ITEM, exit 1 when that item does not pass."""
    ws = workspace(as_json)
    if why is not None:
        _status_why(ws, why, as_json)
    try:
        report = compute_report(ws)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        # folded to the terminal's width; piped, one line per item (for grep)
        print(render_status(report, only_phase=phase,
                            width=shutil.get_terminal_size().columns if sys.stdout.isatty() else None))
    failing = [s for p in report.phases if not p.locked for s in p.items if s.status in ("fail", "stale")]
    if gate is not None and report.phase(gate).locked:
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_FAILED if failing else EXIT_OK)


def _status_why(ws, item_id: str, as_json: bool) -> None:
    try:
        explained = explain_item(ws, item_id)
    except WeightgateError as exc:
        fail(exc, as_json)
    print(json.dumps(explained.to_dict(), indent=2, default=str) if as_json else render_why(explained))
    raise typer.Exit(EXIT_OK if explained.status in ("pass", "waived", "not-needed") else EXIT_FAILED)


@command(commands)
def attest(item: ItemArg, note: Annotated[str, typer.Option("--note", "-n", help="What you checked.")],
           as_json: JsonOpt = False) -> None:
    """Confirm an attest item with a note."""
    ws = workspace(as_json)
    try:
        record = evidence.attest(ws, item, note)
    except WeightgateError as exc:
        fail(exc, as_json)
    say_if_locked(ws, get_item(record.item).phase, "this attestation")
    _print_record(record, as_json, "attested")


@command(commands)
def waive(item: ItemArg, reason: Annotated[str, typer.Option("--reason", "-r", help="Why it does not apply.")],
          as_json: JsonOpt = False) -> None:
    """Waive a recommended item with a reason (critical items cannot be waived)."""
    ws = workspace(as_json)
    try:
        record = evidence.waive(ws, item, reason)
    except WeightgateError as exc:
        fail(exc, as_json)
    say_if_locked(ws, get_item(record.item).phase, "this waiver")
    _print_record(record, as_json, "waived")


@command(commands)
def revoke(item: ItemArg, note: Annotated[str, typer.Option("--note", "-n", help="Why.")] = "",
           as_json: JsonOpt = False) -> None:
    """Withdraw an attestation or a waiver."""
    ws = workspace(as_json)
    try:
        record = evidence.revoke(ws, item, note)
    except WeightgateError as exc:
        fail(exc, as_json)
    _print_record(record, as_json, "revoked")


def render_status(report: Report, only_phase: int | None = None, width: int | None = None) -> str:
    """The checklist as text. With a width (a terminal's), long lines fold at spaces under their
    own text, so an item id or a path is never cut in two by the terminal's hard wrap."""
    lines: list[tuple[str, str]] = [("", f"workspace {report.workspace}")]   # (prefix, text)
    for record in report.overrides:
        lines.append(("⚠ override: ", override_line(record)))
    for phase in report.phases:
        if only_phase and phase.phase.number != only_phase:
            continue
        lines.append(("", ""))
        lines.append(("", f"{STATE_MARK.get(phase.state, '?')} Phase {phase.phase.number} "
                          f"{phase.phase.title}: {phase.state}"))
        if phase.note:
            lines.append(("    ", phase.note))
        if phase.locked:
            held = ", ".join(f"{s.item.id} ({s.status})" for s in phase.held_by[:8])
            more = f" and {len(phase.held_by) - 8} more" if len(phase.held_by) > 8 else ""
            lines.append(("    held by: ", f"{held}{more}"))
        for status in phase.items:
            severity = status.item.severity.value[0].upper()
            lines.append((f"  {STATUS_MARK.get(status.status, '?')} {status.status:<10} [{severity}] "
                          f"{status.item.id:<26} ", status.detail))
    return "\n".join(fold(prefix, text, width) for prefix, text in lines)


MIN_FOLDED_TEXT = 24   # narrower than this under its prefix, a folded line starts further left


def fold(prefix: str, text: str, width: int | None) -> str:
    """prefix + text, folded at spaces to width with the continuation lines under the text."""
    if not width or len(prefix) + len(text) <= width:
        return (prefix + text).rstrip()
    indent = len(prefix) if width - len(prefix) >= MIN_FOLDED_TEXT else 6
    first = textwrap.wrap(text, width - len(prefix), break_long_words=False, break_on_hyphens=False) or [""]
    rest = textwrap.wrap(text[len(first[0]):].strip(), width - indent, break_long_words=False,
                         break_on_hyphens=False)
    return "\n".join([prefix + first[0]] + [" " * indent + line for line in rest])


def _print_record(record: evidence.Evidence, as_json: bool, verb: str) -> None:
    if as_json:
        print(json.dumps(asdict(record), indent=2))
    else:
        print(f"{verb} {record.item}" + (f": {record.note}" if record.note else ""))
