"""The versions of what is installed, recorded beside runs and in release manifests."""

from __future__ import annotations

import platform

import weightgate


def installed_version(name: str) -> str:
    """A distribution's version, or "absent"."""
    from importlib.metadata import (  # lazy: importlib.metadata costs ~15 ms; only recording needs it
        PackageNotFoundError,
        version,
    )

    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def versions(names) -> dict[str, str]:
    """{"weightgate": ..., "python": ..., name: version for each name}."""
    return {"weightgate": weightgate.__version__, "python": platform.python_version(),
            **{name: installed_version(name) for name in names}}
