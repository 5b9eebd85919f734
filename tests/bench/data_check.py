"""Benchmark: the training-data checks on 10k synthetic examples, and near-duplicate search by
MinHash + LSH against the naive all-pairs comparison measured in the same run.

    .venv/bin/python tests/bench/data_check.py                  # 10k examples, naive on 1.5k
    .venv/bin/python tests/bench/data_check.py --examples 2000 --naive 500

Data: the demo generator's date-rewriting examples (core/demo/data.py, seeded), with 1% of them
copied as exact duplicates and 1% as near duplicates (a sentence prepended, one word changed).

Prints, in one run:
  (a) the whole check (read, render with the chat template, count tokens, duplicates, leakage,
      PII, tags, split) in examples/s, with the tiny test model's tokenizer
  (b) near duplicates by MinHash + LSH over all examples, examples/s
  (c) naive all-pairs Jaccard over --naive examples (holding the planted pairs), examples/s, and what it would take
      for all of them (pairs grow with n^2: seconds x (N / n)^2)
  (d) recall of (b) against (c): every pair the naive pass finds in the subset, LSH found too
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))


def synthetic(count: int) -> list[dict]:
    from weightgate.core.demo.data import demo_examples

    examples = demo_examples(count=count, seed=11, plant=False)
    extra = []
    for n, example in enumerate(examples[: count // 100]):
        copy = json.loads(json.dumps(example))
        copy["id"] = f"dup-{n}"
        extra.append(copy)
    for n, example in enumerate(examples[count // 100: count // 50]):
        original = example["messages"][0]
        original["content"] = "I found this in an old diary and need it for a form. " + original["content"]
        copy = json.loads(json.dumps(example))
        copy["id"] = f"near-{n}"
        copy["messages"][0]["content"] = copy["messages"][0]["content"].replace("old diary", "old letter")
        extra.append(copy)
    return examples + extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=1_500, help="Subset size for the all-pairs baseline.")
    args = parser.parse_args()

    from tiny_model import build_tiny_model

    from weightgate.core.demo.workspace import create_demo_workspace
    from weightgate.core.training.data.near_dup import (
        common_shingles,
        naive_near_duplicate_pairs,
        near_duplicate_pairs,
        shingles,
    )
    from weightgate.core.training.data.prepare import check_dataset

    rows = synthetic(args.examples)
    texts = ["\n".join(m["content"] for m in row["messages"]) for row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        ws, _ = create_demo_workspace(Path(tmp) / "ws")
        (ws.root / "data" / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        began = time.perf_counter()
        report = check_dataset(ws, tokenizer_dir=model_dir)
        full = time.perf_counter() - began

    began = time.perf_counter()
    pairs = near_duplicate_pairs(texts, 0.7)
    lsh = time.perf_counter() - began

    # The subset keeps the planted pairs: originals are the first N/50 examples, copies the last.
    planted_count = len(rows) - args.examples
    positions = list(range(args.naive - planted_count)) + list(range(len(texts) - planted_count, len(texts)))
    subset = [texts[i] for i in positions]
    # The subset is judged with the full set's common shingles, as the full run judged it.
    common = common_shingles([shingles(text) for text in texts])
    began = time.perf_counter()
    naive = naive_near_duplicate_pairs(subset, 0.7, common=common)
    naive_s = time.perf_counter() - began
    lsh_subset = {(p.first, p.second) for p in pairs}
    naive_set = {(positions[p.first], positions[p.second]) for p in naive}
    recall = len(naive_set & lsh_subset) / len(naive_set) if naive_set else 1.0
    naive_full = naive_s * (len(texts) / len(subset)) ** 2

    planted = planted_count
    found = len(report.exact_duplicates) + len(report.near_duplicates)
    print(f"examples: {len(rows)} ({planted} planted duplicates: {args.examples // 100} exact, "
          f"{args.examples // 100} near)")
    print(f"(a) whole check:        {full:7.2f} s  {len(rows) / full:9.0f} examples/s   "
          f"found {len(report.exact_duplicates)} exact groups + {len(report.near_duplicates)} near pairs "
          f"(of {planted} planted)")
    print(f"(b) MinHash + LSH:      {lsh:7.2f} s  {len(texts) / lsh:9.0f} examples/s   {len(pairs)} pairs >= 0.7")
    print(f"(c) naive all pairs:    {naive_s:7.2f} s  {len(subset) / naive_s:9.0f} examples/s   on {len(subset)} "
          f"examples; all {len(texts)}: ~{naive_full:.0f} s ({len(texts) / naive_full:.0f} examples/s)")
    print(f"    LSH over naive, same {len(subset)} examples: {naive_s / max(lsh * len(subset) / len(texts), 1e-9):.1f}x "
          f"(per example); on all {len(texts)}: {naive_full / lsh:.0f}x")
    print(f"(d) LSH recall of the naive pairs on the subset: {recall:.3f} ({len(naive_set & lsh_subset)}/{len(naive_set)})")
    if found < planted or recall < 1.0:
        sys.exit(1)


if __name__ == "__main__":
    main()
