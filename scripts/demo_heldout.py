"""Score a demo adapter on date formats its training data never contains (scripts/demo_heldout.jsonl),
and on the demo's own task and general sets, with the same generation and scoring as `weightgate eval`.

    .venv/bin/python scripts/demo_heldout.py demo-workspace                 # the decided adapter
    .venv/bin/python scripts/demo_heldout.py demo-workspace --adapter ID    # an id under .weightgate/adapters/ or a dir
    .venv/bin/python scripts/demo_heldout.py demo-workspace --base          # the base model, no adapter
    .venv/bin/python scripts/demo_heldout.py --write                        # regenerate the .jsonl from core/demo/data.py

Prints the score per held-out format and per set; writes no run into the workspace (the held-out
set is not one of its gates). About a minute on two CPU cores for the three sets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELDOUT_FILE = ROOT / "scripts" / "demo_heldout.jsonl"
SETS = ("heldout", "task", "general")


def score_set(loaded, path: Path, batch_size: int) -> dict:
    from weightgate.core.evaluation.generation import build_messages, generate_all, generation_settings, render
    from weightgate.core.evaluation.plan import load_valid_evalset
    from weightgate.core.evaluation.scoring import score_output

    evalset = load_valid_evalset(path)
    settings = generation_settings(loaded.model_dir, max_new_tokens=evalset.options.max_new_tokens)
    prompts = [render(loaded.tokenizer, build_messages(case.input, evalset.options.system, evalset.options.few_shot))
               for case in evalset.cases]
    began = time.perf_counter()
    outputs = generate_all(loaded, prompts, settings, batch_size)
    by_tag: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses = []
    for case, output in zip(evalset.cases, outputs):
        passed = score_output(case.scorer, output.text, case.expected, case.options).passed
        for tag in case.tags:
            by_tag[tag][0] += passed
            by_tag[tag][1] += 1
        if not passed:
            misses.append({"id": case.id, "input": case.input.splitlines()[-1], "expected": case.expected,
                           "output": output.text})
    passed = sum(1 for case in evalset.cases if case.id not in {m["id"] for m in misses})
    return {"cases": len(evalset.cases), "passed": passed, "score": round(passed / len(evalset.cases), 4),
            "by_tag": {tag: f"{n}/{total}" for tag, (n, total) in sorted(by_tag.items())},
            "misses": misses, "seconds": round(time.perf_counter() - began, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace", nargs="?", type=Path)
    parser.add_argument("--adapter", help="an adapter id under .weightgate/adapters/ or a directory "
                                          "(default: [decisions] adapter)")
    parser.add_argument("--base", action="store_true", help="the base model, without any adapter")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated, of: " + ", ".join(SETS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"regenerate {HELDOUT_FILE.name} and exit")
    args = parser.parse_args()

    from weightgate.core.demo.data import heldout_lines

    if args.write:
        HELDOUT_FILE.write_text("\n".join(heldout_lines()) + "\n", encoding="utf-8")
        print(f"wrote {HELDOUT_FILE.relative_to(ROOT)}")
        return 0
    if args.workspace is None:
        parser.error("a demo workspace is needed (or --write)")

    from weightgate.core.engine.workspace import Workspace
    from weightgate.core.evaluation.plan import evalset_path, resolve_adapter, workspace_target
    from weightgate.core.evaluation.runner import load_target

    ws = Workspace(args.workspace.resolve())
    target = workspace_target(ws)
    if args.base:
        target = dataclasses.replace(target, adapter=None)
    elif args.adapter:
        target = dataclasses.replace(target, adapter=resolve_adapter(ws, args.adapter))
    loaded = load_target(ws, target, "cpu")
    paths = {"heldout": HELDOUT_FILE, "task": evalset_path(ws, "task"), "general": evalset_path(ws, "general")}
    results = {"adapter": str(target.adapter) if target.adapter else None}
    for name in args.sets.split(","):
        results[name] = score_set(loaded, paths[name], args.batch_size)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"adapter: {results['adapter'] or 'none (the base model)'}")
    for name in args.sets.split(","):
        result = results[name]
        print(f"{name}: {result['passed']}/{result['cases']} = {result['score']:.3f} ({result['seconds']} s)")
        if name == "heldout":
            for tag, count in result["by_tag"].items():
                print(f"  {tag:24} {count}")
        for miss in result["misses"][:12] if name != "general" else []:
            print(f"  miss {miss['input']!r}: {miss['output']!r} (expected {miss['expected'][0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
