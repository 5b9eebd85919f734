"""Phase 5 commands: `data check [--fix]`, `tune fewshot`, `tune gate [ADAPTER]`.

`data check` runs in the command itself (a tokenizer, no model weights: a few seconds); the
eval runs `tune fewshot` and `tune gate` need are detached jobs, like `weightgate eval`.
"""

from __future__ import annotations

import json
from typing import Optional

EXIT_OK, EXIT_FAILED = 0, 1
MARK = {"pass": "✓", "fail": "✗"}


def add_data_commands(app, workspace, fail) -> None:
    import typer

    from weightgate.core.engine.errors import WeightgateError

    data_app = typer.Typer(help="Training data for phase 5: check, clean, split.", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("check")
    def data_check(fix: bool = typer.Option(False, "--fix", help="Write the cleaned, scrubbed, split copy under "
                                                                 ".weightgate/data/ (the original is never edited)."),
                   as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
        """Check settings.train_data: formats, schema (file:line), chat-template rendering, token
        lengths, exact and near duplicates, eval-set leakage, PII, tag balance, the 90/10 split.
        Records tune.format / dedup / leakage / token_lengths / pii / balance / split.
        Exit 1 while any of them fails."""
        from weightgate.core.training.dataset import check_training_data

        ws = workspace(as_json)
        try:
            check = check_training_data(ws, fix=fix)
        except WeightgateError as exc:
            fail(exc, as_json)
        report, prepared, decided, report_path = check.report, check.prepared, check.items, check.report_path
        if as_json:
            data = {**report.to_dict(), "report": str(report_path), "items": decided,
                    "prepared": None if prepared is None else {
                        "digest": prepared.digest, "train": str(prepared.train_path), "val": str(prepared.val_path),
                        "counts": prepared.counts}}
            print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        else:
            print(render_data_report(report, prepared, decided, fix))
        raise typer.Exit(EXIT_FAILED if any(status != "pass" for status in decided.values()) or report.blocking
                         else EXIT_OK)

    tune_app = typer.Typer(help="Phase 5 decisions that run the model: few-shot first, keep or reject.",
                           no_args_is_help=True)
    app.add_typer(tune_app, name="tune")

    def start(kind: str, params: dict, as_json: bool, follow: bool, verdict) -> None:
        from weightgate.tui.cli import run_job_command

        run_job_command(workspace(as_json), kind, params, as_json=as_json, follow=follow, verdict=verdict)

    @tune_app.command("fewshot")
    def tune_fewshot(shots: int = typer.Option(3, "--shots", min=1, max=16,
                                               help="Examples from the training data when the task set has no "
                                                    "few_shot turns of its own."),
                     batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1,
                                                              help="Default: the zero-shot baseline's."),
                     follow: bool = typer.Option(False, "--attach", help="Follow the job until it ends."),
                     as_json: bool = typer.Option(False, "--json")) -> None:
        """Prompting first: the task set with few-shot examples (a job), beside the zero-shot
        baseline; decides tune.prompting_first."""
        from weightgate.core.training.prompting import plan_fewshot

        try:
            plan_fewshot(workspace(as_json), shots=shots, batch_size=batch_size)
        except WeightgateError as exc:
            fail(exc, as_json)

        def verdict(result: dict):
            base = result.get("baseline_score")
            if result["source"] == "zero-shot":   # the set prompts with its own few-shot turns
                text = f"zero-shot variant {result['score']:.3f} (run {result['run']})"
                return text + (f" vs few-shot baseline {base:.3f} (run {result['baseline']})"
                               if base is not None else "; no baseline yet"), True
            text = f"few-shot {result['score']:.3f} ({result['shots']} from the {result['source']}, run {result['run']})"
            return text + (f" vs zero-shot {base:.3f} (run {result['baseline']})" if base is not None
                           else "; no zero-shot baseline yet"), True
        start("fewshot", {"shots": shots, "batch_size": batch_size}, as_json, follow, verdict)

    @tune_app.command("gate")
    def tune_gate(adapter: Optional[str] = typer.Argument(None, help="An adapter id under .weightgate/adapters/ "
                                                                     "or a directory (default: the newest)."),
                  follow: bool = typer.Option(True, "--attach/--detach", help="Follow the job (default) or not."),
                  as_json: bool = typer.Option(False, "--json")) -> None:
        """Keep or reject an adapter (a job): eval runs on the task and general sets with it, each
        compared with the base model's baseline; kept only if the task score rises by at least
        training.task_margin and the general score falls by at most training.general_tolerance.
        Keeping writes decisions.adapter. Exit 1 when rejected."""
        from weightgate.core.training.keep_or_reject import adapter_decision_value, default_adapter, targets

        ws = workspace(as_json)
        try:
            chosen = adapter_decision_value(ws, adapter or default_adapter(ws))
            targets(ws, chosen)
        except WeightgateError as exc:
            fail(exc, as_json)

        def verdict(result: dict):
            lines = [result["note"]]
            for name in ("task", "general"):
                row = result[name]
                lines.append(f"  {name}: compare {row['base_run']} {row['adapter_run']}  "
                             f"({row['regressions']} regressions, {row['improvements']} improvements)")
            if result["kept"]:
                lines.append(f'  [decisions] adapter = "{result["adapter"]}"')
            return "\n".join(lines), bool(result["kept"])
        start("tune_gate", {"adapter": chosen}, as_json, follow, verdict)


def render_data_report(report, prepared, decided: dict[str, str], fix: bool) -> str:
    from weightgate.core.training.checks import decide

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
    for group in report.exact_duplicates[:10]:
        kept = group["kept"]
        for row in group["removed"]:
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
