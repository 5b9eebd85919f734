"""Numbers for people: parameter counts (135M, 1.7B), byte sizes, rates and ETAs, times."""

from __future__ import annotations

import os
import time
from pathlib import Path

KIB, MIB, GIB = 1024, 1024**2, 1024**3


def human_bytes(count: int | float | None) -> str:
    """Binary units, as `du -h` and the memory budget in weightgate.toml (GiB)."""
    if count is None:
        return "?"
    count = float(count)
    if count >= GIB:
        return f"{count / GIB:.1f} GiB"
    if count >= MIB:
        return f"{count / MIB:.1f} MiB"
    if count >= KIB:
        return f"{count / KIB:.1f} KiB"
    return f"{count:.0f} B"


def gib(count: int | float | None) -> str:
    """A size in GiB for a column headed 'GiB': 15.0, 3.2, 0.25, <0.01."""
    if not count:
        return "?"
    value = float(count) / GIB
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.01:
        return f"{value:.2f}"
    return "<0.01"


def human_rate(bytes_per_s: float | None) -> str:
    """MB/s (10^6 bytes per second), the unit core.engine.hashing and disks use."""
    if bytes_per_s is None or bytes_per_s <= 0:
        return "— MB/s"
    mb = bytes_per_s / 1e6
    return f"{mb:,.0f} MB/s" if mb >= 10 else f"{mb:.1f} MB/s"


def human_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} m {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} m"


def when(epoch: float | None) -> str:
    """HH:MM:SS today, MM-DD HH:MM before; '—' for never."""
    if not epoch:
        return "—"
    if time.time() - epoch < 20 * 3600:
        return time.strftime("%H:%M:%S", time.localtime(epoch))
    return time.strftime("%m-%d %H:%M", time.localtime(epoch))


def home_relative(text: str) -> str:
    """`text` with every path under the home directory written from ~, as the header writes the
    workspace: shorter, and the same wherever the workspace lives (the snapshot tests rely on it)."""
    home = str(Path.home())
    return text.replace(home + os.sep, "~" + os.sep) if home not in ("", os.sep) else text
