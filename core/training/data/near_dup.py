"""Exact and near duplicates, and eval-set leakage, without comparing every pair.

Text is normalized (lower case, accents folded, punctuation dropped, single spaces), and each
text becomes the set of its character 5-grams (shingles): robust to a changed word in a short
text, where word n-grams would change too many shingles. Shingles that occur in many examples
(a shared instruction, a template's fixed words) say nothing about which example this is: they
are dropped before comparing, so two date questions that share a 12-word instruction but ask
about different dates are not "near duplicates", while two that ask the same thing in nearly the
same words are (one word changed in a 100-character request keeps about 0.8). Numbers carry
identity too: a pair also needs number sets as similar as its text ("26 January 1975" and
"29 January 1975" are two questions, "14/10/1972" and "14.10.1972" one).

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
    lowered = text.lower()
    if not lowered.isascii():   # fold accents only where there can be some (the slow path)
        folded = unicodedata.normalize("NFKD", lowered)
        lowered = "".join(c for c in folded if not unicodedata.combining(c))
    return " ".join(_WORD.findall(lowered))


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


def numbers(text: str) -> set[str]:
    """The numbers of a text (normalized: "05" and "5" differ, as they read differently)."""
    return set(re.findall(r"\d+", normalize(text)))


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _hash64(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest(), "little")


class MinHasher:
    """Fixed (seeded) permutations h(x) = (a*x + b) mod p, so signatures are reproducible."""

    BLOCK = 1 << 15   # shingles permuted at once: bounds memory at BLOCK x num_perm x 8 bytes

    def __init__(self, num_perm: int = NUM_PERM, seed: int = 1):
        import numpy as np  # lazy: numpy only where it runs, never at import

        rng = np.random.default_rng(seed)
        self.np = np
        # 32-bit hashes and 32-bit a, b keep a*x + b below 2^64: no silent uint64 wrap-around.
        self.a = rng.integers(1, _MAX_HASH, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, _MAX_HASH, size=num_perm, dtype=np.uint64)
        self.num_perm = num_perm
        self._hashes: dict[str, int] = {}

    def _hash(self, shingle: str) -> int:
        value = self._hashes.get(shingle)
        if value is None:
            value = self._hashes[shingle] = _hash64(shingle) & _MAX_HASH
        return value

    def signatures(self, sets: Sequence[set[str]]):
        """One signature row per set, (len(sets), num_perm) uint64: the shingles of many sets
        are permuted in blocks and reduced per set (np.minimum.reduceat), not set by set."""
        np = self.np
        out = np.full((len(sets), self.num_perm), _MAX_HASH, dtype=np.uint64)
        rows, values, starts = [], [], []
        def flush() -> None:
            if not rows:
                return
            column = np.fromiter(values, dtype=np.uint64, count=len(values))
            permuted = (column[:, None] * self.a[None, :] + self.b[None, :]) % _PRIME & _MAX_HASH
            out[rows] = np.minimum.reduceat(permuted, np.asarray(starts), axis=0)
            rows.clear(), values.clear(), starts.clear()
        for index, shingle_set in enumerate(sets):
            if not shingle_set:
                continue
            if len(values) + len(shingle_set) > self.BLOCK:
                flush()
            rows.append(index)
            starts.append(len(values))
            values.extend(self._hash(shingle) for shingle in shingle_set)
        flush()
        return out


@dataclass
class Pair:
    first: int          # index of the earlier example
    second: int         # index of the later one (the one a fix removes)
    similarity: float


def candidate_pairs(signatures, *, bands: int = BANDS, rows: int = ROWS) -> set[tuple[int, int]]:
    """Index pairs that share a whole band of their signatures. Each band of every signature is
    folded into one 64-bit key (vectorized); rows with equal keys are found by sorting. A rare
    key collision only adds a candidate, which the exact Jaccard then turns down."""
    import numpy as np  # lazy: numpy only where it runs, never at import

    signatures = np.asarray(signatures, dtype=np.uint64)
    mix = np.random.default_rng(7).integers(1, 1 << 63, size=rows, dtype=np.uint64) | np.uint64(1)
    pairs: set[tuple[int, int]] = set()
    with np.errstate(over="ignore"):
        for band in range(bands):
            keys = (signatures[:, band * rows:(band + 1) * rows] * mix[None, :]).sum(axis=1, dtype=np.uint64)
            order = np.argsort(keys, kind="stable")
            ordered = keys[order]
            edges = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
            starts = np.concatenate(([0], edges))
            ends = np.concatenate((edges, [len(order)]))
            shared = ends - starts > 1
            for start, end in zip(starts[shared].tolist(), ends[shared].tolist()):
                members = sorted(order[start:end].tolist())
                for i, first in enumerate(members):
                    for second in members[i + 1:]:
                        pairs.add((first, second))
    return pairs


def near_duplicate_pairs(texts: Sequence[str], threshold: float, *, exclude: set[int] | None = None,
                         common: set[str] | None = None) -> list[Pair]:
    """Pairs of texts whose distinctive shingles have Jaccard similarity >= threshold, found
    through MinHash + LSH (about linear in the number of texts), verified exactly. common: the
    shingles to drop (default: those common among `texts`)."""
    sets = [shingles(text) for text in texts]
    common = common_shingles(sets) if common is None else common
    sets = [distinctive(s, common) for s in sets]
    signatures = MinHasher().signatures(sets)
    exclude = exclude or set()
    found = []
    digits: dict[int, set[str]] = {}
    for first, second in sorted(candidate_pairs(signatures)):
        if first in exclude or second in exclude:
            continue
        similarity = jaccard(sets[first], sets[second])
        if similarity >= threshold and same_numbers(texts, digits, first, second, threshold):
            found.append(Pair(first, second, round(similarity, 4)))
    return found


def same_numbers(texts: Sequence[str], cache: dict[int, set[str]], first: int, second: int, threshold: float) -> bool:
    """Numbers carry identity: "26 January 1975" and "29 January 1975" are two questions however
    alike their words. A pair counts only when its number sets are as similar as its text."""
    for index in (first, second):
        if index not in cache:
            cache[index] = numbers(texts[index])
    return jaccard(cache[first], cache[second]) >= threshold


def naive_near_duplicate_pairs(texts: Sequence[str], threshold: float, *,
                               common: set[str] | None = None) -> list[Pair]:
    """Every pair compared (O(n^2)): the baseline the benchmark measures LSH against."""
    sets = [shingles(text) for text in texts]
    common = common_shingles(sets) if common is None else common
    sets = [distinctive(s, common) for s in sets]
    digits: dict[int, set[str]] = {}
    return [Pair(i, j, round(jaccard(sets[i], sets[j]), 4))
            for i in range(len(sets)) for j in range(i + 1, len(sets))
            if jaccard(sets[i], sets[j]) >= threshold and same_numbers(texts, digits, i, j, threshold)]


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
