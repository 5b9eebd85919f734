"""`weightgate track`: mirror runs to the team's tracker ([tracking] in weightgate.toml: MLflow
and / or TensorBoard). Jobs mirror themselves as they end; `sync` replays what a tracker missed."""

from __future__ import annotations

import json

import typer

from weightgate.core.engine.errors import WeightgateError
from weightgate.core.tracking.sync import sync_workspace, tracking_status
from weightgate.tui.cli.common import EXIT_FAILED, EXIT_OK, JsonOpt, command, fail, group, workspace

app = group("track", """Mirror runs to MLflow / TensorBoard (\\[tracking] in weightgate.toml).

Every training job mirrors its per-step loss, lr, grad norm, tokens/s and validation loss as it
ends, every eval run its scores by tag, every release its version, aliases and manifest digest.
The journal stays the source of truth: a tracker that is down never fails a job, and `sync`
sends it what it missed, once.""")

NOT_SET = ("no [tracking] in weightgate.toml: add mlflow = \"sqlite:///.weightgate/tracking/mlflow.db\" "
           "and / or tensorboard = \".weightgate/tracking/tensorboard\"")


@command(app)
def sync(as_json: JsonOpt = False) -> None:
    """Send every tracker the runs, eval runs and releases it has not had yet.

    Idempotent: what a tracker already holds is skipped, and a half-written run is replaced,
    never appended to. Exit 1 when a tracker could not be reached (the rest waits for next time)."""
    ws = workspace(as_json)
    try:
        report = sync_workspace(ws, log=None if as_json else print)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not report.destinations:
        print(NOT_SET)
    for line in report.unreadable if not as_json else []:
        print(f"  not readable: {line}")
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


@command(app)
def status(as_json: JsonOpt = False) -> None:
    """Where runs are mirrored and what each tracker has not had yet (offline)."""
    ws = workspace(as_json)
    try:
        state = tracking_status(ws)
    except WeightgateError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(state, indent=2))
        return
    if not state["enabled"]:
        print(NOT_SET)
        return
    for entry in state["destinations"]:
        waiting = entry["pending"]
        print(f"{entry['destination']}: {entry['records'] - len(waiting)} of {entry['records']} mirrored"
              + (f"; waiting: {', '.join(waiting[:5])}{' ...' if len(waiting) > 5 else ''}" if waiting else ""))
