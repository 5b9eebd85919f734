"""Small, exact paired statistics in pure Python (no scipy): what compare and review report.

mcnemar_exact        pass/fail flips between two runs: the two-sided binomial test on the
                     discordant pairs (b pass->fail, c fail->pass) with p = 1/2.
wilcoxon_signed_rank continuous score changes: the exact signed-rank test, midranks for tied
                     magnitudes, zeros dropped (Wilcoxon's rule); exact up to EXACT_MAX pairs,
                     a normal approximation with tie correction beyond.
bootstrap_mean_ci    paired bootstrap (percentile) interval of a mean of per-case differences,
                     with a fixed seed so the same runs always give the same interval.
wilson_interval      the Wilson score interval of a proportion (accepts half-counts for ties).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

EXACT_MAX = 300          # exact signed-rank distribution up to this many non-zero differences
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
ZERO = 1e-12


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n trials with p = 1/2 (the sign test)."""
    if n <= 0:
        return 1.0
    tail = min(k, n - k)
    total = sum(math.comb(n, i) for i in range(tail + 1))
    return min(1.0, 2 * total / 2 ** n)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar: b and c are the discordant counts (pass->fail, fail->pass)."""
    return binomial_two_sided(b, b + c)


@dataclass(frozen=True)
class SignedRank:
    n: int               # non-zero differences used
    w_plus: float        # sum of the ranks of the positive differences
    p_value: float
    exact: bool


def _midranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and abs(values[order[j + 1]] - values[order[i]]) <= ZERO:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        i = j + 1
    return ranks


def wilcoxon_signed_rank(diffs: Sequence[float]) -> SignedRank:
    """Two-sided Wilcoxon signed-rank test of paired differences (b - a)."""
    nonzero = [d for d in diffs if abs(d) > ZERO]
    n = len(nonzero)
    if n == 0:
        return SignedRank(0, 0.0, 1.0, True)
    doubled = [round(2 * r) for r in _midranks([abs(d) for d in nonzero])]  # integers
    total = sum(doubled)
    w2 = sum(r for r, d in zip(doubled, nonzero) if d > 0)
    if n <= EXACT_MAX:
        counts = _subset_sum_counts(doubled, total)
        observed = abs(2 * w2 - total)
        extreme = sum(count for s, count in enumerate(counts) if count and abs(2 * s - total) >= observed)
        p = min(1.0, extreme / 2 ** n)
        return SignedRank(n, w2 / 2, p, True)
    variance = sum(r * r for r in doubled) / 4  # of the doubled statistic
    z = abs(w2 - total / 2) / math.sqrt(variance) if variance else 0.0
    return SignedRank(n, w2 / 2, min(1.0, math.erfc(z / math.sqrt(2))), False)


def _subset_sum_counts(weights: list[int], total: int) -> list[int]:
    """counts[s] = how many sign patterns give a positive-rank sum of s.

    The generating polynomial prod(1 + x^w) is built in one big integer with a fixed number of
    bits per coefficient (enough for 2^n), so each factor is one shift and one add.
    """
    width = 8 * ((len(weights) + 1 + 7) // 8)  # bits per coefficient, byte aligned
    poly = 1
    for weight in weights:
        poly += poly << (width * weight)
    raw = poly.to_bytes((total + 1) * width // 8, "little")
    step = width // 8
    return [int.from_bytes(raw[i * step:(i + 1) * step], "little") for i in range(total + 1)]


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float = 0.95


def bootstrap_mean_ci(diffs: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> Interval | None:
    """Percentile interval of the mean difference, resampling cases (pairs) with replacement."""
    n = len(diffs)
    if n == 0:
        return None
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    alpha = (1 - level) / 2
    low = means[int(math.floor(alpha * (resamples - 1)))]
    high = means[int(math.ceil((1 - alpha) * (resamples - 1)))]
    return Interval(low, high, level)


def wilson_interval(successes: float, n: int, *, z: float = 1.959963984540054) -> Interval | None:
    """Wilson score interval (95 % by default); `successes` may be a half-count (ties)."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return Interval(low, high)
