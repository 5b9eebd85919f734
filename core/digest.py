"""Stable digests of files and of JSON-able values (the fingerprints' building block)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ABSENT = "absent"


def digest_value(value: Any) -> str:
    """sha256 of a canonical JSON form: key order and whitespace never change the digest."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def digest_file(path: Path, chunk_size: int = 1 << 20) -> str:
    if not path.is_file():
        return ABSENT
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def short(digest: str, length: int = 12) -> str:
    return digest.split(":", 1)[-1][:length]
