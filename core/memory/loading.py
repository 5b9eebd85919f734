"""Load a model at a precision (optionally with a LoRA adapter) and generate greedily in batches.

Batched outputs must equal one-by-one outputs, or a batch size would change the eval score:
- prompts are padded on the LEFT, so every sequence's last prompt token sits at the end and the
  first generated token follows the real prompt, not padding;
- the attention mask hides the padding, and transformers derives position ids from that mask
  (cumsum - 1), so a padded prompt sees the same positions (0, 1, ...) as when it runs alone;
- output tokens are counted up to and including the first EOS: padding, and whatever a finished
  sequence "generates" while the rest of its batch goes on, are not output.

torch / transformers / peft / bitsandbytes are imported inside functions only: the helpers that
describe a precision or read a model's generation defaults are used torch-free by the run
identity (core.evaluation.runner) and the status checks.
"""

from __future__ import annotations

import ctypes
import json
import platform
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from weightgate.core.engine.environment import versions
from weightgate.core.engine.errors import InputError

# Counts model.generate calls in this process: tests prove that re-scoring generates nothing.
CALLS = {"generate": 0, "load": 0}

CANONICAL = ("fp32", "bf16", "fp16", "int8", "nf4", "fp4")
ALIASES = {
    "float32": "fp32", "full": "fp32", "f32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16", "half": "fp16", "f16": "fp16",
    "8bit": "int8", "8-bit": "int8", "llm.int8": "int8", "int8 (llm.int8)": "int8", "q8": "int8",
    "4bit": "nf4", "4-bit": "nf4", "nf4-dq": "nf4", "q4": "nf4",
}
DTYPE_OF = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
PRECISION_OF_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
# Keys of generation_config.json that say nothing about the output.
NOT_GENERATION = {"transformers_version", "_from_model_config", "_commit_hash"}
DEFAULT_MAX_NEW_TOKENS = 64


# --- precision (torch-free) ------------------------------------------------------------------


def precision_name(value: Any, model_dir: Path | None = None) -> str:
    """The canonical precision for `[decisions] precision`: a name ("bf16", "int8", "nf4",
    "native", aliases such as "bfloat16" or "4bit") or a table with a name/dtype key."""
    if isinstance(value, dict):
        value = value.get("name") or value.get("precision") or value.get("dtype")
    name = str(value or "native").strip().lower()
    name = ALIASES.get(name, name)
    if name in ("native", "auto", "default"):
        return native_precision(model_dir)
    if name not in CANONICAL:
        raise InputError(f"unknown precision {value!r}",
                         hint="[decisions] precision is one of: native, " + ", ".join(CANONICAL))
    return name


def native_precision(model_dir: Path | None) -> str:
    """The checkpoint's own dtype (config.json), fp32 when it does not say."""
    config = read_json(Path(model_dir) / "config.json") if model_dir else {}
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return PRECISION_OF_DTYPE.get(dtype, "fp32")


def precision_spec(value: Any, model_dir: Path | None = None, device: str = "cpu") -> dict:
    """Everything about a precision that changes outputs: the canonical name, the dtype of the
    modules that stay unquantized, and bitsandbytes' settings. On the CPU the unquantized parts
    and the 4-bit compute run in float32 (CPUs have no fast half precision)."""
    name = precision_name(value, model_dir)
    cuda = device.startswith("cuda")
    half = "bfloat16" if cuda else "float32"
    # On the CPU, subnormal floats flush to zero: activations of real models (the demo's) hit
    # subnormal products, which x86 computes 5-15x slower. It can change a last bit of a logit,
    # so it is part of the precision, and of the run identity.
    flush = not cuda
    if name in DTYPE_OF:
        return {"name": name, "dtype": DTYPE_OF[name], "quantization": None, "flush_denormal": flush}
    if name == "int8":
        return {"name": name, "dtype": "float16" if cuda else "float32", "flush_denormal": flush,
                "quantization": {"method": "bitsandbytes", "bits": 8, "threshold": 6.0}}
    return {"name": name, "dtype": half, "flush_denormal": flush,
            "quantization": {"method": "bitsandbytes", "bits": 4, "quant_type": name,
                             "double_quant": True, "compute_dtype": half}}


# --- model files (torch-free) -----------------------------------------------------------------


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def chat_template_text(model_dir: Path) -> str | None:
    """The tokenizer's chat template as saved (chat_template.jinja, or tokenizer_config.json)."""
    model_dir = Path(model_dir)
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = read_json(model_dir / "tokenizer_config.json").get("chat_template")
    if isinstance(template, list):   # named templates: the default one is what apply_chat_template uses
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    return template if isinstance(template, str) else None


def model_generation_defaults(model_dir: Path) -> dict:
    """generation_config.json without bookkeeping keys: the model's own defaults."""
    data = read_json(Path(model_dir) / "generation_config.json")
    return {key: value for key, value in data.items() if key not in NOT_GENERATION}


def generation_settings(model_dir: Path, *, max_new_tokens: int | None = None,
                        overrides: dict | None = None) -> dict:
    """The generation config a run uses: the model's generation_config.json defaults, then greedy
    decoding (temperature 0) and the token limit, then explicit overrides (e.g. the sampling a
    determinism test injects). This exact dict builds the GenerationConfig, so what the run
    identity records is what generate() got."""
    settings = model_generation_defaults(model_dir)
    config = read_json(Path(model_dir) / "config.json")
    for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
        if settings.get(key) is None and config.get(key) is not None:
            settings[key] = config[key]
    settings.update({"do_sample": False, "num_beams": 1,
                     "max_new_tokens": int(max_new_tokens or DEFAULT_MAX_NEW_TOKENS)})
    settings.update(overrides or {})
    if not settings.get("do_sample"):
        # Greedy ignores these; transformers warns about them. Recorded as the model's defaults.
        for key in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
            settings.pop(key, None)
    return settings


# --- prompts ----------------------------------------------------------------------------------


def build_messages(case_input: str | list[dict], system: str | None = None,
                   few_shot: list[dict] | None = None) -> list[dict]:
    """Chat messages for one case: the set's system prompt, its few-shot turns, then the case.
    A case that brings its own system message replaces the set's (templates take one)."""
    own = case_input if isinstance(case_input, list) else [{"role": "user", "content": case_input}]
    messages = []
    if system and not any(m.get("role") == "system" for m in own):
        messages.append({"role": "system", "content": system})
    for shot in few_shot or []:
        messages.append({"role": "user", "content": shot["input"]})
        messages.append({"role": "assistant", "content": shot["output"]})
    messages.extend({"role": m["role"], "content": m["content"]} for m in own)
    return messages


def render_plain(messages: list[dict]) -> str:
    """For a tokenizer without a chat template (a base model): a simple transcript."""
    labels = {"system": "", "user": "User: ", "assistant": "Assistant: "}
    parts = [labels[m["role"]] + m["content"] for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


def render(tokenizer, messages: list[dict]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return render_plain(messages)


# --- loading ----------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    model_dir: Path
    precision: dict
    device: str
    adapter: Path | None = None
    footprint_bytes: int = 0
    load_seconds: float = 0.0

    @property
    def templated(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def default_device() -> str:
    import torch  # lazy: torch only where it runs, never at import

    return "cuda" if torch.cuda.is_available() else "cpu"


def bnb_config(quant: dict) -> Any:
    """transformers' BitsAndBytesConfig for a precision spec's `quantization` table: the one
    place the spec turns into bitsandbytes settings (eval, training, the shipped-version probe)."""
    import torch  # lazy: torch only where it runs, never at import
    from transformers import BitsAndBytesConfig  # lazy: transformers only where it runs, never at import

    if quant.get("bits") == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=quant.get("threshold", 6.0))
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant.get("quant_type", "nf4"),
                              bnb_4bit_use_double_quant=bool(quant.get("double_quant", True)),
                              bnb_4bit_compute_dtype=getattr(torch, quant.get("compute_dtype") or "float32"))


def load_model(model_dir: str | Path, precision: Any = "native", adapter: str | Path | None = None,
               device: str | None = None) -> LoadedModel:
    """The model at `precision` (fp32/bf16/fp16, or int8/nf4/fp4 through bitsandbytes, which
    runs on the CPU too), with a peft adapter on top when given, in eval mode; and its tokenizer
    set up for left padding. Safetensors only: remote code is never trusted here."""
    import torch  # lazy: torch only where it runs, never at import
    from transformers import (  # lazy: transformers only where it runs, never at import
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    began = time.perf_counter()
    model_dir = Path(model_dir)
    device = device or default_device()
    spec = precision_spec(precision, model_dir, device)
    if spec["flush_denormal"] and not subnormals_flush_everywhere(torch):
        # Not every thread can be switched: compute subnormals everywhere (slower, consistent).
        spec["flush_denormal"] = False
        warnings.warn("cannot flush subnormal floats in every CPU thread here; computing them (slower)")
    kwargs: dict[str, Any] = {"dtype": getattr(torch, spec["dtype"]), "use_safetensors": True,
                              "trust_remote_code": False}
    quant = spec["quantization"]
    if quant:
        kwargs["quantization_config"] = bnb_config(quant)
        kwargs["device_map"] = device
        # bitsandbytes says so on every 8-bit matmul; the cast is documented above.
        warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if not quant:
        model = model.to(device)
    footprint = int(model.get_memory_footprint())
    if adapter is not None:
        from peft import PeftModel  # lazy: peft only where it runs, never at import

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        footprint = sum(p.numel() * p.element_size() for p in model.parameters()) + \
            sum(b.numel() * b.element_size() for b in model.buffers())
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token   # a padded position is masked out anyway
    CALLS["load"] += 1
    return LoadedModel(model, tokenizer, model_dir, spec, device, Path(adapter) if adapter else None,
                       footprint, time.perf_counter() - began)


# --- subnormal floats -------------------------------------------------------------------------
# torch.set_flush_denormal sets the MXCSR of the calling thread only. OpenMP worker threads that
# already exist keep computing subnormals; then which thread computed a chunk of a tensor would
# decide its last bits, and chunking follows tensor sizes, i.e. the batch size. So the flag is
# set in every thread of torch's GNU OpenMP pool too, and only for the duration of a generate
# call (it is process-wide CPU state that other code in the process must not inherit).

_GOMP: dict = {}


def _gomp():
    """torch's libgomp and a callback per flag value, or None where that is not what runs."""
    if "lib" not in _GOMP:
        import torch  # lazy: torch only where it runs, never at import

        _GOMP["lib"] = None
        try:
            with open("/proc/self/maps", encoding="utf-8") as maps:
                libraries = sorted({line.split()[-1] for line in maps if "libgomp" in line})
            if libraries:
                lib = ctypes.CDLL(libraries[0])
                callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
                lib.GOMP_parallel.argtypes = [callback_type, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                lib.GOMP_parallel.restype = None
                _GOMP.update(lib=lib, on=callback_type(lambda _: torch.set_flush_denormal(True)),
                             off=callback_type(lambda _: torch.set_flush_denormal(False)))
        except (OSError, AttributeError):
            pass
    return _GOMP["lib"]


def _flush_everywhere(torch, on: bool) -> bool:
    torch.set_flush_denormal(on)
    lib = _gomp()
    if lib is None:
        return False
    lib.GOMP_parallel(_GOMP["on" if on else "off"], None, torch.get_num_threads(), 0)   # every pool thread
    return True


@contextmanager
def flushed_subnormals(torch, enabled: bool = True) -> Iterator[None]:
    if not enabled:
        yield
        return
    _flush_everywhere(torch, True)
    try:
        yield
    finally:
        _flush_everywhere(torch, False)


def subnormals_flush_everywhere(torch) -> bool:
    """Probe: inside flushed_subnormals, does every intra-op thread flush? (A subnormal product
    must come out zero in every chunk of a tensor split across all threads.)"""
    size = max(1 << 20, torch.get_num_threads() * (1 << 16))
    tiny = torch.full((size,), 1e-30, dtype=torch.float32)
    with flushed_subnormals(torch):
        flushed = not bool(((tiny * 1e-10) != 0).any())
    return flushed


# --- generation -------------------------------------------------------------------------------


@dataclass
class Generated:
    text: str
    token_ids: list[int]          # real output tokens: up to and including the first EOS
    tokens_in: int                # prompt tokens, padding excluded
    finished: bool                # an EOS ended it (False: it hit max_new_tokens)
    seconds: float                # from the start of its batch to its last real token
    ttft: float                   # from the start of its batch to its first token

    @property
    def tokens_out(self) -> int:
        return len(self.token_ids)


@dataclass
class BatchTiming:
    """Per-step timestamps of one generate call (see StepTimer)."""

    started: float
    steps: list[float] = field(default_factory=list)
    ended: float = 0.0


def _step_timer(timing: BatchTiming, device: str):
    """A logits processor that leaves the scores alone and stamps the time of every step: the
    first stamp is the time to first token (prefill done). A streamer would do on the CPU, but
    on CUDA transformers hands tokens to streamers one step late; here we synchronize instead."""
    import torch  # lazy: torch only where it runs, never at import
    from transformers import LogitsProcessor  # lazy: transformers only where it runs, never at import

    cuda = device.startswith("cuda")

    class StepTimer(LogitsProcessor):
        def __call__(self, input_ids, scores):
            if cuda:
                torch.cuda.synchronize()
            timing.steps.append(time.perf_counter())
            return scores

    return StepTimer()


def stop_ids(settings: dict, tokenizer) -> set[int]:
    eos = settings.get("eos_token_id")
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if not ids and tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def generate_batch(loaded: LoadedModel, prompts: list[str], settings: dict) -> list[Generated]:
    """One generate call over `prompts` (left-padded). `settings` from generation_settings()."""
    import torch  # lazy: torch only where it runs, never at import
    from transformers import (  # lazy: transformers only where it runs, never at import
        GenerationConfig,
        LogitsProcessorList,
    )

    tokenizer, model = loaded.tokenizer, loaded.model
    # The chat template writes its own special tokens (BOS, role markers): add none twice.
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not loaded.templated)
    input_ids = encoded["input_ids"].to(loaded.device)
    attention_mask = encoded["attention_mask"].to(loaded.device)
    config_values = {k: v for k, v in settings.items() if k != "seed"}
    if config_values.get("pad_token_id") is None:
        config_values["pad_token_id"] = tokenizer.pad_token_id
    config = GenerationConfig(**config_values)
    stops = stop_ids(settings, tokenizer)
    timing = BatchTiming(started=time.perf_counter())
    if settings.get("seed") is not None:
        torch.manual_seed(int(settings["seed"]))
    # Flushing subnormals is process-wide CPU state (MXCSR): set it in every thread for this call
    # only and put it back, so it cannot leak into whatever the process does next.
    with flushed_subnormals(torch, bool(loaded.precision.get("flush_denormal"))), torch.inference_mode(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                logits_processor=LogitsProcessorList([_step_timer(timing, loaded.device)]))
    CALLS["generate"] += 1
    timing.ended = time.perf_counter()
    new_tokens = output[:, input_ids.shape[1]:].tolist()
    prompt_lengths = attention_mask.sum(dim=1).tolist()
    results = []
    for row, tokens in enumerate(new_tokens):
        real = tokens
        finished = False
        for index, token in enumerate(tokens):
            if token in stops:
                real, finished = tokens[:index + 1], True
                break
        text = tokenizer.decode([t for t in real if t not in stops], skip_special_tokens=True)
        last = timing.steps[len(real) - 1] if real and len(real) <= len(timing.steps) else timing.ended
        first = timing.steps[0] if timing.steps else timing.ended
        results.append(Generated(text=text.strip(), token_ids=real, tokens_in=int(prompt_lengths[row]),
                                 finished=finished, seconds=last - timing.started, ttft=first - timing.started))
    return results


def generate_all(loaded: LoadedModel, prompts: list[str], settings: dict, batch_size: int, *,
                 on_batch: Callable[[list[int], list[Generated]], None] | None = None,
                 sort_by_length: bool = True) -> list[Generated]:
    """Every prompt, `batch_size` at a time; results in the order of `prompts`.

    sort_by_length: batch prompts of similar length together (less padding, less wasted work);
    the order is a pure function of the prompts, so the same set batches the same way each run.
    on_batch(indices, results) is called after each batch (progress, partial writes).
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    order = list(range(len(prompts)))
    if sort_by_length and batch_size > 1:
        lengths = [len(loaded.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        order.sort(key=lambda i: (-lengths[i], i))
    results: list[Generated | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = generate_batch(loaded, [prompts[i] for i in indices], settings)
        for index, result in zip(indices, batch):
            results[index] = result
        if on_batch is not None:
            on_batch(indices, batch)
    return [r for r in results if r is not None]


def environment(device: str) -> dict:
    """Package versions and the device, recorded beside (not inside) a run's identity."""
    label = device
    try:
        import torch  # lazy: torch only where it runs, never at import

        if device.startswith("cuda") and torch.cuda.is_available():
            label = f"{device} ({torch.cuda.get_device_name(0)})"
        else:
            label = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    except Exception:   # the label is informative only
        pass

    return {**versions(("torch", "transformers", "peft", "bitsandbytes")), "device": label}
