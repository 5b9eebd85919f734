"""The headless engine: everything weightgate does, with no UI (textual, rich and typer are
never imported here; import-linter and tests/unit/test_architecture.py hold that).

One package per phase, each importing only the ones below it:

    demo        the demo workspace, its data and model, the headless journey
    gates       every item's status from its phase's checks, and which phases are open
    release     phase 6: ship, registry, manifest, card, merge, health, canary, serving
    training    phase 5: data checks, LoRA / QLoRA runs, few-shot first, keep-or-reject
    evaluation  phases 1 and 4: eval sets, runs, scoring, compare, review, latency, benchmark
    memory      phase 3: estimates, devices, loading at a precision, measuring
    weights     phase 2: sources, download, hashing, verify, lock, formats, pickle policy
    engine      workspace, checklist items, evidence, fingerprints, jobs and their journals
"""
