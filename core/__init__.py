"""weightgate's headless engine. Never imports textual or rich (a test proves it)."""

__version__ = "0.1.0"
