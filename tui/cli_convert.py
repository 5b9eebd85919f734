"""`weightgate convert PATH`: a trusted pickle checkpoint to safetensors (the `convert_pickle` job).

    weightgate convert pytorch_model.bin [--key state_dict] [--output-dir DIR] [--overwrite] [--json]

PATH is a file in weightgate.lock (e.g. `pytorch_model.bin` of the locked model), a path relative
to the workspace (as `weightgate trust pickle` takes it), or an absolute path. Nothing starts
unless the file is trusted at its sha256 in weightgate.toml and its static scan is clean (exit 2,
with the exact `weightgate trust pickle` command when it is only untrusted). Then the detached
job loads it with torch.load(weights_only=True), writes the safetensors twin, reads every tensor
back and compares it bit for bit; for a locked file it adds the twin to weightgate.lock. This
command follows the job to the end (Ctrl-C detaches; `weightgate attach JOB` re-attaches).

Exit codes: 0 converted; 1 the job failed; 2 refused before any job (untrusted, changed, unsafe,
no such file, output exists).
"""

from __future__ import annotations

import json
import sys
from typing import Optional

EXIT_OK, EXIT_FAILED = 0, 1


def add_convert_commands(app, workspace, fail) -> None:
    import typer

    from weightgate.core.engine.errors import WeightgateError

    @app.command("convert")
    def convert_cmd(path: str = typer.Argument(..., help="The pickle file: its path in weightgate.lock, relative "
                                                         "to the workspace, or absolute."),
                    key: Optional[str] = typer.Option(None, "--key", help="Dotted key of the sub-dict holding the "
                                                                          "weights (e.g. state_dict)."),
                    output_dir: Optional[str] = typer.Option(None, "--output-dir",
                                                             help="Where to write it (default: next to the input, "
                                                                  "where later phases load it from)."),
                    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
                    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
        """Convert one trusted pickle checkpoint to safetensors in a job (torch.load weights_only=True);
        a locked file's twin is added to weightgate.lock, so later phases load the safetensors."""
        from weightgate.core.weights.convert import plan_conversion
        from weightgate.core.weights.pickle_policy import check_pickle_allowed

        ws = workspace(as_json)
        try:
            plan = plan_conversion(ws, path, output_dir=output_dir, overwrite=overwrite)
            scan = check_pickle_allowed(ws, plan.source)   # trusted at these bytes and scanned clean
        except WeightgateError as exc:
            fail(exc, as_json)
        if not as_json:
            print(f"{plan.source}: trusted, scan clean ({scan.format}, {len(scan.imports)} allowlisted imports); "
                  f"converting to {plan.output.name} in a job", flush=True)
        params = {"path": str(plan.source), "output_dir": str(plan.output.parent), "overwrite": overwrite}
        if key:
            params["key"] = key
        result = follow_job(ws, "convert_pickle", params, as_json)
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
                         "; verification found a problem: weightgate verify"))
            elif plan.locked_as is None:
                print("not a file of the locked model: weightgate.lock is unchanged")
        else:
            print(f"not converted: {result.get('error')}", file=sys.stderr)
        raise typer.Exit(EXIT_OK if result.get("ok") else EXIT_FAILED)


def follow_job(ws, kind: str, params: dict, as_json: bool) -> dict:
    """Start the job, print its log lines as they come (not with --json), return its result data
    with ok=True, or {ok: False, error} when it failed. Ctrl-C detaches (the job goes on)."""
    import typer

    from weightgate.core.engine.events import read_events
    from weightgate.core.engine.jobs import events_path, read_status, start_job
    from weightgate.core.engine.jobs import follow_job as follow_events

    handle = start_job(ws.jobs_dir, kind, params, workspace=ws.root)
    if not as_json:
        print(f"job {handle.job_id} (follow it elsewhere: weightgate attach {handle.job_id})", flush=True)
    try:
        for event in follow_events(handle.job_dir):
            if not as_json and event.kind == "log":
                print(f"  {event.payload.get('message', '')}", flush=True)
    except KeyboardInterrupt:
        print(f"\ndetached; the job goes on: weightgate attach {handle.job_id}", file=sys.stderr)
        raise typer.Exit(EXIT_OK)
    events, _ = read_events(events_path(handle.job_dir))
    results = [event for event in events if event.kind == "result"]
    payload = results[-1].payload if results else {}
    if payload.get("status") == "succeeded" and isinstance(payload.get("data"), dict):
        return {"ok": True, "job": handle.job_id, **payload["data"]}
    state = read_status(handle.job_dir).state
    errors = [event.payload.get("message", "") for event in events if event.kind == "error"]
    return {"ok": False, "job": handle.job_id, "state": state,
            "error": errors[-1] if errors else f"the {kind} job ended {state}"}
