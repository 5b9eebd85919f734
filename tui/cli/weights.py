"""`weightgate weights`: phase 2 (and the shortlist of phase 1), which bytes, and are they the
published ones: inspect, add, choose, fetch, verify, scan, convert, trust."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from weightgate.core.engine.errors import WeightgateError
from weightgate.core.weights.candidates import add_candidate, choose_model, chosen_model, metadata_summary, start_fetch
from weightgate.core.weights.checks import record_verification
from weightgate.core.weights.convert import plan_conversion
from weightgate.core.weights.metadata import fetch_metadata
from weightgate.core.weights.metadata_cache import save_metadata
from weightgate.core.weights.pickle_policy import check_pickle_allowed, trust_pickle, trust_remote_code
from weightgate.core.weights.picklescan import scan_file
from weightgate.core.weights.verify import verify_lock
from weightgate.tui.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    AttachOpt,
    JsonOpt,
    as_dict,
    attach,
    clean_help,
    command,
    fail,
    group,
    run_job_to_end,
    say_if_locked,
    workspace,
)

SourceArg = Annotated[str, typer.Argument(help="org/name\\[@revision], a model directory or a .gguf")]
NoteOpt = Annotated[str, typer.Option("--note", "-n", help="Why you trust it: what you reviewed.")]

app = group("weights", """Phase 2: which bytes, and are they the published ones.

Shortlist and choose a model from its metadata, fetch it verified, re-verify it, scan pickles,
convert trusted ones to safetensors, trust a file or a commit explicitly.""")
trust_app = typer.Typer(name="trust", no_args_is_help=True, add_completion=False,
                        help=clean_help("Explicit trust: a pickle file at one sha256, remote code at one commit."))
app.add_typer(trust_app)


@command(app)
def inspect(source: SourceArg,
            save: Annotated[bool, typer.Option("--save", help="Cache it for the shortlist check.")] = False,
            as_json: JsonOpt = False) -> None:
    """Model metadata without downloading weights.

    Parameters by dtype (from the safetensors headers over HTTP ranges), files with sizes and
    published hashes, licence, remote code, architecture."""
    try:
        meta = fetch_metadata(source)
    except WeightgateError as exc:
        fail(exc, as_json)
    data = meta.to_dict()
    if save:
        save_metadata(workspace(as_json), source, metadata_summary(data))
    print(json.dumps(data, indent=2, default=str) if as_json else render_metadata(data))


@command(app)
def add(source: SourceArg, note: Annotated[str, typer.Option("--note", "-n", help="Why it is a candidate.")] = "",
        as_json: JsonOpt = False) -> None:
    """Shortlist a candidate from its metadata (no weights), smallest first.

    Appends it to \\[\\[candidates]] of weightgate.toml and caches its metadata."""
    ws = workspace(as_json)
    try:
        summary = add_candidate(ws, source, note)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    print(f"added {source}: {summary['parameter_count']:,} parameters ({summary['size_class']}), "
          f"licence {summary['license'] or '?'}" + (", REMOTE CODE" if summary.get("remote_code") else ""))
    for warning in summary.get("warnings", []):
        print(f"  warning: {warning}")


@command(app)
def choose(source: Annotated[str, typer.Argument(help="A shortlisted candidate.")],
           reason: Annotated[str, typer.Option("--reason", "-r", help="Why this one.")],
           as_json: JsonOpt = False) -> None:
    """Record the chosen model in \\[decisions], with the reason."""
    ws = workspace(as_json)
    try:
        choose_model(ws, source, reason)
    except WeightgateError as exc:
        fail(exc, as_json)
    print(json.dumps({"model": source, "reason": reason}) if as_json else f"chose {source}: {reason}")


@command(app)
def fetch(source: Annotated[Optional[str], typer.Argument(help="Default: the chosen model.")] = None,
          follow: AttachOpt = False, as_json: JsonOpt = False) -> None:
    """Download the model verified and write weightgate.lock (a detached job).

    A hub model is hashed while it downloads, against the hub's published sha256, resumable, into
    the Hugging Face cache. A local directory is hashed in parallel and locked; a .gguf is hashed
    (against the candidate's published sha256), converted once to safetensors and locked (a job)."""
    ws = workspace(as_json)
    try:
        outcome = start_fetch(ws, source or chosen_model(ws))
    except WeightgateError as exc:
        fail(exc, as_json)
    say_if_locked(ws, 2, "this fetch")
    if outcome.get("job"):
        job_dir = Path(outcome["job_dir"])
        if follow:
            raise typer.Exit(attach(job_dir, as_json, follow=True))
        print(json.dumps(outcome, default=str) if as_json else
              f"started {outcome.get('kind', 'download')} {job_dir.name}; follow it with "
              f"`weightgate attach {job_dir.name}`")
        return
    print(json.dumps(outcome, indent=2, default=str) if as_json else
          f"locked {outcome['source']}: {outcome['files']} files, {outcome['bytes']:,} bytes hashed")


@command(app)
def verify(changed: Annotated[bool, typer.Option("--changed", help="Only files whose size or mtime moved.")] = False,
           as_json: JsonOpt = False) -> None:
    """Re-hash every locked file in parallel and check every header."""
    ws = workspace(as_json)
    try:
        report = verify_lock(ws, only_changed=changed)
    except WeightgateError as exc:
        fail(exc, as_json)
    record_verification(ws, report)
    say_if_locked(ws, 2, "this verification")
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        for result in report.files:
            # A tick only when the bytes match and the header (if it has one) is sound.
            mark = "✓" if result.ok and result.header_ok else "✗"
            extra = f"  {result.message}" if result.message else ""
            header = ""
            if result.header_kind:
                header = f"  header {result.header}" + (f": {result.header_message}" if result.header_message else "")
            print(f"  {mark} {result.status:<14} {result.path}{header}{extra}")
        if report.lock_fault:
            print(f"  ✗ {report.lock_fault}")
        for path in report.unlisted:
            print(f"  ! unlisted       {path}  not in weightgate.lock: never loaded through weightgate")
        verdict = "all match" if report.ok else "VERIFICATION FAILED: " + "; ".join(report.reasons())
        print(f"{len(report.files)} files, {report.bytes_hashed / 2**20:,.1f} MiB hashed in "
              f"{report.seconds:.2f} s ({report.mb_per_s:,.0f} MB/s, {report.workers} workers): {verdict}")
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


@command(app)
def scan(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A pickle-based file.")],
         as_json: JsonOpt = False) -> None:
    """Statically scan a pickle or torch checkpoint: what would it import?

    It never unpickles."""
    try:
        result = scan_file(path)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(f"{path}: {result.format}, {len(result.imports)} import(s), "
              + ("no findings" if result.safe else f"{len(result.findings)} finding(s)"))
        for note in result.notes:
            print(f"  {note}")
        # One line per distinct import or call, however often the pickle repeats it.
        groups: dict[tuple, list] = {}
        for finding in result.findings:
            groups.setdefault((finding.severity, finding.qualname, finding.reason), []).append(finding)
        for (severity, qualname, reason), found in groups.items():
            first = found[0]
            times = f" x{len(found)}" if len(found) > 1 else ""
            print(f"  {severity:<9} {qualname}{times} (first: {first.opcode} at byte {first.offset} of "
                  f"{first.member})" + (f": {reason}" if reason else ""))
    raise typer.Exit(EXIT_OK if result.safe else EXIT_FAILED)


@command(app)
def convert(path: Annotated[str, typer.Argument(help="The pickle file: its path in weightgate.lock, relative to "
                                                     "the workspace, or absolute.")],
            key: Annotated[Optional[str], typer.Option("--key", help="Dotted key of the sub-dict holding the "
                                                                     "weights (e.g. state_dict).")] = None,
            output_dir: Annotated[Optional[str], typer.Option(
                "--output-dir", help="Where to write it (default: next to the input, where later phases load "
                                     "it from).")] = None,
            overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
            as_json: JsonOpt = False) -> None:
    """Convert one trusted pickle checkpoint to safetensors (a job).

    torch.load(weights_only=True) in the job process; a locked file's twin is added to
    weightgate.lock, so later phases load the safetensors."""
    ws = workspace(as_json)
    try:
        plan = plan_conversion(ws, path, output_dir=output_dir, overwrite=overwrite)
        scan_result = check_pickle_allowed(ws, plan.source)   # trusted at these bytes and scanned clean
    except WeightgateError as exc:
        fail(exc, as_json)
    if not as_json:
        print(f"{plan.source}: trusted, scan clean ({scan_result.format}, {len(scan_result.imports)} allowlisted "
              f"imports); converting to {plan.output.name} in a job", flush=True)
    params = {"path": str(plan.source), "output_dir": str(plan.output.parent), "overwrite": overwrite}
    if key:
        params["key"] = key
    result = run_job_to_end("convert_pickle", params, as_json)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    elif result.get("ok"):
        print(f"converted {plan.source.name} -> {result['output']}: {result['tensors']} tensors, "
              f"sha256 {result['sha256']}")
        locked = result.get("locked")
        if locked:
            print(f"locked {locked['twin']} as the safetensors twin of {locked['of']} in weightgate.lock"
                  + (f" (and {locked['index']})" if locked.get("index") else "")
                  + ("; verification evidence refreshed" if locked.get("verified") else
                     "; verification found a problem: weightgate weights verify"))
        elif plan.locked_as is None:
            print("not a file of the locked model: weightgate.lock is unchanged")
    else:
        print(f"not converted: {result.get('error')}", file=sys.stderr)
    raise typer.Exit(EXIT_OK if result.get("ok") else EXIT_FAILED)


@command(trust_app, "pickle")
def trust_pickle_cmd(path: Annotated[str, typer.Argument(help="The pickle file (as in weightgate.lock).")],
                     sha256: Annotated[str, typer.Option("--sha256", help="The exact bytes you reviewed.")],
                     note: NoteOpt,
                     despite_findings: Annotated[bool, typer.Option(
                         "--despite-findings", help="Record the trust although the scan found imports outside "
                                                    "the allowlist (it still never loads).")] = False,
                     as_json: JsonOpt = False) -> None:
    """Trust one pickle file at one sha256.

    It is still scanned, and loaded only with torch.load(weights_only=True). A file whose scan
    finds dangerous or unknown imports is refused unless --despite-findings (and never loads)."""
    ws = workspace(as_json)
    try:
        trust = trust_pickle(ws, path, sha256, note, despite_findings=despite_findings)
    except WeightgateError as exc:
        fail(exc, as_json)
    print(json.dumps(as_dict(trust), default=str) if as_json else f"trusted {trust.path} at {trust.sha256[:12]}")


@command(trust_app, "remote-code")
def trust_remote_code_cmd(target: Annotated[str, typer.Argument(help="org/name@<40-hex commit>")],
                          note: NoteOpt, as_json: JsonOpt = False) -> None:
    """Trust a repo's Python code at one pinned commit (a branch name is refused)."""
    ws = workspace(as_json)
    repo, _, commit = target.partition("@")
    try:
        trust = trust_remote_code(ws, repo, commit, note)
    except WeightgateError as exc:
        fail(exc, as_json)
    print(json.dumps(as_dict(trust), default=str) if as_json else
          f"trusted remote code of {trust.repo} at {trust.commit}")


def render_metadata(data: dict) -> str:
    gib = 2 ** 30
    lines = [f"{data['source']['display']}" + (f" @ {data['commit'][:12]}" if data.get("commit") else "")]
    params = data.get("parameter_count") or 0
    by_dtype = ", ".join(f"{k} {v:,}" for k, v in sorted((data.get("parameters") or {}).items()))
    lines.append(f"  parameters    {params:,} ({data.get('size_class')}){'  [' + by_dtype + ']' if by_dtype else ''}")
    lines.append(f"  bf16 size     {data.get('bf16_bytes', 0) / gib:.2f} GiB   weights on disk "
                 f"{data.get('weight_bytes', 0) / gib:.2f} GiB ({data.get('weight_format') or '?'})")
    lines.append(f"  architecture  {data.get('architecture') or '?'}  layers {data.get('num_layers')}  "
                 f"heads {data.get('num_attention_heads')}  kv heads {data.get('num_kv_heads')}  "
                 f"head_dim {data.get('head_dim')}  context {data.get('context_length')}"
                 + (f"  sliding window {data['sliding_window']}" if data.get("sliding_window") else ""))
    lines.append(f"  licence       {data.get('license') or 'none found'}")
    remote = data.get("remote_code")
    lines.append("  remote code   " + ("YES: " + "; ".join(data.get("remote_code_reasons") or []) if remote else "no"))
    lines.append(f"  files         {len(data.get('files') or [])}  (metadata cost {data.get('bytes_fetched', 0):,} bytes)")
    for warning in data.get("warnings") or []:
        lines.append(f"  warning       {warning}")
    return "\n".join(lines)
