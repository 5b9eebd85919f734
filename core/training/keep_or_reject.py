"""The keep-or-reject gate of a fine-tune (tune.gate): does the adapter win without harm?

    outcome = run_gate(ws, "20261122-0612-ab12")    # an adapter run id, or a directory

The adapter is evaluated on the task set and on the general set (eval runs with the adapter,
config.kind = "gate"; a complete run with the same identity is reused, not generated again), and
each run is compared case by case (core/compare.py) with the base model's baseline run of that
set: same model, precision, eval set and batch size, no adapter. A general baseline that does not
exist yet is run and marked first; a missing task baseline is an error (phase 5 opens only with
one).

Kept only when  task score rises by at least      [training] task_margin        (default 0.05)
           and  general score falls by at most    [training] general_tolerance  (default 0.02).
Keeping writes `[decisions] adapter = "<id>"` and then records tune.gate (so its fingerprint is
the kept adapter); both comparisons' run ids are in the evidence, for the Compare screen. Every
verdict is also saved as a `gate` report; a rejected challenger of an adapter that is already
kept leaves tune.gate as it was (the kept one still won its gate).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from weightgate.core.engine.digest import ABSENT
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import FAIL, PASS, record_result
from weightgate.core.engine.fingerprints import Fingerprints, plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.compare import compare_runs
from weightgate.core.evaluation.plan import decisions, plan_eval, resolve_adapter, workspace_target
from weightgate.core.evaluation.reports import save_report
from weightgate.core.evaluation.runner import execute, load_target, mark_baseline
from weightgate.core.evaluation.runs import Run, baseline_run, run_with_identity
from weightgate.core.memory.loading import default_device
from weightgate.core.training.data.settings import GATE_DEFAULTS, gate_settings

GATE_KIND = "gate"
SETS = ("task", "general")


def default_adapter(ws: Workspace) -> str:
    """The newest adapter under .weightgate/adapters/ with a best/ checkpoint."""
    candidates = [path for path in ws.adapters_dir.iterdir() if (path / "best" / "adapter_config.json").is_file()] \
        if ws.adapters_dir.is_dir() else []
    if not candidates:
        raise InputError("no trained adapter yet", path=ws.adapters_dir,
                         hint="train one (weightgate train start), or name an adapter directory")
    return max(candidates, key=lambda path: (path.stat().st_mtime, path.name)).name


def adapter_decision_value(ws: Workspace, adapter: str) -> str:
    """What `[decisions] adapter` will say: the run id for an adapter under .weightgate/adapters/,
    else the directory relative to the workspace."""
    if (ws.adapters_dir / adapter).is_dir():
        return adapter
    path = Path(adapter)
    path = path if path.is_absolute() else (Path.cwd() / path)
    try:
        return str(path.resolve().relative_to(ws.root))
    except ValueError:
        return str(path.resolve())


def targets(ws: Workspace, decision: str):
    """(base, adapter) targets: the locked model at the decided precision, without and with it."""

    config = plain(ws.config())
    current = workspace_target(ws, config) if _decided_adapter_ok(ws, config) else _bare_target(ws, config)
    base = dataclasses.replace(current, adapter=None, adapter_decision=None)
    adapter = dataclasses.replace(base, adapter=resolve_adapter(ws, decision), adapter_decision=decision)
    return base, adapter


def _decided_adapter_ok(ws: Workspace, config: dict) -> bool:
    try:
        resolve_adapter(ws, decisions(ws, config).get("adapter"))
    except InputError:
        return False
    return True


def _bare_target(ws: Workspace, config: dict):
    """The workspace target when the decided adapter is gone (the gate replaces it anyway)."""

    stripped = {**config, "decisions": {k: v for k, v in (config.get("decisions") or {}).items() if k != "adapter"}}
    return workspace_target(ws, stripped)


def evaluate(ws: Workspace, set_name: str, target, *, batch_size: int | None, kind: str, name: str, device: str,
             loaded: Callable | None = None, log: Callable[[str], None], progress=None) -> tuple[Run, bool]:
    """The run of `target` on a set: reused when one with the same identity exists. Returns
    (run, reused). loaded: returns the loaded model, called only when generating."""

    plan = plan_eval(ws, set_name, batch_size=batch_size, target=target, kind=kind, device=device)
    previous = run_with_identity(ws, set_name, plan.identity["digest"])
    if previous is not None:
        log(f"{set_name}: reusing run {previous.id} (same identity {plan.identity['digest'][7:19]})")
        return previous, True
    log(f"{set_name}: {len(plan.cases)} cases, identity {plan.identity['digest'][7:19]}")
    return execute(plan, loaded=loaded() if loaded else None, name=name, progress=progress), False


def _comparison(base: Run, tuned: Run) -> dict:
    comparison = compare_runs(base, tuned)
    overall = comparison.overall
    return {"base_run": base.id, "adapter_run": tuned.id, "base": round(overall.score_a, 6),
            "adapter": round(overall.score_b, 6), "delta": round(overall.delta, 6), "cases": overall.cases,
            "regressions": overall.regressions, "improvements": overall.improvements,
            "mcnemar_p": comparison.significance.mcnemar_p}


def verdict(task: dict, general: dict, margin: float, tolerance: float) -> tuple[bool, str]:
    task_ok = task["delta"] >= margin - 1e-9
    general_ok = general["delta"] >= -tolerance - 1e-9
    words = (f"task {task['base']:.3f} -> {task['adapter']:.3f} ({task['delta']:+.3f}, needs >= +{margin:g}); "
             f"general {general['base']:.3f} -> {general['adapter']:.3f} ({general['delta']:+.3f}, "
             f"may fall by <= {tolerance:g})")
    words += _looser_than_default(margin, tolerance)
    if task_ok and general_ok:
        return True, "kept: " + words
    why = []
    if not task_ok:
        why.append("the task score does not rise enough")
    if not general_ok:
        why.append("the general score falls too far")
        cases = general.get("cases") or 0
        if cases and tolerance < 1 / cases - 1e-9:
            # Say so: a tolerance finer than one case of the set lets no single regression through.
            words += (f"; one case of the general set is {1 / cases:.3f}, so a tolerance of {tolerance:g} "
                      "rejects any regression: add general cases or set [training] general_tolerance knowingly")
    return False, "rejected (" + " and ".join(why) + "): " + words


def _looser_than_default(margin: float, tolerance: float) -> str:
    """A gate loosened in weightgate.toml says so in every verdict: never silently weaker."""

    looser = []
    if margin < GATE_DEFAULTS["task_margin"] - 1e-9:
        looser.append(f"task_margin {margin:g} (default {GATE_DEFAULTS['task_margin']:g})")
    if tolerance > GATE_DEFAULTS["general_tolerance"] + 1e-9:
        looser.append(f"general_tolerance {tolerance:g} (default {GATE_DEFAULTS['general_tolerance']:g})")
    return f"; looser than the defaults, set in [training]: {', '.join(looser)}" if looser else ""


def run_gate(ws: Workspace, adapter: str | None = None, *, device: str | None = None,
             progress: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Evaluate the adapter, compare with the base baselines, decide, record. See the module doc."""

    log = log or (lambda message: None)
    config = plain(ws.config())
    gate = gate_settings(config, ws.config_path)
    decision = adapter_decision_value(ws, adapter or default_adapter(ws))
    base_target, adapter_target = targets(ws, decision)
    device = device or default_device()
    prints = Fingerprints(ws, config)
    wanted = {"model": base_target.model_id, "precision": prints.get("precision"), "adapter": ABSENT}
    task_base = baseline_run(ws, "task", **wanted, evalset=prints.get("evalset.task"))
    if task_base is None:
        raise InputError("no baseline of the base model on the task set for today's model, precision and eval set",
                         hint="phase 5 opens only with a baseline: run `weightgate eval run` first")
    batch_size = int(task_base.components.get("batch_size") or 0) or None
    runs: dict[str, dict] = {}
    loaded: list = []      # the adapter model, loaded once when a set needs generating

    def adapter_model():
        if not loaded:
            loaded.append(load_target(ws, adapter_target, device))
        return loaded[0]

    for set_name in SETS:
        base = task_base if set_name == "task" else \
            baseline_run(ws, "general", **wanted, evalset=prints.get("evalset.general"))
        if base is None:
            log("general: no baseline of the base model yet; running it first")
            base, _ = evaluate(ws, "general", base_target, batch_size=batch_size, kind="eval", device=device,
                               name="general: base model (for the fine-tuning gate)", log=log)
            mark_baseline(ws, base.id)
        tuned, reused = evaluate(ws, set_name, adapter_target, batch_size=batch_size, kind=GATE_KIND,
                                 device=device, name=f"{set_name}: adapter {decision} (gate)",
                                 loaded=adapter_model, log=log, progress=progress)
        runs[set_name] = {**_comparison(base, tuned), "reused": reused}
        log(f"{set_name}: base {runs[set_name]['base']:.3f} (run {base.id}) vs adapter "
            f"{runs[set_name]['adapter']:.3f} (run {tuned.id})")
    keep, note = verdict(runs["task"], runs["general"], gate["task_margin"], gate["general_tolerance"])
    values = {"adapter": decision, "kept": keep, "task": runs["task"], "general": runs["general"],
              "task_margin": gate["task_margin"], "general_tolerance": gate["general_tolerance"],
              "device": device}
    kept_before = (config.get("decisions") or {}).get("adapter")
    if keep:
        def write(doc):
            doc["decisions"]["adapter"] = decision
        ws.update_config(write)
    values["report"] = str(save_report(ws, "gate", {**values, "note": note}).relative_to(ws.root))
    if keep or kept_before in (None, "", decision):
        # After the decision is written, so a kept adapter's evidence carries its own fingerprint.
        record_result(ws, "tune.gate", PASS if keep else FAIL, values, kind="job", note=note)
    else:
        # Another adapter is kept and stays kept: a rejected challenger does not fail its item.
        note += f" ({kept_before} stays the kept adapter)"
    log(note)
    return {**values, "note": note}

