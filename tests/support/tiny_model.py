"""A tiny random Llama model and a real trained tokenizer, saved as safetensors in seconds.

Most tests need *a* model with the real file layout, loading path and generate loop, not a
good one; this gives them that without the internet or a GPU. `build_tiny_model(path)` builds
one (deterministic: same seed -> byte-identical files); the `tiny_model_dir` fixture in
conftest.py builds one per session.
"""

from __future__ import annotations

from pathlib import Path

BOS = "<s>"
EOS = "<|im_end|>"  # ChatML: generation of an answer ends at <|im_end|>, as in SmolLM2-Instruct
PAD = "<pad>"
IM_START = "<|im_start|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START]  # ids 0..3, fixed by their order here

# ChatML-like, as in SmolLM2-Instruct (the demo model), so prompt-formatting code meets the
# same structure on the tiny model and the real one.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Dates and digits are the demo task (ISO date rewriting); the rest gives BPE some words.
CORPUS = [
    "Rewrite the date as YYYY-MM-DD. Answer with the date only.",
    "March 3, 2021 is 2021-03-03.",
    "July 4, 1976 is 1976-07-04.",
    "December 25, 2019 is 2019-12-25.",
    "January 1, 2000 is 2000-01-01.",
    "5 November 2023 is 2023-11-05.",
    "14 February 2022 is 2022-02-14.",
    "Oct 31, 2018 is 2018-10-31.",
    "Sept 9, 2009 is 2009-09-09.",
    "the 2nd of August 2015 is 2015-08-02.",
    "June 21st, 2024 is 2024-06-21.",
    "30 May 1990 is 1990-05-30.",
    "03/15/2022 in the US format is 2022-03-15.",
    "15/03/2022 in the UK format is 2022-03-15.",
    "February 29, 2024 was a leap day.",
    "April 1, 2010 and September 9, 1999 are dates.",
    "The numbers 0 1 2 3 4 5 6 7 8 9 10 11 12 30 31 100 1000 are digits.",
    "What is the capital of Japan? The capital of Japan is Tokyo.",
    "What is the capital of France? The capital of France is Paris.",
    "What is 2 + 2? The answer is 4.",
    "How many days are in a week? There are 7 days in a week.",
    "A spider has 8 legs and an insect has 6 legs.",
    "The quick brown fox jumps over the lazy dog.",
    "You are a helpful assistant. Answer the question.",
    "The user asks a question and the assistant answers it.",
    "Hello, how are you today? I am fine, thank you.",
    "Plants take in carbon dioxide from the air.",
    "The sky is blue on a clear day and the grass is green.",
    "Shakespeare wrote Romeo and Juliet.",
    "Jupiter is the largest planet in our solar system.",
    "The chemical symbol for gold is Au.",
    "Egypt is in Africa and Japan is in Asia.",
    "Checksums, weights, tokens and models.",
]

VOCAB_SIZE = 1024  # a target: a corpus this small may stop short of it

CONFIG_DEFAULTS = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=512,
    tie_word_embeddings=False,
    rms_norm_eps=1e-6,
    initializer_range=0.02,
)


def build_tokenizer():
    """A byte-level BPE tokenizer trained on CORPUS, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Digits one by one (as Llama and SmolLM2 do), so "2021" is four tokens whatever the corpus.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        # Byte-level: every byte is in the vocabulary, so no text is ever unknown.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        model_max_length=CONFIG_DEFAULTS["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(path: str | Path, seed: int = 0, **config_overrides) -> Path:
    """Build and save a random tiny Llama + tokenizer into `path`; return the path.

    `config_overrides` go to LlamaConfig (e.g. num_hidden_layers=3, tie_word_embeddings=True).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids([BOS, EOS, PAD])
    settings = dict(CONFIG_DEFAULTS, vocab_size=len(tokenizer), bos_token_id=ids[0], eos_token_id=ids[1],
                    pad_token_id=ids[2])
    settings.update(config_overrides)
    config = LlamaConfig(**settings)
    # fork_rng: seed this build without moving the global RNG other tests may rely on.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id, do_sample=False)
    # transformers 5 always writes safetensors (the safe_serialization switch is gone).
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
