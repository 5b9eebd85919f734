"""Benchmark: a `transformers serve` endpoint vs weightgate's in-process batched generate, on the
same model files, in the same run.

    .venv/bin/python tests/bench/serve_latency.py                  # demo model, concurrency 1/4/8
    .venv/bin/python tests/bench/serve_latency.py --model tiny --max-new-tokens 16

What is compared, at each level N of 1, 4, 8:
    endpoint     N concurrent streamed chat completions (core.release.endpoint.measure_concurrency:
                 the client `weightgate release latency --url` uses), 2N requests or 8 at least
    in-process   the same prompts, N at a time in one batched generate call
                 (core.evaluation.generation.generate_batch: what eval runs and ship's latency use)
Printed: aggregate tokens/s of both (all output tokens / wall time) and their ratio (endpoint /
in-process), and the endpoint's TTFT p50 / p95. The server and the in-process model run one after
the other on the same cores: the idle server takes no CPU while the in-process side runs.

The model: the demo model (SmolLM2-135M-Instruct as safetensors, core.demo.model.ensure_demo_model,
fetched and converted once into ~/.cache/weightgate), or `--model tiny` (a random tiny Llama, built
in seconds: it measures the overheads, not a real model). The endpoint serves the model directory,
as `weightgate release serve` serves a shipped base or merged version (same command builder).
Measured on this 2-core machine (2026-12-07, demo model, 24 new tokens), endpoint / in-process
tokens/s at concurrency 1 / 4 / 8: 0.80 / 0.42 / 0.35 (TTFT p50 218 / 3021 / 5879 ms) as
`release serve` runs by default, where the server generates request by request; with
`--server-arg=--continuous-batching` (`release serve --continuous-batching`): 0.95 / 0.71 / 0.71
(TTFT p50 249 / 651 / 1554 ms). `--model tiny --max-new-tokens 16` measures overheads only.
Not a pytest test: it takes minutes and wants a quiet machine.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from weightgate.core.demo.evalsets import DATE_CASES, INSTRUCTION  # noqa: E402
from weightgate.core.evaluation.generation import (  # noqa: E402
    build_messages,
    generate_batch,
    generation_settings,
    render,
)
from weightgate.core.registry.serving import transformers_serve_options  # noqa: E402
from weightgate.core.release.endpoint import measure_concurrency  # noqa: E402
from weightgate.core.release.serve import free_port, stop_server, url_for, wait_ready  # noqa: E402

LEVELS = (1, 4, 8)


def model_dir(kind: str, scratch: Path) -> Path:
    if kind == "tiny":
        from tiny_model import build_tiny_model

        return build_tiny_model(scratch / "tiny")
    from weightgate.core.demo.model import ensure_demo_model

    return Path(ensure_demo_model().path)


def in_process(directory: Path, conversations: list, max_new_tokens: int, levels) -> dict:
    """Aggregate tokens/s of batched generate at each level, after a warm-up (as the endpoint gets)."""
    from weightgate.core.memory.loading import load_model

    loaded = load_model(directory, "fp32", device="cpu")
    prompts = [render(loaded.tokenizer, messages) for messages in conversations]
    settings = generation_settings(directory, max_new_tokens=max_new_tokens)
    generate_batch(loaded, prompts[:max(levels)], dict(settings, max_new_tokens=4))
    out = {}
    for level in levels:
        count = max(8, 2 * level)
        tokens, wall = 0, 0.0
        for start in range(0, count, level):
            batch = [prompts[(start + i) % len(prompts)] for i in range(level)]
            began = time.perf_counter()
            tokens += sum(r.tokens_out for r in generate_batch(loaded, batch, settings))
            wall += time.perf_counter() - began
        out[level] = tokens / wall if wall else 0.0
    return out


def endpoint_side(directory: Path, conversations: list, max_new_tokens: int, levels, log: Path,
                  server_args: tuple[str, ...] = ()) -> list[dict]:
    manifest = {"release": {"name": "bench", "relation": "base"}, "precision": {"name": "fp32", "dtype": "float32"},
                "base": {}, "serving": {}}
    port = free_port()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve",
               *transformers_serve_options(manifest, directory, port=port), "--log-level", "warning", *server_args]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = url_for("127.0.0.1", port)
    try:
        startup = wait_ready(server, url, str(directory), 300, log)
        print(f"transformers serve ready at {url} in {startup:.1f} s")
        return measure_concurrency(url, str(directory), conversations, max_new_tokens, levels)
    finally:
        stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("demo", "tiny"), default="demo")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--server-arg", action="append", default=[],
                        help="one more `transformers serve` argument, e.g. --server-arg=--continuous-batching")
    args = parser.parse_args(argv)
    # A SIGTERM (timeout, Ctrl-C from a wrapper) unwinds through `finally`, which stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    conversations = [build_messages(INSTRUCTION + written) for _, written, _, _ in DATE_CASES]
    with tempfile.TemporaryDirectory(prefix="wg-serve-bench-") as scratch:
        directory = model_dir(args.model, Path(scratch))
        rows = endpoint_side(directory, conversations, args.max_new_tokens, LEVELS, Path(scratch) / "server.log",
                             tuple(args.server_arg))
        local = in_process(directory, conversations, args.max_new_tokens, LEVELS)
    print(f"\n{args.model} model, {args.max_new_tokens} new tokens, greedy; tokens/s = all output tokens / wall time")
    print(f"{'concurrency':>11} {'endpoint tok/s':>15} {'in-process tok/s':>17} {'ratio':>6} {'TTFT p50/p95 ms':>16}")
    for row in rows:
        level = row["concurrency"]
        ratio = row["throughput_tokens_per_s"] / local[level] if local[level] else float("nan")
        print(f"{level:>11} {row['throughput_tokens_per_s']:>15.1f} {local[level]:>17.1f} {ratio:>6.2f} "
              f"{row['ttft_ms']['p50']:>8.0f}/{row['ttft_ms']['p95']:<7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
