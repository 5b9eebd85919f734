"""The machinery every phase stands on, knowing nothing of any phase: the workspace on disk
(weightgate.toml, weightgate.lock, atomic writes, line-numbered JSONL, errors that name file,
line and fix), the checklist's items as data, the evidence log and the fingerprints that make
evidence stale, item statuses and phase gates as rules, and detached jobs with their journals.
"""
