"""README.md of a shipped version: a Hugging Face model card (huggingface_hub's ModelCard and
ModelCardData) whose metadata carries base_model, base_model_relation, license and the eval
results as model-index, and whose text says how to load, serve, verify and roll it back.
Written from the manifest alone, so the card never says more than the manifest proves: the
gates it shipped through (an override in bold at the top), the six phases' table from its
[checklist], the relaxations (waivers, attestations) by name, and its promotion."""

from __future__ import annotations

import time

from weightgate.core.registry.checks import gates_line
from weightgate.core.release.gate import relaxations

# The hub's base_model_relation values: a LoRA merged into its base is a fine-tune of the base;
# an unchanged base has no relation to state.
HUB_RELATION = {"adapter": "adapter", "merged": "finetune", "quantized": "quantized"}


def card_text(manifest: dict, serve: dict | None = None) -> str:
    from huggingface_hub import (  # lazy: huggingface_hub only where it runs, never at import
        EvalResult,
        ModelCard,
        ModelCardData,
    )

    release, base = manifest["release"], manifest["base"]
    label = f"{release['name']}@{release['version']}"
    relation = release["relation"]
    results = []
    for block in manifest.get("evals", []):
        dataset = f"weightgate-{block['set']}"
        results.append(EvalResult(task_type="text-generation", dataset_type=dataset,
                                  dataset_name=f"{block['set']} eval set", metric_type="accuracy",
                                  metric_name="score", metric_value=block.get("score"),
                                  dataset_revision=str(block.get("evalset", "")).split(":")[-1][:40] or None))
        for tag, numbers in (block.get("tags") or {}).items():
            results.append(EvalResult(task_type="text-generation", dataset_type=f"{dataset}-{tag}",
                                      dataset_name=f"{block['set']} eval set, {tag} cases",
                                      metric_type="accuracy", metric_name=f"{tag} score",
                                      metric_value=numbers.get("score")))
    extra = {"base_model_relation": HUB_RELATION[relation]} if relation in HUB_RELATION else {}
    data = ModelCardData(
        base_model=base.get("repo") if base.get("kind") == "hub" else (base.get("origin") or None),
        license=(base.get("license") or "other").lower(), library_name="peft" if relation == "adapter" else "transformers",
        model_name=label, eval_results=results or None, tags=["weightgate", relation], **extra)
    if base.get("kind") != "hub":
        # Not a hub repo: the card names the local base; base_model is the hub repo it was made from
        # when that is known (the demo's conversion of SmolLM2), else empty (it must be a repo id).
        data.base_model_path = base.get("repo")
    precision = manifest.get("precision", {})
    lines = [
        f"# {label}", "",
        f"Shipped by weightgate: **{relation}** of `{base.get('repo')}` at revision `{base.get('commit') or 'local'}`, "
        f"precision {precision.get('name')}.", "",
        "## Evaluation", "",
    ]
    for block in manifest.get("evals", []):
        tags = ", ".join(f"{tag} {n.get('score')}" for tag, n in (block.get("tags") or {}).items())
        lines.append(f"- {block['set']}: score {block.get('score')} ({block.get('passed')}/{block.get('cases')})"
                     + (f"; {tags}" if tags else "") + f", run `{block.get('run')}`")
    merge = manifest.get("merge", {})
    lines[2:2] = _gates_lines(manifest)
    lines += ["", "## Merge", "", f"{merge.get('decision')}: {merge.get('reason')}"]
    if merge.get("checked"):
        lines.append(f"Greedy outputs of the merged model equal the adapter's on {merge.get('cases')} eval cases.")
    lines += _checklist_lines(manifest)
    lines += ["", "## Verify, load, serve, roll back", "",
              "```", "sha256sum -c SHA256SUMS", "```", ""]
    if serve:
        lines += serve_lines(serve)
    lines += ["Roll back with `weightgate release rollback` (moves `current` to `previous`).",
              "Everything this version was made from is in manifest.toml."]
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n",
                                   body="\n".join(lines)).content


def serve_lines(serve: dict) -> list[str]:
    """The load snippet, then each engine's command, or why it would not serve what was evaluated."""
    lines = ["```", serve.get("transformers", ""), "```", ""]
    labels = {"transformers_serve": "transformers serve", "vllm": "vLLM", "sglang": "SGLang"}
    refused = serve.get("refused") or {}
    for engine, label in labels.items():
        if serve.get(engine):
            lines += [f"{label}:", "", "```", serve[engine], "```", ""]
        elif engine in refused:
            lines += [f"{label}: no command: {refused[engine]}", ""]
    return lines


def _when(seconds) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(seconds))) if seconds else "?"


def _gates_lines(manifest: dict) -> list[str]:
    gates = manifest.get("gates")
    if not isinstance(gates, dict):
        return []
    if gates.get("open"):
        return [f"Gates: {gates_line(gates)}.", ""]
    override = gates.get("override") or {}
    return [f"**Warning: {gates_line(gates)}** (by {override.get('by', '?')}, {_when(override.get('time'))}).", ""]


def _checklist_lines(manifest: dict) -> list[str]:
    """The six phases as a table, then the items that hold by a person's word."""
    checklist = manifest.get("checklist")
    if not isinstance(checklist, dict) or not checklist.get("phases"):
        return []
    items = checklist.get("items") or []
    stage = "at promotion" if checklist.get("stage") == "promote" else "at ship (phase 6 is decided on it next)"
    lines = ["", "## Checklist", "", f"The six phases {stage}, {_when(checklist.get('taken'))}; manifest.toml "
             "[checklist] has every item with the evidence it was decided on.", "",
             "| Phase | State | Items |", "|---|---|---|"]
    for phase in checklist["phases"]:
        counts: dict[str, int] = {}
        for item in items:
            if item.get("phase") == phase.get("number"):
                counts[item.get("status", "?")] = counts.get(item.get("status", "?"), 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"| {phase.get('number')} {phase.get('title')} | {phase.get('state')} | {summary} |")
    relaxed = relaxations(checklist)
    if relaxed:
        lines += ["", "Held by a person's word, not a measurement:", ""]
        lines += [f"- {item['id']} {'waived' if item.get('kind') == 'waive' else 'attested'}: {item.get('note', '')}"
                  for item in relaxed]
    promotion = manifest.get("promotion")
    if isinstance(promotion, dict):
        text = (f"Promoted to `current` by {promotion.get('by', '?')}, {_when(promotion.get('time'))}"
                + (f", replacing {promotion['from']}" if promotion.get("from") else ""))
        override = promotion.get("override")
        if isinstance(override, dict):
            text += (f", **with closed gates: {', '.join(promotion.get('held_by') or [])}, reason: "
                     f"{override.get('reason')}**")
        lines += ["", text + "."]
    return lines
