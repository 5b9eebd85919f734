"""README.md of a shipped version: a Hugging Face model card (huggingface_hub's ModelCard and
ModelCardData) whose metadata carries base_model, base_model_relation, license and the eval
results as model-index, and whose text says how to load, serve, verify and roll it back.
Written from the manifest alone, so the card never says more than the manifest proves."""

from __future__ import annotations

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
    lines += ["", "## Merge", "", f"{merge.get('decision')}: {merge.get('reason')}"]
    if merge.get("checked"):
        lines.append(f"Greedy outputs of the merged model equal the adapter's on {merge.get('cases')} eval cases.")
    lines += ["", "## Verify, load, serve, roll back", "",
              "```", "sha256sum -c SHA256SUMS", "```", ""]
    if serve:
        lines += ["```", serve.get("transformers", ""), "```", "", "```", serve.get("vllm", ""), "```", "",
                  "```", serve.get("tgi", ""), "```", ""]
    lines += ["Roll back with `weightgate release rollback` (moves `current` to `previous`).",
              "Everything this version was made from is in manifest.toml."]
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n",
                                   body="\n".join(lines)).content
