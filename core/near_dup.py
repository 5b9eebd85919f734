"""Exact and near duplicates, and eval-set leakage, without comparing every pair.

Text is normalized (lower case, accents folded, punctuation dropped, single spaces), and each
text becomes the set of its character 5-grams (shingles): robust to a changed word in a short
text, where word n-grams would change too many shingles. Shingles that occur in many examples
(a shared instruction, a template's fixed words) say nothing about which example this is: they
are dropped before comparing, so two date questions that share a 12-word instruction but ask
about different dates are not "near duplicates", while two that ask the same thing in nearly the
same words are (one word changed in a 100-character request keeps about 0.8).

Near duplicates: MinHash signatures (NUM_PERM permutations) bucketed by LSH banding (BANDS bands
of ROWS rows), so only examples that collide in some band are compared; each candidate pair is
then scored by its exact Jaccard similarity, so reported pairs are never guesses. Leakage: an
inverted index from shingle to training examples; for every eval case, the training examples
sharing its shingles, scored by containment (how much of the eval case is inside the example).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

SHINGLE_CHARS = 5
NUM_PERM = 100
BANDS, ROWS = 20, 5            # threshold ~ (1/20)^(1/5) = 0.55: pairs at 0.7 collide with p > 0.99
COMMON_FRACTION = 0.05         # a shingle in more than 5% of examples ...
COMMON_MIN_COUNT = 20          # ... and in more than 20 of them is template, not content
_PRIME = (1 << 61) - 1
_MAX_HASH = (1 << 32) - 1
_WORD = re.compile(r"[a-z]+|\d+|[^\W\d_]+")


def normalize(text: str) -> str:
    """Lower case, accents folded, punctuation and runs of space dropped: what a near
    duplicate changes without changing the meaning."""
    folded = unicodedata.normalize("NFKD", text.lower())
    return " ".join(_WORD.findall("".join(c for c in folded if not unicodedata.combining(c))))


def shingles(text: str, size: int = SHINGLE_CHARS) -> set[str]:
    """Character n-grams of the normalized text (spaces included, so word boundaries count)."""
    norm = normalize(text)
    if len(norm) <= size:
        return {norm} if norm else set()
    return {norm[i:i + size] for i in range(len(norm) - size + 1)}


def common_shingles(sets: Iterable[set[str]], *, fraction: float = COMMON_FRACTION,
                    min_count: int = COMMON_MIN_COUNT) -> set[str]:
    counts: dict[str, int] = {}
    total = 0
    for shingle_set in sets:
        total += 1
        for shingle in shingle_set:
            counts[shingle] = counts.get(shingle, 0) + 1
    limit = max(min_count, fraction * total)
    return {shingle for shingle, count in counts.items() if count > limit}


def distinctive(shingle_set: set[str], common: set[str]) -> set[str]:
    """The shingles that identify an example; all of them when every one is common."""
    kept = shingle_set - common
    return kept or set(shingle_set)


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _hash64(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest(), "little")


class MinHasher:
    """Fixed (seeded) permutations h(x) = (a*x + b) mod p, so signatures are reproducible."""

    def __init__(self, num_perm: int = NUM_PERM, seed: int = 1):
        import numpy as np

        rng = np.random.default_rng(seed)
        self.np = np
        self.a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)
        self.num_perm = num_perm

    def signature(self, shingle_set: set[str]):
        np = self.np
        if not shingle_set:
            return np.full(self.num_perm, _MAX_HASH, dtype=np.uint64)
        # 32-bit hashes and 32-bit a, b keep a*x + b below 2^64: no silent uint64 wrap-around.
        values = np.fromiter((_hash64(s) & _MAX_HASH for s in shingle_set), dtype=np.uint64,
                             count=len(shingle_set))
        permuted = (values[:, None] * (self.a[None, :] & _MAX_HASH) + (self.b[None, :] & _MAX_HASH)) % _PRIME
        return (permuted & _MAX_HASH).min(axis=0)


@dataclass
class Pair:
    first: int          # index of the earlier example
    second: int         # index of the later one (the one a fix removes)
    similarity: float


def candidate_pairs(signatures: Sequence, *, bands: int = BANDS, rows: int = ROWS) -> set[tuple[int, int]]:
    """Index pairs that share a whole band of their signatures."""
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for index, signature in enumerate(signatures):
            key = signature[band * rows:(band + 1) * rows].tobytes()
            buckets.setdefault(key, []).append(index)
        for members in buckets.values():
            for i, first in enumerate(members):
                for second in members[i + 1:]:
                    pairs.add((first, second))
    return pairs


def near_duplicate_pairs(texts: Sequence[str], threshold: float, *, exclude: set[int] | None = None) -> list[Pair]:
    """Pairs of texts whose distinctive shingles have Jaccard similarity >= threshold, found
    through MinHash + LSH (about linear in the number of texts), verified exactly."""
    sets = [shingles(text) for text in texts]
    common = common_shingles(sets)
    sets = [distinctive(s, common) for s in sets]
    hasher = MinHasher()
    signatures = [hasher.signature(s) for s in sets]
    exclude = exclude or set()
    found = []
    for first, second in sorted(candidate_pairs(signatures)):
        if first in exclude or second in exclude:
            continue
        similarity = jaccard(sets[first], sets[second])
        if similarity >= threshold:
            found.append(Pair(first, second, round(similarity, 4)))
    return found


def naive_near_duplicate_pairs(texts: Sequence[str], threshold: float) -> list[Pair]:
    """Every pair compared (O(n^2)): the baseline the benchmark measures LSH against."""
    sets = [shingles(text) for text in texts]
    common = common_shingles(sets)
    sets = [distinctive(s, common) for s in sets]
    return [Pair(i, j, round(jaccard(sets[i], sets[j]), 4))
            for i in range(len(sets)) for j in range(i + 1, len(sets))
            if jaccard(sets[i], sets[j]) >= threshold]


@dataclass
class Leak:
    train: int            # index of the training example
    eval_set: str         # "task" | "general"
    case_id: str
    containment: float    # share of the eval case's distinctive shingles found in the example


def leakage(train_texts: Sequence[str], eval_cases: Sequence[tuple[str, str, str]], threshold: float) -> list[Leak]:
    """Training examples that contain (nearly) an eval case. eval_cases: (set, case id, text).

    An inverted index shingle -> examples; each eval case only meets examples sharing a shingle."""
    train_sets = [shingles(text) for text in train_texts]
    common = common_shingles(train_sets)
    index: dict[str, list[int]] = {}
    for position, shingle_set in enumerate(train_sets):
        for shingle in distinctive(shingle_set, common):
            index.setdefault(shingle, []).append(position)
    leaks = []
    for set_name, case_id, text in eval_cases:
        wanted = distinctive(shingles(text), common)
        if not wanted:
            continue
        hits: dict[int, int] = {}
        for shingle in wanted:
            for position in index.get(shingle, ()):
                hits[position] = hits.get(position, 0) + 1
        for position, shared in sorted(hits.items()):
            containment = shared / len(wanted)
            if containment >= threshold:
                leaks.append(Leak(position, set_name, case_id, round(containment, 4)))
    return leaks
