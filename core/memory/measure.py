"""Load a model at a precision and measure its memory; optionally one LoRA training step.

What is measured (see `measure`):

- footprint: every parameter and buffer as stored, plus bitsandbytes' quantization state that
  lives outside parameters (LLM.int8's per-row `SCB` scales; 4-bit `quant_state`: absmax, code,
  offset, and the nested state of double quantization), each storage counted once (tied
  embeddings share one). transformers' `get_memory_footprint()` misses the bnb state.
- CUDA: `torch.cuda.max_memory_allocated` / `max_memory_reserved` over the load (and the step).
- CPU: the process RSS delta from just before the load to after it. Before that baseline is
  taken, torch, transformers, peft and bitsandbytes are imported and the runtime is warmed:
  the same work (load at the precision, a prefill, a LoRA step, at the same token shapes) runs
  on a throwaway copy of the model with one layer and a small vocabulary (`warm_runtime`), so
  what the runtime allocates on first use and keeps (kernels, thread state, arenas: 20-45 MiB,
  by machine) is in the baseline, not charged to the model; the warmed RSS itself is reported
  as the runtime, beside the estimator's runtime overhead. safetensors are memory-mapped, and a tensor whose
  dtype matches the file stays a view of the mapping (file-backed pages, resident only once
  touched, and the whole file's touched pages stay mapped while any view lives). To count each
  live byte once and nothing else, every non-quantized tensor is copied to anonymous memory
  ("materialized") before measuring; freed heap is returned with malloc_trim(0).
- training step (optional): peft LoRA on the loaded model, AdamW on the adapter, one warm-up
  step on a tiny batch (allocates the optimizer states, initializes kernels), then the RSS
  high-water mark is reset (`/proc/self/clear_refs` 5) and one forward + backward + optimizer
  step runs on `batch x seq` random tokens; its peak is the VmHWM read afterwards (a 1 ms RSS
  sampler thread where the high-water mark cannot be reset: see PeakWatch). The peak
  is reported relative to the warmed RSS before the load, so it holds weights + adapter +
  optimizer + activations + transients + what loading and training add besides tensors, like
  the estimator's training total without the runtime overhead. A 4-bit base is prepared as
  the trainer prepares QLoRA (peft's prepare_model_for_kbit_training).

Each measurement should run in a fresh process (`measure_in_subprocess`, or a job): allocator
state left by an earlier model skews RSS. Everything torch-related is imported inside functions.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from weightgate.core.memory.loading import default_device, load_model
from weightgate.core.memory.process_memory import PeakWatch, rss_bytes, settle, steady_allocator

DEFAULT_TRAIN_BATCH = 1
DEFAULT_TRAIN_SEQ = 128


# --- process memory (Linux /proc; psutil elsewhere) -------------------------------------------


# --- what a loaded model holds ----------------------------------------------------------------

def _quant_state_tensors(param: Any) -> list:
    """bitsandbytes' tensors that hang off a parameter rather than being one."""
    import torch  # lazy: torch only where it runs, never at import

    found = []
    scb = getattr(param, "SCB", None)
    if torch.is_tensor(scb):
        found.append(scb)
    state = getattr(param, "quant_state", None)
    while state is not None:
        for value in vars(state).values():
            if torch.is_tensor(value):
                found.append(value)
        state = getattr(state, "state2", None)
    return found


def _storage_key(tensor: Any) -> tuple:
    storage = tensor.untyped_storage()
    return (tensor.device.type, tensor.device.index, storage.data_ptr())


def stored_bytes(model: Any) -> dict:
    """Bytes of parameters, buffers and bnb quantization state, each storage counted once."""
    seen: set = set()
    totals = {"parameters": 0, "buffers": 0, "quant_state": 0}

    def add(kind: str, tensor: Any) -> None:
        key = _storage_key(tensor)
        if key in seen:
            return
        seen.add(key)
        totals[kind] += int(tensor.untyped_storage().nbytes())

    for param in model.parameters():
        add("parameters", param)
        for extra in _quant_state_tensors(param):
            add("quant_state", extra)
    for buffer in model.buffers():
        add("buffers", buffer)
    totals["total"] = totals["parameters"] + totals["buffers"] + totals["quant_state"]
    return totals


def _is_quantized(param: Any) -> bool:
    return type(param).__name__ in ("Int8Params", "Params4bit")


def materialize(model: Any) -> int:
    """Copy every non-quantized parameter and buffer into fresh (anonymous) memory, dropping the
    views of the memory-mapped safetensors file. Returns the bytes copied."""
    import torch  # lazy: torch only where it runs, never at import

    copied = 0
    with torch.no_grad():
        for param in model.parameters():
            if not _is_quantized(param):
                param.data = param.data.clone()
                copied += param.numel() * param.element_size()
        for module in model.modules():
            for name, buffer in list(module._buffers.items()):
                if buffer is not None:
                    module._buffers[name] = buffer.clone()
    return copied


# --- measurement -----------------------------------------------------------------------------

def _import_stack() -> None:
    """Import what loading and training import, so the baseline RSS already holds the runtime."""

    for name in ("peft", "bitsandbytes"):
        try:
            __import__(name)
        except ImportError:
            pass


def _cuda_stats(torch: Any, device: str) -> dict:
    if not device.startswith("cuda"):
        return {}
    torch.cuda.synchronize()
    return {"cuda_max_allocated": int(torch.cuda.max_memory_allocated()),
            "cuda_max_reserved": int(torch.cuda.max_memory_reserved()),
            "cuda_allocated": int(torch.cuda.memory_allocated())}


def measure(model_dir: str | Path, precision: str, *, device: str | None = None, train: dict | None = None,
            infer: dict | None = None, allocator: str = "steady", warmup: bool = True, log=None) -> dict:
    """Load `model_dir` at `precision` in this process and measure it (see the module doc).

    train: None, or {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "targets": [...],
    "batch": 1, "seq": 128, "gradient_checkpointing": false} to measure one training step too.
    infer: None, or {"batch": 1, "seq": 512} to measure one prefill (KV cache + activations).
    allocator: "steady" (fixed glibc mmap threshold, see steady_allocator) or "default".
    warmup: on the CPU, first run the same work on a throwaway shrunk copy of the model (see
    warm_runtime), so the baseline holds what the runtime allocates on first use.
    """
    steady = steady_allocator() if allocator == "steady" else False
    _import_stack()
    import torch  # lazy: torch only where it runs, never at import


    device = device or default_device()
    say = log or (lambda message: None)
    settle()
    rss_imported = rss_bytes()
    warm = None
    if warmup and not device.startswith("cuda"):
        warm = warm_runtime(model_dir, precision, device=device, train=train, infer=infer)
        say(f"runtime warmed on a throwaway {warm['model']} copy: +{warm['rss_delta']:,} B on first use")
    settle()
    rss_runtime = rss_bytes()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    loaded = load_model(model_dir, precision, device=device)
    model = loaded.model
    if not device.startswith("cuda"):
        materialize(model)
    settle()
    result: dict[str, Any] = {
        "model_dir": str(model_dir), "precision": loaded.precision["name"], "precision_spec": loaded.precision,
        "device": device, "allocator": "steady" if steady else "default", "load_seconds": round(time.perf_counter() - began, 3),
        "footprint": stored_bytes(model), "hf_memory_footprint": int(model.get_memory_footprint()),
        "rss_imported": rss_imported, "rss_runtime": rss_runtime, "warmup": warm, "rss_after_load": rss_bytes(),
    }
    result["rss_load_delta"] = result["rss_after_load"] - rss_runtime
    result.update(_cuda_stats(torch, device))
    say(f"loaded at {result['precision']}: footprint {result['footprint']['total']:,} B, "
        f"RSS +{result['rss_load_delta']:,} B")
    if infer:
        result["infer"] = measure_prefill(model, infer, device=device, rss_runtime=rss_runtime)
        say(f"prefill peak: +{result['infer']['step_delta']:,} B over the loaded model")
    if train:
        result["train"] = measure_training_step(model, loaded.tokenizer, train, device=device,
                                                rss_runtime=rss_runtime, precision=result["precision"])
        say(f"training step peak: +{result['train']['peak_delta']:,} B over the runtime")
    return result


# The throwaway copy: the model's own config (same architecture and widths, so the same
# modeling code, kernels, bitsandbytes paths and matrix shapes) with one layer of each attention
# type and a small vocabulary, and the model's own tokenizer files. It runs the same token shapes
# (batch x seq) as the measurement: first-use state depends on them (measured: warming the tiny
# model's runtime at 1 x 16 tokens left 5 MiB of it to a 4 x 256 step, at 4 x 256 none).
WARMUP_VOCAB = 256
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack")


def throwaway_copy(model_dir: str | Path, dest: Path) -> Path:
    """A small random model of `model_dir`'s architecture in `dest`: its config with one layer of
    each attention type and a WARMUP_VOCAB vocabulary (token ids below it); its tokenizer files."""

    import torch  # lazy: torch only where it runs, never at import
    from transformers import AutoConfig, AutoModelForCausalLM  # lazy: transformers only where it runs, never at import

    model_dir = Path(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    text.vocab_size = WARMUP_VOCAB
    types = getattr(text, "layer_types", None)
    if isinstance(types, (list, tuple)) and types:
        text.layer_types = list(dict.fromkeys(types))
        text.num_hidden_layers = len(text.layer_types)
    else:
        text.num_hidden_layers = 1
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        if getattr(text, key, None) is not None:
            setattr(text, key, {"bos_token_id": 1, "eos_token_id": 2}.get(key, 0))
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or torch.float32
    dtype = getattr(torch, str(dtype).replace("torch.", ""), torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).to(dtype)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    for path in model_dir.iterdir():
        if (path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES)
                and path.name not in ("config.json", "generation_config.json") and not path.name.endswith(".index.json")):
            shutil.copy2(path, dest / path.name)
    return dest


def warm_runtime(model_dir: str | Path, precision: str, *, device: str, train: dict | None = None,
                 infer: dict | None = None) -> dict:
    """Load a throwaway copy (throwaway_copy) at `precision` and run what will be measured on it
    (a short prefill, a short LoRA step with the same settings), then free it all.

    Why: on the CPU a process allocates state on first use that stays for its lifetime and is
    not the model's: oneDNN / bitsandbytes kernels and their caches, OpenMP and autograd thread
    state and their malloc arenas, lazily imported modules, the tokenizer library's thread pool.
    It is 20-45 MiB here (more for bf16, whose CPU kernels are separate) and differs by machine;
    it is all of a tiny model's measured step and would be charged to whichever model comes
    first. It is real memory a user sees, so the estimator counts it, as part of the runtime
    overhead (core.memory.estimate.overhead: "runtime"); measured here, it becomes part of the baseline,
    so that a measured figure over that baseline is the model's own memory, and the estimate
    less its runtime overhead can be held to it tightly. Falls back to the model itself when a
    copy cannot be built (an architecture whose config does not shrink)."""


    before = rss_bytes()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wg-warmup-") as tmp:
        try:
            source, kind = throwaway_copy(model_dir, Path(tmp) / "copy"), "shrunk"
        except Exception:   # noqa: BLE001 - any architecture we cannot shrink: warm on the model itself
            source, kind = Path(model_dir), "full"
        loaded = load_model(source, precision, device=device)
        materialize(loaded.model)
        if infer:
            measure_prefill(loaded.model, infer, device=device, rss_runtime=before)
        if train:
            measure_training_step(loaded.model, loaded.tokenizer, train, device=device, rss_runtime=before,
                                  precision=loaded.precision["name"])
        del loaded
    settle()
    return {"model": kind, "rss_delta": rss_bytes() - before, "seconds": round(time.perf_counter() - began, 3)}


def measure_prefill(model: Any, infer: dict, *, device: str, rss_runtime: int) -> dict:
    """One prefill as generate() runs it: KV cache on, logits of the last position only."""
    import torch  # lazy: torch only where it runs, never at import

    batch, seq = int(infer.get("batch", 1)), int(infer.get("seq", 512))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, int(model.config.vocab_size), (batch, seq), generator=generator).to(device)
    with torch.inference_mode():
        model(input_ids=ids[:, :8], use_cache=True, logits_to_keep=1)    # warm-up
    settle()
    cuda = device.startswith("cuda")
    rss_before = rss_bytes()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = int(torch.cuda.memory_allocated())
    began = time.perf_counter()
    with PeakWatch() as watch, torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    seconds = time.perf_counter() - began
    peak = watch.peak
    del out
    settle()
    result: dict[str, Any] = {"batch": batch, "seq": seq, "seconds": round(seconds, 3), "rss_before": rss_before,
                              "peak_method": watch.method}
    if peak is not None:
        result.update(peak_rss=peak, peak_delta=peak - rss_runtime, step_delta=peak - rss_before)
    if cuda:
        stats = _cuda_stats(torch, device)
        result.update(stats, peak_delta=stats["cuda_max_allocated"],
                      step_delta=stats["cuda_max_allocated"] - cuda_before)
    return result


def lora_config(train: dict, model: Any):
    from peft import LoraConfig  # lazy: peft only where it runs, never at import

    r = int(train.get("r", 16))
    targets = train.get("targets") or "all-linear"
    return LoraConfig(r=r, lora_alpha=int(train.get("alpha", 2 * r)), lora_dropout=float(train.get("dropout", 0.05)),
                      target_modules=targets, task_type="CAUSAL_LM")


def measure_training_step(model: Any, tokenizer: Any, train: dict, *, device: str, rss_runtime: int,
                          precision: str = "") -> dict:
    """One steady-state LoRA step (after a warm-up step); its peak memory. See the module doc.
    A 4-bit base is prepared as the trainer prepares QLoRA (core.training.model.add_lora:
    peft's prepare_model_for_kbit_training, which upcasts 16-bit non-quantized tensors)."""
    import torch  # lazy: torch only where it runs, never at import
    from peft import get_peft_model, prepare_model_for_kbit_training  # lazy: peft only where it runs, never at import

    batch, seq = int(train.get("batch", DEFAULT_TRAIN_BATCH)), int(train.get("seq", DEFAULT_TRAIN_SEQ))
    checkpointing = bool(train.get("gradient_checkpointing", False))
    kwargs = {"use_reentrant": False}
    if precision in ("nf4", "fp4"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                                gradient_checkpointing_kwargs=kwargs)
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False
    peft_model = get_peft_model(model, lora_config(train, model))
    peft_model.train()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-4)
    vocab = int(model.config.vocab_size)
    generator = torch.Generator().manual_seed(0)

    def step(b: int, s: int) -> float:
        ids = torch.randint(0, vocab, (b, s), generator=generator).to(device)
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    step(1, 8)                       # warm-up: optimizer states exist, kernels initialized
    settle()
    rss_before = rss_bytes()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = int(torch.cuda.memory_allocated())
    began = time.perf_counter()
    with PeakWatch() as watch:
        loss = step(batch, seq)
    seconds = time.perf_counter() - began
    peak = watch.peak
    method = train.get("method") or ("qlora" if precision in ("nf4", "fp4") else "lora")
    out = {"method": method, "batch": batch, "seq": seq, "gradient_checkpointing": checkpointing,
           "peak_method": watch.method, "r": int(train.get("r", 16)), "targets": train.get("targets") or "all-linear",
           "dropout": float(train.get("dropout", 0.05)),
           "trainable_parameters": sum(p.numel() for p in trainable), "loss": round(loss, 4),
           "seconds": round(seconds, 3), "rss_before_step": rss_before}
    if peak is not None:
        out["peak_rss"] = peak
        out["peak_delta"] = peak - rss_runtime           # weights + training state + activations
        out["step_delta"] = peak - rss_before            # what the step itself added at its peak
    if cuda:
        stats = _cuda_stats(torch, device)
        out.update(stats)
        out["peak_delta"] = stats["cuda_max_allocated"]
        out["step_delta"] = stats["cuda_max_allocated"] - cuda_before
    return out


# --- estimate versus measurement (torch-free) -------------------------------------------------


# --- a fresh process per measurement ----------------------------------------------------------

def measure_in_subprocess(model_dir: str | Path, precision: str, *, device: str = "cpu", train: dict | None = None,
                          infer: dict | None = None, allocator: str = "steady", timeout: float = 900.0) -> dict:
    """`measure` in a fresh Python process (clean allocator state); its JSON result."""
    return measure_plan_in_subprocess([{"model_dir": str(model_dir), "precision": precision, "device": device,
                                        "train": train, "infer": infer}], allocator=allocator, timeout=timeout)[0]


def measure_plan_in_subprocess(plan: list[dict], *, allocator: str = "steady", timeout: float = 900.0) -> list[dict]:
    """Several measurements one after the other in ONE fresh process (the runtime is imported
    once; each measurement warms the runtime and takes its own baseline after the previous model
    is gone). Items: {"model_dir", "precision", "device", "train", "infer", "warmup"}."""
    command = [sys.executable, "-m", "weightgate.core.memory.measure", "--plan", json.dumps(plan), "--allocator", allocator]
    # cwd: a directory with nothing importable in it (`-m` puts cwd first on sys.path).
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"memory measurement failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weightgate.core.memory.measure",
                                     description="Load a model at a precision and measure its memory (JSON).")
    parser.add_argument("model_dir", nargs="?")
    parser.add_argument("precision", nargs="?")
    parser.add_argument("--device", default=None)
    parser.add_argument("--train", default=None, help='JSON, e.g. {"batch": 1, "seq": 128}')
    parser.add_argument("--infer", default=None, help='JSON, e.g. {"batch": 1, "seq": 512}')
    parser.add_argument("--plan", default=None, help="JSON list of {model_dir, precision, device, train, infer, "
                                                     "warmup}: "
                                                     "measured in order; prints a JSON list")
    parser.add_argument("--allocator", choices=("steady", "default"), default="steady")
    parser.add_argument("--no-warmup", action="store_true", help="do not warm the runtime on a throwaway copy first")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    if args.plan:
        results = []
        for item in json.loads(args.plan):
            results.append(measure(item["model_dir"], item["precision"], device=item.get("device"),
                                   train=item.get("train"), infer=item.get("infer"), allocator=args.allocator,
                                   warmup=item.get("warmup", True)))
            gc.collect()
        sys.stdout.write(json.dumps(results) + "\n")
        return 0
    if not (args.model_dir and args.precision):
        parser.error("give MODEL_DIR PRECISION, or --plan")
    result = measure(args.model_dir, args.precision, device=args.device,
                     train=json.loads(args.train) if args.train else None,
                     infer=json.loads(args.infer) if args.infer else None, allocator=args.allocator,
                     warmup=not args.no_warmup)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
