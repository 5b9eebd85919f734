"""Stable digests of files and of JSON-able values (the fingerprints' building block)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from weightgate.core.engine.hashing import sha256_file

ABSENT = "absent"


def digest_value(value: Any) -> str:
    """sha256 of a canonical JSON form: key order and whitespace never change the digest."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def digest_file(path: Path) -> str:
    return "sha256:" + sha256_file(path) if path.is_file() else ABSENT


def short(digest: str, length: int = 12) -> str:
    return digest.split(":", 1)[-1][:length]
