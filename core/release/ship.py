"""`weightgate release ship`: turn today's model + precision + adapter into a registry version.

    plan_ship(ws, name, merge)   torch-free: what would ship, or an InputError saying what is
                                 missing (a lock, an eval run of today's configuration, a usable
                                 name, a mergeable precision)
    ship(ws, name, merge)        only through open gates (core.release.gate; or an override with
                                 its reason): build it in a staging directory (weights, tokenizer,
                                 eval results, manifest with [gates] and [checklist], card,
                                 SHA256SUMS), rename it to vN, make it the `candidate`, write
                                 [decisions] release (phase 6 is now decided on it), record evidence

`current` does not move here: `weightgate release promote` moves it once the candidate's phase-6
checks pass (core.release.promote). Identical content (files + manifest minus times) shipped
again creates no version: the existing one becomes the candidate (or stays current). A failure at
any step removes the staging directory; nothing half-built is ever named vN.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from weightgate.core.engine.errors import InputError, WeightgateError
from weightgate.core.engine.evidence import FAIL, PASS, record_result
from weightgate.core.engine.fingerprints import Fingerprints, plain
from weightgate.core.engine.lock import lock_digest, model_dir, read_lock
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.checks import ceilings_of
from weightgate.core.evaluation.generation import generate_all, render
from weightgate.core.evaluation.latency import batch_summary, check_rows, measure_batches
from weightgate.core.evaluation.plan import EVAL_KINDS, plan_eval, resolve_adapter
from weightgate.core.evaluation.runs import CASES_FILE, COMPLETE, RUN_FILE, list_runs
from weightgate.core.memory.loading import load_model, precision_name, precision_spec
from weightgate.core.registry import store as registry
from weightgate.core.registry.manifest import (
    SCHEMA,
    adapter_block,
    content_digest,
    dataset_block,
    dumps,
    environment,
    eval_block,
    git_state,
    read_manifest,
    training_block,
)
from weightgate.core.registry.serving import serve_commands
from weightgate.core.registry.store import check_name, default_name, list_versions
from weightgate.core.registry.verify import ReleaseReport, hash_tree, verify_version, write_stamp, write_sums
from weightgate.core.release.card import card_text
from weightgate.core.release.gate import checklist_snapshot, ship_gate
from weightgate.core.release.load import load_version
from weightgate.core.release.merge import check_merge, merge_and_save, merge_refusal, prefill_logits
from weightgate.core.release.promote import rewrite_record
from weightgate.core.weights.verify import verified_snapshot

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")
# Never copied from the base into a version: its own card (ours replaces it) and repo dotfiles.
NOT_SHIPPED = ("README.md",)
TOKEN_PATTERN = re.compile(rb"hf_[A-Za-z0-9]{30,}")
TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN")

Log = Callable[[str], None]


class ShipRefused(WeightgateError):
    """The version cannot ship (the merge changed outputs, a secret was found). Exit code 1."""

    exit_code = 1

    def __init__(self, message: str, values: dict | None = None):
        super().__init__(message)
        self.message = message
        self.values = values or {}

    def to_dict(self) -> dict:
        return {"error": self.message, **self.values}


@dataclass
class ShipPlan:
    ws: Workspace
    name: str
    config: dict
    lock: object
    base_dir: Path
    precision_decision: object
    precision_name: str
    adapter_dir: Path | None
    adapter_decision: object
    relation: str
    merge: str                  # merged | separate | refused | none
    merge_reason: str
    task_run: object
    general_run: object | None
    warnings: list[str] = field(default_factory=list)


def _latest_fresh_run(ws: Workspace, set_name: str, prints: Fingerprints):
    wanted = {"model": prints.get("model"), "precision": prints.get("precision"),
              "adapter": prints.get("adapter"), "evalset": prints.get(f"evalset.{set_name}")}
    for run in list_runs(ws, set_name):
        if (run.status == COMPLETE and run.config.get("kind", "eval") in EVAL_KINDS
                and not run.components.get("limit")
                and all(run.components.get(key) == value for key, value in wanted.items())):
            return run
    return None


def plan_ship(ws: Workspace, name: str | None = None, merge: bool | None = None) -> ShipPlan:
    config = plain(ws.config())
    lock = read_lock(ws)
    if lock is None:
        raise InputError("no model locked in this workspace", path=ws.lock_path,
                         hint="choose and fetch a model first: weightgate weights choose SOURCE; weightgate weights fetch")
    name = check_name(name or default_name(ws, config))
    base_dir = model_dir(ws, lock)
    decisions = config.get("decisions") if isinstance(config.get("decisions"), dict) else {}
    precision = decisions.get("precision")
    pname = precision_name(precision, base_dir)
    adapter_decision = decisions.get("adapter")
    adapter_dir = resolve_adapter(ws, adapter_decision)
    refusal = merge_refusal(pname)
    wanted = merge if merge is not None else decisions.get("merge")
    if adapter_dir is None:
        if merge:
            raise InputError("--merge: there is no adapter to merge ([decisions] adapter is not set)",
                             path=ws.config_path, hint="ship without --merge, or set [decisions] adapter")
        mode, reason = "none", "no adapter: the base model ships as it is"
    elif wanted is True and refusal:
        raise InputError(f"refusing to merge: {refusal}", path=ws.config_path,
                         hint="ship with --no-merge, or change the precision and evaluate again")
    elif wanted is None and refusal:
        mode, reason = "refused", refusal
    elif wanted is False:
        mode, reason = "separate", ("kept separate as decided: the adapter can be swapped per tenant and is "
                                    "served on the pinned base")
    elif wanted is True or wanted is None:
        mode, reason = "merged", (f"merged at {pname}: one model, no adapter arithmetic per token; "
                                  "greedy outputs checked equal to the adapter's")
    else:
        raise InputError(f"[decisions] merge must be true or false, not {wanted!r}", path=ws.config_path)
    if adapter_dir is not None:
        relation = "merged" if mode == "merged" else "adapter"
    else:
        relation = "quantized" if refusal else "base"
    prints = Fingerprints(ws, config)
    task_run = _latest_fresh_run(ws, "task", prints)
    if task_run is None:
        raise InputError("no complete run of the task eval set on today's model, precision, adapter and eval set",
                         path=ws.runs_dir, hint="run it first: weightgate eval run --attach (the manifest records "
                                                "its scores and the canary compares against its outputs)")
    general = _latest_fresh_run(ws, "general", prints)
    plan = ShipPlan(ws, name, config, lock, base_dir, precision, pname, adapter_dir, adapter_decision, relation,
                    mode, reason, task_run, general)
    if general is None:
        plan.warnings.append("no run of the general set on today's configuration: the manifest has task scores only")
    return plan


# --- building --------------------------------------------------------------------------------


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)   # contents only: no modes, no symlinks into the HF cache


def _copy_base(plan: ShipPlan, staging: Path, base_dir: Path) -> None:
    for entry in plan.lock.files:
        if entry.path in NOT_SHIPPED or entry.path.startswith("."):
            continue
        _copy(base_dir / entry.path, staging / entry.path)


def _copy_tokenizer(base_dir: Path, staging: Path) -> None:
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            _copy(base_dir / name, staging / name)


def _copy_adapter(plan: ShipPlan, staging: Path) -> None:
    for name in ADAPTER_FILES:
        _copy(plan.adapter_dir / name, staging / name)
    # The adapter's pointer to its base: a path on the training machine means nothing elsewhere;
    # point it at the pinned base (the manifest has the commit and every file's hash).
    path = staging / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = plan.lock.source if plan.lock.kind == "hub" else "base (see manifest.toml)"
    if plan.lock.kind == "hub":
        config["revision"] = plan.lock.commit
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _copy_runs(plan: ShipPlan, staging: Path) -> None:
    for set_name, run in (("task", plan.task_run), ("general", plan.general_run)):
        if run is None:
            continue
        for name in (RUN_FILE, CASES_FILE):
            _copy(run.path / name, staging / "eval" / set_name / name)


def _merge(plan: ShipPlan, staging: Path, base_dir: Path, device: str, log: Log):
    """Merge into staging and prove the outputs unchanged: (values for the manifest, the check)."""

    batch = int(plan.task_run.components.get("batch_size") or 1)
    eval_plan = plan_eval(plan.ws, "task", batch_size=batch, device=device)
    loaded = load_model(base_dir, plan.precision_decision, plan.adapter_dir, device)
    prompts = [render(loaded.tokenizer, eval_plan.messages(case)) for case in eval_plan.cases]
    ids = [case.id for case in eval_plan.cases]
    log(f"adapter on base: generating {len(prompts)} cases greedily (batch {batch})")
    adapter_outputs = generate_all(loaded, prompts, eval_plan.settings, batch)
    adapter_logits = prefill_logits(loaded, prompts, batch)
    log("merging the adapter into the base (merge_and_unload) and saving it")
    merge_and_save(loaded, base_dir, staging)
    del loaded
    log("loading the merged model from disk and generating the same cases")
    check = check_merge(staging, plan.precision_name, ids, prompts, eval_plan.settings, batch, adapter_outputs,
                        adapter_logits, device=device)
    if not check.ok:
        raise ShipRefused(f"the merge changed outputs: {check.summary()}", {"merge_check": check.to_dict()})
    log(check.summary())
    # The manifest says what was proven (its tolerance); the measured deviation goes to the
    # evidence and the job result, so a last-bit difference never makes "new" content.
    return {"checked": True, "cases": check.cases, "mismatches": 0, "batch_size": batch,
            "max_new_tokens": eval_plan.settings.get("max_new_tokens"),
            "logit_tolerance": check.tolerance}, check


def _scan_secrets(staging: Path) -> None:
    """No token may leave the machine inside a version: refuse one found in any shipped file."""
    tokens = [os.environ[key].encode() for key in TOKEN_ENV if len(os.environ.get(key, "")) >= 8]
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        if path.suffix == ".safetensors":
            continue   # tensors; their JSON header is checked by the loaders, no free text
        data = path.read_bytes()
        if TOKEN_PATTERN.search(data) or any(token in data for token in tokens):
            raise ShipRefused(f"{path.relative_to(staging)} contains what looks like a Hugging Face token; "
                              "nothing was shipped", {"file": str(path.relative_to(staging))})


def build_manifest(plan: ShipPlan, version: str, files: dict[str, str], staging: Path, merge_values: dict,
                   device: str) -> dict:
    lock = plan.lock
    loads = f"{lock.load_dir}/" if lock.load_dir else ""
    spec = precision_spec(plan.precision_decision, plan.base_dir, device)
    requirements = plan.config.get("requirements") if isinstance(plan.config.get("requirements"), dict) else {}
    prints = Fingerprints(plan.ws, plan.config)
    evals = [eval_block(plan.task_run, "task")]
    if plan.general_run is not None:
        evals.append(eval_block(plan.general_run, "general"))
    return {
        "schema": SCHEMA,
        "release": {"name": plan.name, "version": version, "relation": plan.relation, "created": time.time(),
                    "content_digest": "", "weightgate_version": environment()["weightgate"]},
        "base": {"repo": lock.source, "kind": lock.kind, "origin": lock.origin or "",
                 "revision": lock.revision or "", "commit": lock.commit or "",
                 "license": lock.license or "", "lock_digest": lock_digest(lock), "local_dir": str(plan.base_dir),
                 # the files that load, relative to local_dir; for a GGUF source, the GGUF it was
                 # converted from is recorded beside them
                 "files": [{"path": f.path[len(loads):], "size": f.size, "sha256": f.sha256} for f in
                           sorted(lock.files, key=lambda f: f.path) if f.path.startswith(loads)],
                 "converted_from": [{"path": f.path, "size": f.size, "sha256": f.sha256, "hash": f.hash_source}
                                    for f in sorted(lock.files, key=lambda f: f.path)
                                    if not f.path.startswith(loads)]},
        "files": [{"path": path, "size": (staging / path).stat().st_size, "sha256": digest}
                  for path, digest in sorted(files.items())],
        "precision": {"name": spec["name"], "dtype": spec["dtype"], "quantized": bool(spec["quantization"]),
                      "quantization": spec["quantization"], "flush_denormal": spec["flush_denormal"],
                      "decision": plan.precision_decision if plan.precision_decision else "native"},
        "adapter": adapter_block(plan.adapter_dir, plan.adapter_decision),
        "merge": {"decision": plan.merge, "reason": plan.merge_reason, "checked": False, **merge_values},
        "dataset": dataset_block(plan.ws, prints),
        "evals": evals,
        "training": training_block(plan.config, plan.adapter_dir),
        "environment": environment(),
        "code": git_state(plan.ws.root),
        "serving": {"context_length": int(requirements.get("context_length") or 0),
                    "batch_size": int(requirements.get("batch_size") or 1)},
    }


def _existing_with_digest(ws: Workspace, name: str, digest: str):
    for ref in list_versions(ws, name):
        try:
            if read_manifest(ref.path)["release"].get("content_digest") == digest:
                return ref
        except (InputError, KeyError):
            continue
    return None


def ship(ws: Workspace, name: str | None = None, merge: bool | None = None, *, override: str | None = None,
         device: str | None = None, log: Log | None = None, latency: bool = True) -> dict:
    """Build and publish a candidate version (see the module docstring). Returns what happened:
    the version, whether it is new, the gates, the merge check, the evidence recorded.

    override: the reason to ship although phase 6 is locked (GatesClosed without it)."""

    log = log or (lambda message: None)
    plan = plan_ship(ws, name, merge)
    gate = ship_gate(ws, override)
    if not gate.open:
        log(f"warning: shipping with closed gates ({', '.join(gate.held_ids)}); reason: {gate.override['reason']}")
    # The device the task run was measured on: the merge check compares outputs made the same way.
    device = device or str(plan.task_run.config.get("device") or "cpu")
    for warning in plan.warnings:
        log(f"warning: {warning}")
    base_dir = verified_snapshot(ws)
    staging = registry.new_staging(ws, plan.name)
    try:
        merge_values: dict = {}
        check = None
        if plan.relation == "merged":
            merge_values, check = _merge(plan, staging, base_dir, device, log)
        elif plan.relation == "adapter":
            _copy_adapter(plan, staging)
            _copy_tokenizer(base_dir, staging)
        else:
            _copy_base(plan, staging, base_dir)
        _copy_runs(plan, staging)
        files = hash_tree(staging)
        version = registry.next_version(ws, plan.name)
        manifest = build_manifest(plan, version, files, staging, merge_values, device)
        digest = content_digest(manifest, files)
        existing = _existing_with_digest(ws, plan.name, digest)
        report = verify_version(existing) if existing is not None else None
        if existing is not None and not report.ok:
            # The same content, but its copy in the registry was damaged: ship a sound one.
            log(f"identical to {existing.label}, whose files no longer match: {report.summary()}; "
                "publishing an intact copy")
        if existing is not None and report.ok:
            shutil.rmtree(staging)
            ref, created = existing, False
            log(f"identical to {existing.label}: no new version")
            recorded = read_manifest(ref.path).get("gates")
            if gate.open and not (isinstance(recorded, dict) and recorded.get("open")):
                # The same content, now through open gates: its record says so from now on.
                rewrite_record(ws, ref, gates=gate.table(), checklist=checklist_snapshot(gate.report, "ship"))
                log(f"{ref.label}'s manifest now records the open gates it went through")
        else:
            manifest["release"]["content_digest"] = digest
            manifest["gates"] = gate.table()
            manifest["checklist"] = checklist_snapshot(gate.report, "ship")
            serve = serve_commands(manifest, registry.name_dir(ws, plan.name) / version, ws.root)
            (staging / registry.MANIFEST_FILE).write_text(dumps(manifest), encoding="utf-8")
            (staging / registry.CARD_FILE).write_text(card_text(manifest, serve), encoding="utf-8")
            _scan_secrets(staging)
            sums = {**files, **hash_tree(staging, [registry.MANIFEST_FILE, registry.CARD_FILE])}
            write_sums(staging, sums)
            for path in staging.rglob("*"):
                # Readable by the serving user (save_pretrained and mkstemp leave 0600).
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            ref, created = registry.publish(ws, plan.name, staging), True
            log(f"published {ref.label} ({len(sums)} files)")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if created:
        report = ReleaseReport(ref.label, str(ref.path), files={p: "ok" for p in sums}, expected=sums, actual=sums)
    write_stamp(ws, ref, report)
    aliases = registry.read_aliases(ws, plan.name)
    if aliases.get(registry.CURRENT) != ref.version:
        registry.move_aliases(ws, plan.name, {registry.CANDIDATE: ref.version},
                              reason="ship" if gate.open else f"ship with closed gates: {gate.override['reason']}")
    registry.set_release(ws, ref)
    gate.record(ws, "release ship", ref.label)
    aliases = registry.read_aliases(ws, plan.name)
    outcome = {"name": plan.name, "version": ref.version, "release": ref.label, "created": created,
               "path": str(ref.path), "relation": plan.relation, "merge": plan.merge,
               "merge_reason": plan.merge_reason, "merge_check": check.to_dict() if check else None,
               "current": aliases.get(registry.CURRENT), "candidate": aliases.get(registry.CANDIDATE),
               "gates": gate.table(), "warnings": plan.warnings}
    measured = {"logit_deviation": check.logit_deviation} if check else {}
    outcome["evidence"] = record_ship_evidence(ws, ref, latency=latency, device=device, log=log, measured=measured)
    return outcome


def record_ship_evidence(ws: Workspace, ref, *, latency: bool, device: str, log: Log,
                         measured: dict | None = None) -> dict:
    """ship.merge and ship.serving from the manifest; ship.latency measured on the version loaded
    from the registry. Called after [decisions] release names `ref`, so the evidence is its."""

    manifest = read_manifest(ref.path)
    merge = manifest["merge"]
    recorded = {}
    note = merge["reason"] if merge["decision"] != "merged" else \
        f"merged at {manifest['precision']['name']}; outputs equal the adapter's on {merge.get('cases')} cases"
    record_result(ws, "ship.merge", PASS, {"version": ref.label, **merge, **(measured or {})}, note=note)
    recorded["ship.merge"] = PASS
    commands = serve_commands(manifest, ref.path, ws.root)
    refused = "; ".join(f"no {engine} command: {why}" for engine, why in commands["refused"].items())
    record_result(ws, "ship.serving", PASS, {"version": ref.label, **commands},
                  note=(f"vLLM: {commands['vllm']}" if commands["vllm"] else
                        f"transformers serve: {commands['transformers_serve']}") + (f" | {refused}" if refused else ""))
    recorded["ship.serving"] = PASS
    if latency:
        result = measure_release_latency(ws, ref, device=device)
        status = PASS if result["within"] else FAIL
        note = ("within ceilings: " if result["within"] else
                "; ".join(result["violations"] + [f"set [requirements.ceilings] {k}" for k in result["missing_ceilings"]])
                + " | ") + result["summary"]
        record_result(ws, "ship.latency", status, {k: v for k, v in result.items() if k != "summary"}, note=note)
        recorded["ship.latency"] = status
        log(f"latency of {ref.label}: {note}")
    return recorded


def measure_release_latency(ws: Workspace, ref, *, device: str = "cpu", requests: int | None = None) -> dict:
    """TTFT and tokens/s of the version as loaded from the registry (core.evaluation.latency), at batch 1
    and the serving batch, against the ceilings."""

    loaded, manifest = load_version(ref, ws.root, device=device)
    config = plain(ws.config())
    ceilings = ceilings_of(config)
    sizes = sorted({1, int(ceilings.get("batch_size") or 1)})
    eval_plan = plan_eval(ws, "task", batch_size=1, device=device)
    prompts = [render(loaded.tokenizer, eval_plan.messages(case)) for case in eval_plan.cases]
    rows = measure_batches(loaded, prompts, eval_plan.settings, sizes, requests=requests)
    checked, violations = check_rows(rows, ceilings)
    missing = [key for key in ("p95_latency_ms", "min_tokens_per_s") if key not in ceilings]
    summary = " | ".join(batch_summary(row) for row in rows)
    return {"version": ref.label, "batch_sizes": rows, "checked": checked, "violations": violations,
            "ceilings": ceilings, "missing_ceilings": missing, "within": not violations and not missing,
            "load_seconds": round(loaded.load_seconds, 3), "summary": summary}
