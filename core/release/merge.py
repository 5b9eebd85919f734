"""Merge a LoRA adapter into its base, and prove the merge changed no output.

Decision. Keep the adapter separate (swap adapters per tenant, small artefact) or merge it into
the base (one model, no adapter arithmetic per token). Merging is done at 16/32-bit only:
peft's merge_and_unload on an fp32 / bf16 / fp16 base. Merging into an 8-bit or 4-bit base is
REFUSED, not dequantized: the adapter was evaluated on the quantized base, and folding its delta
into re-quantized weights rounds it away (outputs change); the honest options are to ship the
adapter separately with the quantization config, or to set a 16-bit precision, evaluate again
and merge that.

Proof. The merged model is saved, loaded back from disk the way it ships, and its greedy outputs
on the task eval set are compared token by token with the adapter-on-base outputs, in the same
batches. Every case that differs is reported with both outputs and the first differing token.
The next-token logits after each prompt are compared too (relative to their scale, within a
per-precision tolerance): an argmax can survive a wrong merge, the logits cannot.

torch / transformers / peft are imported inside functions only.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.evaluation.generation import generate_all
from weightgate.core.memory.loading import load_model

MERGEABLE = ("fp32", "bf16", "fp16")
# Files a merged directory takes from the base unchanged: the tokenizer, and the generation
# defaults (save_pretrained may rewrite generation_config.json; the outputs depend on it).
CARRIED_FROM_BASE = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                     "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                     "generation_config.json")


def merge_refusal(precision_name: str) -> str | None:
    """Why a merge at this precision is refused, or None when it can be done."""
    if precision_name in MERGEABLE:
        return None
    return (f"the base runs at {precision_name} (bitsandbytes): merging would fold the LoRA delta into "
            "re-quantized weights and change outputs the adapter was evaluated with; ship the adapter "
            "separately (--no-merge, loaded with the same quantization), or set [decisions] precision to "
            "bf16/fp16/fp32, evaluate again and merge that")


@dataclass
class Mismatch:
    id: str
    adapter_output: str
    merged_output: str
    position: int                 # index of the first differing output token
    adapter_token: int | None     # None: that side ended there
    merged_token: int | None
    adapter_piece: str = ""
    merged_piece: str = ""

    def describe(self) -> str:
        return (f"{self.id}: token {self.position} is {self.adapter_piece!r} with the adapter, "
                f"{self.merged_piece!r} merged ({self.adapter_output!r} vs {self.merged_output!r})")


# Largest next-token logit difference (relative to the largest logit) a correct merge shows after
# the prompt. Measured on the tiny model: fp32 ~1e-6, bf16 ~1e-2; a delta scaled by 2 gives 0.2-0.4.
# Greedy tokens alone can miss a wrong merge when the argmax survives it; the logits do not.
LOGIT_TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 5e-2}


@dataclass
class MergeCheck:
    cases: int
    batch_size: int
    precision: str
    mismatches: list[Mismatch] = field(default_factory=list)
    logit_deviation: float | None = None    # max |merged - adapter| / max |adapter| after the prompts

    @property
    def tolerance(self) -> float:
        return LOGIT_TOLERANCE.get(self.precision, 5e-2)

    @property
    def logits_ok(self) -> bool:
        return self.logit_deviation is None or self.logit_deviation <= self.tolerance

    @property
    def ok(self) -> bool:
        return self.cases > 0 and not self.mismatches and self.logits_ok

    def summary(self) -> str:
        deviation = "" if self.logit_deviation is None else \
            f"; next-token logits within {self.logit_deviation:.1e} (tolerance {self.tolerance:.0e})"
        if self.ok:
            return f"merged greedy outputs equal the adapter's on all {self.cases} cases ({self.precision}){deviation}"
        if not self.mismatches:
            return (f"greedy outputs equal on {self.cases} cases, but the merged next-token logits differ by "
                    f"{self.logit_deviation:.2f} of their scale (tolerance {self.tolerance:.0e}): the merged "
                    "weights are not base + adapter")
        return (f"{len(self.mismatches)} of {self.cases} cases differ after the merge: "
                + "; ".join(m.describe() for m in self.mismatches[:3]) + deviation)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "cases": self.cases, "batch_size": self.batch_size, "precision": self.precision,
                "logit_deviation": self.logit_deviation, "tolerance": self.tolerance,
                "mismatches": [asdict(m) for m in self.mismatches], "summary": self.summary()}


def prefill_logits(loaded, prompts: list[str], batch_size: int):
    """Next-token logits after each prompt (float32, one row per prompt), in the same left-padded
    batches generation uses."""
    import torch  # lazy: torch only where it runs, never at import

    rows = []
    for start in range(0, len(prompts), batch_size):
        encoded = loaded.tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                                   add_special_tokens=not loaded.templated)
        with torch.inference_mode():
            logits = loaded.model(input_ids=encoded["input_ids"].to(loaded.device),
                                  attention_mask=encoded["attention_mask"].to(loaded.device)).logits
        rows.append(logits[:, -1, :].float().cpu())
    return torch.cat(rows)


def logit_deviation(reference, other) -> float:
    scale = float(reference.abs().max()) or 1.0
    return float((other - reference).abs().max()) / scale


def first_difference(a: list[int], b: list[int]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_outputs(ids: list[str], adapter, merged, tokenizer, batch_size: int, precision: str) -> MergeCheck:
    """Token-by-token comparison of two lists of core.memory.loading.Generated."""
    check = MergeCheck(len(ids), batch_size, precision)
    for case_id, one, two in zip(ids, adapter, merged):
        position = first_difference(one.token_ids, two.token_ids)
        if position is None:
            continue
        a_tok = one.token_ids[position] if position < len(one.token_ids) else None
        m_tok = two.token_ids[position] if position < len(two.token_ids) else None
        piece = (lambda t: "<end>" if t is None else tokenizer.decode([t]))
        check.mismatches.append(Mismatch(case_id, one.text, two.text, position, a_tok, m_tok, piece(a_tok),
                                         piece(m_tok)))
    return check


def merge_and_save(loaded, base_dir: Path, out_dir: Path) -> None:
    """Fold the adapter of a loaded adapter-on-base model into its weights (in place) and save
    the merged model as safetensors into out_dir, with the base's tokenizer files and generation
    defaults byte for byte."""
    precision = loaded.precision["name"]
    refusal = merge_refusal(precision)
    if refusal:
        raise InputError(f"refusing to merge: {refusal}")
    merged = loaded.model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)   # transformers 5: safetensors only
    for name in CARRIED_FROM_BASE:
        source = Path(base_dir) / name
        if source.is_file():
            shutil.copyfile(source, out_dir / name)
    loaded.model = merged


def check_merge(merged_dir: Path, precision: str, ids: list[str], prompts: list[str], settings: dict,
                batch_size: int, adapter_outputs, adapter_logits=None, *, device: str = "cpu") -> MergeCheck:
    """Load the merged directory as it ships and compare its greedy outputs (and, given the
    adapter's prefill logits, its next-token logits) with the adapter's."""

    loaded = load_model(merged_dir, precision, device=device)
    merged_outputs = generate_all(loaded, prompts, settings, batch_size)
    check = compare_outputs(ids, adapter_outputs, merged_outputs, loaded.tokenizer, batch_size,
                            loaded.precision["name"])
    if adapter_logits is not None:
        check.logit_deviation = logit_deviation(adapter_logits, prefill_logits(loaded, prompts, batch_size))
    return check
