"""Benchmark: memory estimates against measurements, ours beside `accelerate estimate-memory`.

    .venv/bin/python tests/bench/memory_accuracy.py                 # tiny + demo, fp32/bf16/int8/nf4
    .venv/bin/python tests/bench/memory_accuracy.py --also-default  # + glibc's default allocator
    .venv/bin/python tests/bench/memory_accuracy.py --json out.json

For each model (the tiny test model and the demo model, SmolLM2-135M-Instruct) and precision:

  estimate   weightgate's estimator, from hub metadata only: the model is published on the
             loopback hub emulator (tests/hub_emulator.py: config.json and the safetensors
             headers; the tensor bytes are virtual, never served) and estimated through
             `core.memory.precision.estimate_for_source("bench/<model>")`, as `weightgate memory estimate` does.
  measured   the model loaded on the CPU at that precision through the eval engine's loader, in
             one fresh process per precision (core.memory.measure: footprint incl. bnb quant
             state; RSS delta of the load; one prefill's peak; one LoRA step's peak, see there),
             each over a baseline taken after the runtime was warmed on a throwaway one-layer
             copy of the model (first-use state: the `runtime` column, beside the estimator's
             runtime overhead). --no-warmup measures from the cold baseline instead.
  accelerate `accelerate estimate-memory bench/<model> --library_name transformers` against the
             same loopback hub (its model_info + config.json: it needs a hub id), run in the
             same bench run: `accelerate.commands.estimate.gather_data`, the function its CLI
             prints, in a subprocess whose HF_ENDPOINT is the emulator. Its float16 / int8 /
             int4 columns are compared with our bf16 / int8 / nf4. It estimates weights only
             (total parameter bytes / 2, / 4, / 8) and full fine-tuning with Adam; it has no
             KV cache, activation, LoRA or quantization-overhead terms, so only its weights
             figure is comparable: it is compared with the measured footprint and with the
             measured load (RSS).

Errors are (estimate - measured) / measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))

PRECISIONS = ("fp32", "bf16", "int8", "nf4")
ACCELERATE_DTYPE = {"fp32": "float32", "bf16": "float16", "int8": "int8", "nf4": "int4"}
SHAPES = {   # train: one LoRA step (r=16, all linear); infer: one prefill
    "tiny": {"train": {"batch": 4, "seq": 256}, "infer": {"batch": 4, "seq": 256}},
    "demo": {"train": {"batch": 1, "seq": 256}, "infer": {"batch": 2, "seq": 512}},
}
MIB = 2**20


def publish(hub, repo_id: str, model_dir: Path) -> None:
    """config.json, tokenizer and README as they are; each safetensors file as a virtual blob
    whose header bytes are real (all that metadata reads)."""
    from hub_emulator import virtual_blob

    files: dict = {}
    for path in sorted(model_dir.iterdir()):
        if path.suffix == ".safetensors":
            with open(path, "rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                handle.seek(0)
                head = handle.read(8 + length)
            files[path.name] = virtual_blob(head, path.stat().st_size)
        elif path.is_file() and path.suffix in (".json", ".md", ".jinja", ".txt"):
            files[path.name] = path.read_bytes()
    hub.commit(repo_id, files)


def accelerate_figures(hub_url: str, home: str, repo_id: str) -> dict[str, dict]:
    """Run accelerate's estimate-memory data gathering against the emulator; bytes by dtype."""
    from hub_emulator import client_env

    code = (
        "import json, sys\n"
        "from accelerate.commands.estimate import estimate_command_parser, gather_data\n"
        "args = estimate_command_parser().parse_args([sys.argv[1], '--library_name', 'transformers', "
        "'--dtypes', 'float32', 'float16', 'int8', 'int4'])\n"
        "rows = gather_data(args)\n"
        "print(json.dumps({r[0]: {'largest_layer': r[1], 'total': r[2], 'training_adam': r[3]} for r in rows}, "
        "default=lambda v: v if not hasattr(v, 'items') else dict(v)))\n")
    env = {**os.environ, **client_env(hub_url, home)}
    done = subprocess.run([sys.executable, "-c", code, repo_id], capture_output=True, text=True, env=env, timeout=300)
    line = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if done.returncode != 0 or not line:
        raise RuntimeError(f"accelerate estimate-memory failed: {done.stderr[-1500:]}")
    return json.loads(line[-1])


def accelerate_cli_table(hub_url: str, home: str, repo_id: str) -> str:
    """The CLI itself, once, to show it ran offline against the emulator."""
    from hub_emulator import client_env

    env = {**os.environ, **client_env(hub_url, home)}
    exe = Path(sys.executable).with_name("accelerate")
    done = subprocess.run([str(exe), "estimate-memory", repo_id, "--library_name", "transformers"],
                          capture_output=True, text=True, env=env, timeout=300)
    return done.stdout.strip() if done.returncode == 0 else f"(the CLI failed: {done.stderr.strip()[-300:]})"


def measure_all(models: dict[str, Path], allocator: str, warmup: bool = True) -> dict[tuple[str, str], dict]:
    from weightgate.core.memory.measure import measure_plan_in_subprocess

    def plan(precision: str) -> list[dict]:
        return [{"model_dir": str(path), "precision": precision, "device": "cpu", "warmup": warmup, **SHAPES[name]}
                for name, path in models.items()]

    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(PRECISIONS, pool.map(lambda p: measure_plan_in_subprocess(plan(p), allocator=allocator,
                                                                                  timeout=1800), PRECISIONS)))
    return {(name, precision): result for precision, results in runs.items()
            for name, result in zip(models, results)}


def err(estimate: float, measured: float) -> str:
    return f"{(estimate - measured) / measured:+7.1%}" if measured else "    n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--also-default", action="store_true", help="measure with glibc's default allocator too")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--no-warmup", action="store_true",
                        help="do not warm the runtime first (first-use state lands in the model's rows)")
    args = parser.parse_args(argv)

    from hub_emulator import serve
    from tiny_model import build_tiny_model

    from weightgate.core.demo.model import ensure_demo_model
    from weightgate.core.memory.checks import compare_with_estimate
    from weightgate.core.memory.precision import estimate_for_source, tokenizer_bytes
    from weightgate.core.weights.metadata import fetch_metadata

    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="wg-membench-"))
    models = {"tiny": build_tiny_model(work / "tiny"), "demo": ensure_demo_model().path}
    home = work / "hf-home"
    home.mkdir()
    report: dict = {"models": {}, "rows": []}
    with serve() as hub:
        os.environ["HF_ENDPOINT"] = hub.url      # our metadata fetch reads it at call time
        for name, path in models.items():
            publish(hub, f"bench/{name}", Path(path))
        ours = {name: estimate_for_source(f"bench/{name}", context=512, device="cpu", budget_gib=64)
                for name in models}
        theirs = {name: accelerate_figures(hub.url, str(home), f"bench/{name}") for name in models}
        table = accelerate_cli_table(hub.url, str(home), "bench/demo")
    tokenizers = {name: tokenizer_bytes(fetch_metadata(str(path))) for name, path in models.items()}
    measured = measure_all(models, "steady", warmup=not args.no_warmup)
    default = measure_all(models, "default", warmup=not args.no_warmup) if args.also_default else {}

    print(f"memory estimates vs measurements on the CPU ({os.cpu_count()} cores); errors are "
          "(estimate - measured) / measured\n")
    print("accelerate estimate-memory bench/demo, run against the loopback hub:\n" + table + "\n")
    header = (f"{'model':5} {'prec':4} | {'weights: ours':>13} {'measured':>9} {'err':>7} | {'accelerate':>10} "
              f"{'err':>7} {'vs load':>7} | {'load err':>8} | {'prefill est':>11} {'meas':>7} {'err':>7} | "
              f"{'LoRA step est':>13} {'meas':>8} {'err':>7} | {'runtime est':>11} {'meas':>7} {'err':>7}"
              + (" | default-alloc err" if default else ""))
    print(header)
    print("-" * len(header))
    for (name, precision), result in measured.items():
        layout = ours[name].layout
        comparison = compare_with_estimate(result, layout, tokenizer_bytes=tokenizers[name])
        rows = comparison["rows"]
        acc = theirs[name][ACCELERATE_DTYPE[precision]]["total"]
        line = (f"{name:5} {precision:4} | {rows['weights']['estimate'] / MIB:10.1f} MiB {rows['weights']['measured'] / MIB:9.1f} "
                f"{err(rows['weights']['estimate'], rows['weights']['measured'])} | {acc / MIB:6.1f} MiB "
                f"{err(acc, rows['weights']['measured'])} {err(acc, rows['load']['measured'])} | "
                f"{err(rows['load']['estimate'], rows['load']['measured']):>8} | "
                f"{rows['prefill']['estimate'] / MIB:7.1f} MiB {rows['prefill']['measured'] / MIB:7.1f} "
                f"{err(rows['prefill']['estimate'], rows['prefill']['measured'])} | "
                f"{rows['train']['estimate'] / MIB:9.1f} MiB {rows['train']['measured'] / MIB:8.1f} "
                f"{err(rows['train']['estimate'], rows['train']['measured'])} | "
                + (f"{rows['runtime']['estimate'] / MIB:7.1f} MiB {rows['runtime']['measured'] / MIB:7.1f} "
                   f"{err(rows['runtime']['estimate'], rows['runtime']['measured'])}" if "runtime" in rows
                   else f"{'(not warmed)':>27}"))
        entry = {"model": name, "precision": precision, "ours": rows, "accelerate": theirs[name][ACCELERATE_DTYPE[precision]],
                 "shapes": SHAPES[name], "runtime_rss": result["rss_runtime"]}
        if default:
            other = compare_with_estimate(default[(name, precision)], layout, tokenizer_bytes=tokenizers[name])["rows"]
            line += f" | train {err(other['train']['estimate'], other['train']['measured'])}"
            entry["default_allocator"] = other
        print(line)
        report["rows"].append(entry)
    first = next(iter(models))     # measured first in each process: its baseline is the bare runtime
    imported = sorted({r['rss_imported'] // MIB for (n, _), r in measured.items() if n == first})
    first_use = sorted({(r['rss_runtime'] - r['rss_imported']) // MIB for (n, _), r in measured.items() if n == first})
    print(f"\nshapes: {json.dumps(SHAPES)}; runtime RSS with the imports: {imported} MiB, first-use state "
          f"(warm-up on a throwaway copy) on top: {first_use} MiB (fp32 / bf16 / int8 / nf4 processes); "
          f"{time.perf_counter() - began:.0f} s")
    print("accelerate has no KV cache, activation or LoRA estimate; its 'Training using Adam' (full fine-tuning, "
          "fp32) is " + ", ".join(f"{n} {max(theirs[n]['float32']['training_adam'].values()) / MIB:.0f} MiB"
                                 for n in theirs))
    layouts = ", ".join(f"{n}: {r.layout.source} layout, {r.layout.parameter_count:,} parameters"
                        for n, r in ours.items())
    print(f"ours, from the hub metadata (no weights downloaded): {layouts}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
