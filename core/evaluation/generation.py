"""Greedy generation in batches with a model's own chat template: messages from an eval case,
the prompt rendered as the model was trained to read it, the generation settings (the model's
generation_config.json under the set's overrides), and batched decoding that stops each row at
its own end, with time to first token and tokens/s per batch.

Batched outputs must equal one-by-one outputs, or a batch size would change the eval score:
- prompts are padded on the LEFT, so every sequence's last prompt token sits at the end and the
  first generated token follows the real prompt, not padding;
- the attention mask hides the padding, and transformers derives position ids from that mask
  (cumsum - 1), so a padded prompt sees the same positions (0, 1, ...) as when it runs alone;
- output tokens are counted up to and including the first EOS: padding, and whatever a finished
  sequence "generates" while the rest of its batch goes on, are not output.
"""

from __future__ import annotations

import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from weightgate.core.engine.environment import versions
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.timers import GENERATING, timed
from weightgate.core.memory.loading import CALLS, LoadedModel, flushed_subnormals, read_json

# Keys of generation_config.json that say nothing about the output.
NOT_GENERATION = {"transformers_version", "_from_model_config", "_commit_hash"}


DEFAULT_MAX_NEW_TOKENS = 64


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


@timed(GENERATING)
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
