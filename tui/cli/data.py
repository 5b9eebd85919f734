"""`weightgate data`: phase 5's training data, checked and prepared."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from weightgate.core.engine.errors import WeightgateError
from weightgate.core.training.checks import decide
from weightgate.core.training.data.prepare import DataReport, PreparedDataset
from weightgate.core.training.dataset import check_training_data
from weightgate.tui.cli.common import EXIT_FAILED, EXIT_OK, command, fail, group, workspace

MARK = {"pass": "✓", "fail": "✗"}

app = group("data", """Phase 5's training data: check it, clean it, split it.

Runs in the command itself (a tokenizer, no model weights: a few seconds); the original file is
never edited.""")


@command(app)
def check(fix: Annotated[bool, typer.Option("--fix", help="Write the cleaned, scrubbed, split copy under "
                                                           ".weightgate/data/ (the original is never edited).")] = False,
          as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Check the training data and record the tune.* data items.

    Formats, schema (file:line), chat-template rendering, token lengths, exact and near duplicates,
    eval-set leakage, PII, tag balance, the 90/10 split of \\[settings] train_data. Exit 1 while
    any of tune.format / dedup / leakage / token_lengths / pii / balance / split fails."""
    ws = workspace(as_json)
    try:
        checked = check_training_data(ws, fix=fix)
    except WeightgateError as exc:
        fail(exc, as_json)
    report, prepared = checked.report, checked.prepared
    if as_json:
        data = {**report.to_dict(), "report": str(checked.report_path), "items": checked.items,
                "prepared": None if prepared is None else {
                    "digest": prepared.digest, "train": str(prepared.train_path), "val": str(prepared.val_path),
                    "counts": prepared.counts}}
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print(render_data_report(report, prepared, checked.items, fix))
    raise typer.Exit(EXIT_FAILED if checked.failed else EXIT_OK)


def render_data_report(report: DataReport, prepared: PreparedDataset | None, decided: dict[str, str],
                       fix: bool) -> str:
    notes = {item: note for item, (_, _, note) in decide(report, prepared).items()}
    formats = ", ".join(f"{name} {count}" for name, count in sorted(report.formats.items())) or "none"
    lines = [f"{report.path}: {report.examples} examples ({formats}) -> {len(report.units)} records; "
             f"context {report.max_tokens} tokens"]

    def head(item: str, title: str) -> None:
        status = decided.get(item) or ("pass" if item not in notes else "fail")
        lines.append(f"{MARK.get(status, '·')} {title}: {notes.get(item, '')}")

    head("tune.format", "format")
    for problem in [*report.problems, *report.render_problems][:20]:
        lines.extend("    " + text for text in str(problem).splitlines())
    head("tune.dedup", "duplicates")
    for group_ in report.exact_duplicates[:10]:
        kept = group_["kept"]
        for row in group_["removed"]:
            lines.append(f"    line {row['line']} ({row['id']}) = line {kept['line']} ({kept['id']})")
    for pair in report.near_duplicates[:10]:
        lines.append(f"    line {pair['b']['line']} ({pair['b']['id']}) ~ line {pair['a']['line']} ({pair['a']['id']})"
                     f"  similarity {pair['similarity']:.2f}")
    head("tune.leakage", "eval leakage")
    for leak in report.leakage[:10]:
        lines.append(f"    line {leak['line']} ({leak['id']}) matches {leak['set']} case {leak['case']}"
                     f" ({leak['containment']:.0%})")
    head("tune.token_lengths", "token lengths")
    for row in report.over_long[:10]:
        lines.append(f"    line {row['line']} ({row['id']}): {row['tokens']} tokens > {report.max_tokens}")
    head("tune.pii", "PII")
    for row in report.pii["findings"][:10]:
        lines.append(f"    line {row['line']} ({row['id']}): {row['kind']} {row['sample']}")
    head("tune.balance", "tag balance")
    if "tune.split" in notes:
        head("tune.split", "split")
    if report.boilerplate.get("lines_removed"):
        lines.append(f"  raw text: {report.boilerplate['lines_removed']} boilerplate line(s) removed, "
                     f"{report.boilerplate['chunks']} chunks of {report.boilerplate['chunk_tokens'][0]}-"
                     f"{report.boilerplate['chunk_tokens'][1]} tokens")
    if report.blocking:
        lines.append("blocking: " + "; ".join(report.blocking) + " — fix the file, then run again")
    elif prepared is not None:
        lines.append(f"prepared {prepared.train_path.parent} (digest {prepared.digest[:16]}): "
                     f"{prepared.counts['train']} train, {prepared.counts['val']} validation")
    elif not fix:
        lines.append("nothing written: `weightgate data check --fix` writes the cleaned copy")
    return "\n".join(lines)
