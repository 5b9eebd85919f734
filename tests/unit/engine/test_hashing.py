"""core.engine.hashing: correct digests, parallel across files, progress that is monotonic and throttled."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from weightgate.core.engine.hashing import default_workers, hash_files, hash_rate, sha256_file


def write(path: Path, size: int, seed: int = 0) -> bytes:
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("size", [0, 1, 2047, 2048, 4096 + 3, (1 << 20) + 17])
def test_sha256_file_matches_hashlib(tmp_path, size):
    data = write(tmp_path / "f", size, seed=size)
    assert sha256_file(tmp_path / "f", chunk=4096) == hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_hash_files_keys_by_the_given_objects(tmp_path):
    sizes = [0, 10, 300_000, 70_000, 1_000_003]
    paths = [tmp_path / f"shard-{i}.bin" for i in range(len(sizes))]
    expected = {p: hashlib.sha256(write(p, n, seed=i)).hexdigest() for i, (p, n) in enumerate(zip(paths, sizes))}
    assert hash_files(paths, workers=3, chunk=65536) == expected
    as_str = [str(p) for p in paths]
    result = hash_files(as_str + as_str[:2], workers=2)          # duplicates hashed once
    assert list(result) == as_str and result == {str(p): v for p, v in expected.items()}
    assert hash_files([]) == {}


def test_hash_files_runs_files_in_parallel(tmp_path, monkeypatch):
    """Two files, two workers: both are being hashed at the same moment."""
    import weightgate.core.engine.hashing as hashing

    paths = [tmp_path / "a", tmp_path / "b"]
    for i, p in enumerate(paths):
        write(p, 1000, seed=i)
    barrier = threading.Barrier(2, timeout=5)
    real = hashing.sha256_file

    def meeting(path, chunk, *, on_bytes=None):
        barrier.wait()          # raises BrokenBarrierError if the two never overlap
        return real(path, chunk, on_bytes=on_bytes)

    monkeypatch.setattr(hashing, "sha256_file", meeting)
    assert len(hash_files(paths, workers=2)) == 2


def test_progress_is_monotonic_thread_safe_and_ends_at_total(tmp_path):
    paths = [tmp_path / f"s{i}" for i in range(4)]
    total = 0
    for i, p in enumerate(paths):
        total += len(write(p, 200_000 + i, seed=i))
    calls: list[tuple[int, int]] = []
    active = []

    def progress(done, of):
        active.append(1)
        assert len(active) == 1, "progress calls overlapped"
        calls.append((done, of))
        active.pop()

    hash_files(paths, workers=4, progress=progress, chunk=4096, interval=0)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1] == (total, total)
    assert all(of == total for _, of in calls)


def test_progress_is_throttled(tmp_path):
    path = tmp_path / "big"
    write(path, 2_000_000)
    calls = []
    hash_files([path], progress=lambda d, t: calls.append(d), chunk=4096, interval=3600)
    # 489 chunks, but only the first call and the final one get through an hour's throttle.
    assert len(calls) == 2 and calls[-1] == 2_000_000


def test_missing_file_raises_or_is_collected(tmp_path):
    good = tmp_path / "good"
    write(good, 100)
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError):
        hash_files([good, missing])
    errors: dict = {}
    result = hash_files([good, missing], errors=errors)
    assert list(result) == [good] and isinstance(errors[missing], FileNotFoundError)


def test_an_exception_from_progress_cancels_the_run(tmp_path):
    paths = [tmp_path / f"s{i}" for i in range(3)]
    for i, p in enumerate(paths):
        write(p, 500_000, seed=i)

    class Cancelled(Exception):
        pass

    def progress(done, total):
        raise Cancelled()

    with pytest.raises(Cancelled):
        hash_files(paths, workers=2, progress=progress, chunk=4096, interval=0)


def test_defaults():
    assert default_workers() >= 1
    if hasattr(os, "sched_getaffinity"):
        assert default_workers() == len(os.sched_getaffinity(0))
    assert hash_rate(10_000_000, 2.0) == 5.0 and hash_rate(1, 0) == 0.0


def test_per_file_progress_is_keyed_monotonic_and_ends_at_each_size(tmp_path):
    sizes = [0, 5_000, 300_000, 1_000_003]
    paths = [tmp_path / f"s{i}" for i in range(len(sizes))]
    for i, (p, n) in enumerate(zip(paths, sizes)):
        write(p, n, seed=i)
    calls: dict = {}
    totals = []
    active = []

    def per_file(path, done, size):
        active.append(1)
        assert len(active) == 1, "per-file calls overlapped each other or the total's"
        calls.setdefault(path, []).append((done, size))
        active.pop()

    def total(done, of):
        active.append(1)
        assert len(active) == 1
        totals.append(done)
        active.pop()

    hash_files(paths, workers=3, progress=total, chunk=4096, interval=0, file_progress=per_file)
    assert set(calls) == set(paths)             # keyed by the objects passed in, every file
    for path, size in zip(paths, sizes):
        dones = [d for d, _ in calls[path]]
        assert dones == sorted(dones) and calls[path][-1] == (size, size), path
        assert all(of == size for _, of in calls[path])
    assert totals[-1] == sum(sizes)


def test_per_file_progress_is_throttled_per_file(tmp_path):
    paths = [tmp_path / "a", tmp_path / "b"]
    for i, p in enumerate(paths):
        write(p, 1_000_000, seed=i)
    calls = []
    hash_files(paths, workers=2, chunk=4096, interval=3600, file_progress=lambda p, d, s: calls.append((p, d)))
    # ~245 chunks each, an hour's throttle: the first chunk and the end of each file.
    assert sorted(calls) == sorted([(paths[0], 4096), (paths[0], 1_000_000), (paths[1], 4096),
                                    (paths[1], 1_000_000)])
