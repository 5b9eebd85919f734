"""Shared test helpers: workspaces in known states."""

from __future__ import annotations

import json
from pathlib import Path

from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.core.weights.local_source import lock_local_source

REQUIREMENTS = {
    "task": "Rewrite a date in any English format as YYYY-MM-DD; exact match counts.",
    "metric": "accuracy",
    "quality_threshold": 0.9,
}


def fill_requirements(ws: Workspace) -> None:
    def change(doc):
        req = doc["requirements"]
        for key, value in REQUIREMENTS.items():
            req[key] = value
        req["ceilings"]["p95_latency_ms"] = 1500
        req["ceilings"]["min_tokens_per_s"] = 25
        req["ceilings"]["memory_budget_gib"] = 8
        req["ceilings"]["cost_per_1k_tasks"] = 0.2
        req["deployment"]["hosting"] = "self-hosted"
        req["deployment"]["location"] = "on-prem"
        req["deployment"]["data_residency"] = "EU only"
    ws.update_config(change)


def write_cases(path: Path, count: int, *, tags=("hard", "edge")) -> None:
    lines = []
    for n in range(count):
        tag = [tags[n % len(tags)]] if tags else []
        lines.append(json.dumps({"id": f"c{n:03d}", "input": f"Rewrite as YYYY-MM-DD: March {n + 1}, 2021",
                                 "expected": f"2021-03-{n + 1:02d}", "scorer": "exact", "tags": tag}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def phase1_ready(root: Path) -> Workspace:
    """A workspace whose phase-1 requirement items all pass (attest items aside)."""
    ws = init_workspace(root)
    fill_requirements(ws)
    write_cases(ws.evals_dir / "task.jsonl", 24)
    return ws


def add_candidate(ws: Workspace, spec: str, parameters: int, licence: str = "apache-2.0") -> None:
    """A shortlisted candidate with cached metadata, as `weightgate weights add` leaves it."""
    import tomlkit

    from weightgate.core.weights.metadata_cache import save_metadata
    from weightgate.core.weights.sources import size_class

    def change(doc):
        if "candidates" not in doc:
            doc["candidates"] = tomlkit.aot()
        table = tomlkit.table()
        table["source"] = spec
        doc["candidates"].append(table)
    ws.update_config(change)
    save_metadata(ws, spec, {"parameter_count": parameters, "size_class": size_class(parameters),
                             "license": licence})


def record_benchmark(ws: Workspace, spec: str, **row) -> None:
    """A benchmark report as `weightgate eval benchmark` leaves it, with one row for `spec` (for
    tests of the gates and the UI; the benchmark itself is tested in tests/test_benchmark.py)."""
    from weightgate.core.engine.fingerprints import Fingerprints
    from weightgate.core.evaluation.benchmark import BENCHMARK_INPUTS
    from weightgate.core.evaluation.reports import save_report

    values = {"source": spec, "score": 0.95, "p50_latency_ms": 300.0, "p95_latency_ms": 400.0,
              "tokens_per_s": 50.0, "memory_gib": 1.0, "cost_per_1k_tasks": 0.01, "passed": 19,
              "cases": 20, "precision": "bf16", **row}
    save_report(ws, "benchmark", {"rows": [values], "fingerprints": Fingerprints(ws).of(BENCHMARK_INPUTS),
                                  "limit": None, "device": "cpu", "time": 0})


def choose(ws: Workspace, spec: str) -> None:
    from weightgate.core.weights.candidates import choose_model

    choose_model(ws, spec, "clears every requirement in the benchmark")


def wait_terminal(job_dir: Path, timeout: float = 90.0):
    """The job's status once it has ended (polls its status file)."""
    import time

    from weightgate.core.engine.jobs import read_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(job_dir)
        if status.is_terminal:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{job_dir.name} still {read_status(job_dir).state} after {timeout} s")


def tiny_workspace(root: Path, model_dir: Path, header: dict | None = None) -> Workspace:
    """Phase-1 requirements, 24 cases behind a `_set` header (4 new tokens: fast), the model locked."""
    ws = phase1_ready(root)
    path = ws.evals_dir / "task.jsonl"
    path.write_text(json.dumps({"_set": header or {"max_new_tokens": 4}}) + "\n" + path.read_text())
    lock_local_source(ws, str(model_dir))
    return ws


def set_decision(ws: Workspace, key: str, value) -> None:
    def change(doc):
        doc["decisions"][key] = value
    ws.update_config(change)


def rewrite_cases(ws: Workspace, change) -> None:
    path = ws.evals_dir / "task.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(row) if "_set" not in row else row) + "\n" for row in rows))


def make_adapter(model_dir: Path, out: Path, *, seed: int = 1, scale: float = 0.3) -> Path:
    """A LoRA on q/v/up projections whose B matrices are random (peft starts them at zero, which
    would change nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    # peft draws the A matrices from the global RNG: seed it (without moving other tests' RNG),
    # so the adapter, and every output below, is the same in every run.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                      target_modules=["q_proj", "v_proj", "up_proj"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    peft_model.save_pretrained(out)
    return out


def flip_byte(path: Path, offset: int = -100) -> bytes:
    data = bytearray(path.read_bytes())
    original = bytes(data)
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    return original
