"""The tiny model fixture: loads offline with plain transformers, renders chat, generates, fast."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from tiny_model import CHAT_TEMPLATE, EOS, build_tiny_model


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_loads_offline_renders_chat_and_generates(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == len(tokenizer)
    params = sum(p.numel() for p in model.parameters())
    assert 100_000 < params < 1_000_000, params
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", EOS, "<pad>")
    assert tokenizer.chat_template == CHAT_TEMPLATE

    messages = [{"role": "user", "content": "Rewrite the date as YYYY-MM-DD.\nMarch 3, 2021"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nRewrite the date as YYYY-MM-DD.\nMarch 3, 2021<|im_end|>\n<|im_start|>assistant\n"
    without = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert without == text.removesuffix("<|im_start|>assistant\n")
    # Special tokens are single tokens; digits split one by one; bytes round-trip.
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.decode(ids) == text
    assert tokenizer.tokenize("2021")[-4:] == ["2", "0", "2", "1"]
    assert tokenizer.decode(tokenizer("Grüße, 東京 ✓")["input_ids"]) == "Grüße, 東京 ✓"

    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        first = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        second = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert first.shape[1] > inputs["input_ids"].shape[1]
    assert torch.equal(first, second)  # greedy is deterministic


def test_files_are_safetensors_only(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert "model.safetensors" in names
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], names


def test_build_is_fast_and_deterministic(tmp_path):
    import torch

    build_tiny_model(tmp_path / "warm-up")  # imports torch/transformers; not part of the build time
    rng_before = torch.random.get_rng_state()
    began = time.perf_counter()
    build_tiny_model(tmp_path / "a", seed=0)
    seconds = time.perf_counter() - began
    print(f"\ntiny model build: {seconds:.2f} s (imports excluded)")
    assert seconds < 10
    assert torch.equal(torch.random.get_rng_state(), rng_before), "building must not move the global RNG"

    build_tiny_model(tmp_path / "b", seed=0)
    build_tiny_model(tmp_path / "c", seed=1)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    differ = {k for k, v in _digests(tmp_path / "c").items() if _digests(tmp_path / "a")[k] != v}
    assert differ == {"model.safetensors"}


def test_config_overrides(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    path = build_tiny_model(tmp_path / "tied", num_hidden_layers=3, tie_word_embeddings=True)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    assert (config.num_hidden_layers, config.tie_word_embeddings, config.hidden_size) == (3, True, 64)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
