"""Where a process's time goes: generating, training, hashing, loading.

The heavy steps wrap themselves in `timed(category)`; a job process reports the totals with its
result (job_process.py: `timing` in the result's data), and the headless demo sums its jobs'
totals per phase. Times are exclusive: a step timed inside another (a hash inside a load) counts
for the inner category only and pauses the outer one, so the categories never add up to more
than the wall time. Only the main thread is timed: the hashing threads run inside a
`hash_files` call the main thread waits on, which is what the wall time of the step is.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

GENERATING, TRAINING, HASHING, LOADING = "generating", "training", "hashing", "loading"
CATEGORIES = (GENERATING, TRAINING, HASHING, LOADING)

_totals: dict[str, float] = defaultdict(float)
_open: list[list] = []      # [category, since] of the timed steps now running, innermost last


@contextmanager
def timed(category: str) -> Iterator[None]:
    """Count the wall time of the block (on the main thread) for `category`."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown timing category {category!r}: one of {', '.join(CATEGORIES)}")
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    now = time.perf_counter()
    if _open:                          # pause the step this one runs inside
        outer = _open[-1]
        _totals[outer[0]] += now - outer[1]
    entry = [category, now]
    _open.append(entry)
    try:
        yield
    finally:
        end = time.perf_counter()
        _open.remove(entry)
        _totals[category] += end - entry[1]
        if _open:                      # the outer step resumes now
            _open[-1][1] = end


def totals() -> dict[str, float]:
    """Seconds per category so far in this process (steps still running counted up to now)."""
    now = time.perf_counter()
    out = {category: _totals.get(category, 0.0) for category in CATEGORIES}
    if _open:
        category, since = _open[-1]
        out[category] += now - since
    return out


def since(before: dict[str, float]) -> dict[str, float]:
    """Seconds per category spent after the snapshot `before` (from totals())."""
    now = totals()
    return {category: now[category] - before.get(category, 0.0) for category in CATEGORIES}
