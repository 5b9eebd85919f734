"""Phases 1 and 4, selection and evaluation: a baseline you can trust. Eval sets and scorers,
batched greedy runs with identities, compare with paired statistics, blind review,
determinism, latency, the candidate benchmark, quantized quality, and whether phase 5 is
needed. `checks.py` decides phase 1's and phase 4's items.
"""
