"""Evidence of the training-data checks: tune.format, dedup, leakage, token_lengths, pii, balance, split.

Recorded by `weightgate data check` (and by prepare_dataset, which training calls), tied to the
fingerprints each item names: the training data file ("dataset"), the model whose chat template
and context were used, the eval sets leakage was checked against. Checking needs the tokenizer
(transformers), too heavy for status time, so these are recorded, not live.

Without --fix (no prepared copy), an item whose problem a fix would remove fails with what to run;
with a prepared copy, the removal is the evidence: "3 duplicates left out of the prepared set".
"""

from __future__ import annotations

from core.data_check import DataReport, PreparedDataset
from core.evidence import FAIL, PASS, record_result
from core.fingerprints import Fingerprints
from core.workspace import Workspace

FIX = "`weightgate data check --fix` writes the cleaned copy (the original is never edited)"


def _where(rows: list[dict], limit: int = 3) -> str:
    shown = ", ".join(f"line {row['line']}" for row in rows[:limit])
    return shown + (f" (+{len(rows) - limit} more)" if len(rows) > limit else "")


def decide(report: DataReport, prepared: PreparedDataset | None) -> dict[str, tuple[str, dict, str]]:
    """item id -> (status, values, note) for what this report shows."""
    out: dict[str, tuple[str, dict, str]] = {}
    short = prepared.digest[:16] if prepared else None
    problems = [*report.problems, *report.render_problems]
    values = {"formats": report.formats, "examples": report.examples, "records": len(report.units),
              "problems": len(problems)}
    if problems:
        first = problems[0]
        out["tune.format"] = (FAIL, values, f"{len(problems)} example(s) do not fit the prompt format; first "
                                            f"{first.location()}: {first.message}")
    else:
        kinds = ", ".join(f"{count} {name}" for name, count in sorted(report.formats.items()))
        out["tune.format"] = (PASS, values, f"{report.examples} examples ({kinds}) rendered with the model's "
                                            "chat template" if report.formats.get("chat", 0) + report.formats.get(
                                                "alpaca", 0) + report.formats.get("sharegpt", 0) else
                              f"{report.examples} raw-text documents, {len(report.units)} chunks")

    duplicates = len(report.removed.get("duplicate", []))
    values = {"exact_groups": len(report.exact_duplicates), "near_pairs": len(report.near_duplicates),
              "removed": duplicates, "threshold": report.settings.near_duplicate_threshold, "prepared": short}
    if not duplicates:
        out["tune.dedup"] = (PASS, values, f"no exact or near duplicates (Jaccard >= "
                                           f"{report.settings.near_duplicate_threshold:g})")
    elif prepared:
        out["tune.dedup"] = (PASS, values, f"{duplicates} duplicate(s) left out of the prepared set {short} "
                                           f"({len(report.exact_duplicates)} exact groups, "
                                           f"{len(report.near_duplicates)} near pairs)")
    else:
        rows = [row for group in report.exact_duplicates for row in group["removed"]] + \
            [pair["b"] for pair in report.near_duplicates]
        out["tune.dedup"] = (FAIL, values, f"{duplicates} duplicate(s) at {_where(rows)}; {FIX}")

    leaked = len(report.removed.get("leakage", []))
    values = {"leaks": len(report.leakage), "removed": leaked, "eval_cases": report.leakage_sets,
              "threshold": report.settings.leakage_threshold, "prepared": short}
    checked = " and ".join(f"{name} ({count})" for name, count in report.leakage_sets.items()) or "no eval set"
    if not report.leakage:
        out["tune.leakage"] = (PASS, values, f"no training example matches a case of {checked}")
    elif prepared:
        out["tune.leakage"] = (PASS, values, f"{leaked} example(s) matching eval cases left out of the prepared "
                                             f"set {short}")
    else:
        out["tune.leakage"] = (FAIL, values, f"{len(report.leakage)} eval case match(es) at "
                                             f"{_where(report.leakage)}; {FIX}")

    longest = max((unit.tokens for unit in report.units), default=0)
    values = {"max_tokens": report.max_tokens, "longest": longest, "over_long": len(report.over_long)}
    if report.over_long:
        out["tune.token_lengths"] = (FAIL, values, f"{len(report.over_long)} example(s) longer than "
                                                   f"{report.max_tokens} tokens at {_where(report.over_long)}: "
                                                   "shorten or split them (never truncated silently)")
    else:
        out["tune.token_lengths"] = (PASS, values, f"longest {longest} tokens <= {report.max_tokens}")

    pii = report.pii
    values = {"counts": {k: v for k, v in pii["counts"].items() if v}, "total": pii["total"], "prepared": short}
    found = ", ".join(f"{count} {kind}" for kind, count in pii["counts"].items() if count)
    if not pii["total"]:
        out["tune.pii"] = (PASS, values, "no emails, phone numbers, cards, IBANs, IP addresses or SSNs found")
    elif prepared:
        out["tune.pii"] = (PASS, values, f"{found} scrubbed in the prepared set {short}")
    else:
        out["tune.pii"] = (FAIL, values, f"{found} found at {_where(pii['findings'])}; {FIX}")

    tags = report.tags
    values = {"counts": tags["counts"], "untagged": tags["untagged"], "ratio": tags["ratio"],
              "max_ratio": tags["max_ratio"]}
    if not tags["counts"]:
        out["tune.balance"] = (FAIL, values, 'no example carries "tags": tag common queries and edge cases to '
                                             "check their balance (or waive this item)")
    elif tags["skewed"]:
        out["tune.balance"] = (FAIL, values, f"skewed: {tags['most']} {tags['counts'][tags['most']]} vs "
                                             f"{tags['least']} {tags['counts'][tags['least']]} (ratio "
                                             f"{tags['ratio']:g} > {tags['max_ratio']:g})")
    else:
        spread = ", ".join(f"{tag} {count}" for tag, count in tags["counts"].items())
        out["tune.balance"] = (PASS, values, f"{spread} (ratio {tags['ratio'] or 1:g} <= {tags['max_ratio']:g})")

    if prepared:
        train, val = prepared.counts["train"], prepared.counts["val"]
        values = {"train": train, "val": val, "digest": prepared.digest,
                  "val_fraction": report.settings.val_fraction}
        ok = train > 0 and val > 0
        out["tune.split"] = (PASS if ok else FAIL, values,
                             f"{train} train / {val} validation, split by content hash (prepared set {short})"
                             if ok else f"{train} train / {val} validation: too few examples for a split")
    elif report.blocking:
        out["tune.split"] = (FAIL, {"blocking": report.blocking},
                             "no split written: " + "; ".join(report.blocking))
    return out


def record_data_evidence(ws: Workspace, report: DataReport, prepared: PreparedDataset | None) -> dict[str, str]:
    """Append every decided item; returns item id -> status. Only for the workspace's own
    training data file (its digest is the `dataset` fingerprint the records carry)."""
    from core.data_check import train_data_path

    if report.path.resolve() != train_data_path(ws).resolve():
        return {}
    from core.checklist import get_item
    from core.evidence import latest_by_item, read_evidence

    prints = Fingerprints(ws)
    decided = decide(report, prepared)
    latest = latest_by_item(read_evidence(ws))
    for item_id, (status, values, note) in decided.items():
        last = latest.get(item_id)
        if (last is not None and last.kind == "check" and last.status == status and last.values == values
                and last.fingerprints == prints.of(get_item(item_id).inputs)):
            continue   # training prepares the same data on every run: one record says it
        record_result(ws, item_id, status, values, kind="check", note=note, fingerprints=prints)
    return {item_id: status for item_id, (status, _, _) in decided.items()}
