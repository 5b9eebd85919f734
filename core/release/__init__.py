"""Phase 6, deployment: a release you can verify, probe and roll back. Ship (merge check,
registry version, SHA256SUMS, manifest, model card), aliases and rollback, verify-release,
the health probe, the canary, serving commands. `checks.py` decides phase 6's items.
"""
