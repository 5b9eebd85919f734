"""How statuses look: an icon, a word and a theme colour for every item status and phase state.

The word is always shown next to the icon, so nothing depends on colour (NO_COLOR, monochrome
terminals, colour-blind users). Colours are theme variable names, resolved at render time.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.content import Content


@dataclass(frozen=True)
class Look:
    icon: str
    word: str
    color: str  # a theme variable: success, error, warning, primary, secondary, accent, muted

    @property
    def label(self) -> str:
        return f"{self.icon} {self.word}"

    def content(self, *, bold: bool = False) -> Content:
        """For Static / OptionList: the colour is a theme variable, so a theme switch applies."""
        color = "$text-muted" if self.color == "muted" else f"${self.color}"
        style = f"{'bold ' if bold else ''}{color}"
        return Content.styled(self.label, style)

    def text(self, variables: dict[str, str], *, bold: bool = False) -> Text:
        """For DataTable cells (Rich text): the colour is looked up in the current theme."""
        return Text(self.label, style=rich_style(self.color, variables, bold=bold), no_wrap=True)


def rich_style(color: str, variables: dict[str, str], *, bold: bool = False) -> Style:
    if color == "muted":
        return Style(dim=True, bold=bold)
    value = variables.get(color)
    return Style(color=value, bold=bold) if value else Style(bold=bold)


# Item statuses (core.engine.status / core.engine.evidence): pass, fail, stale, todo, waived, not-needed.
ITEM_LOOKS: dict[str, Look] = {
    "pass": Look("✓", "pass", "success"),
    "fail": Look("✗", "fail", "error"),
    "stale": Look("↻", "stale", "warning"),
    "todo": Look("○", "todo", "primary"),
    "waived": Look("≈", "waived", "secondary"),
    "not-needed": Look("–", "not needed", "muted"),
}

# Phase states (core.engine.status): passed, open, stale, locked, not-needed.
PHASE_LOOKS: dict[str, Look] = {
    "passed": Look("✓", "passed", "success"),
    "open": Look("●", "open", "primary"),
    "stale": Look("↻", "stale", "warning"),
    "locked": Look("⊘", "locked", "error"),
    "not-needed": Look("–", "not needed", "muted"),
}

SEVERITY_LOOKS: dict[str, Look] = {
    "critical": Look("!", "critical", "accent"),
    "recommended": Look("·", "recommended", "foreground"),
    "optional": Look(" ", "optional", "muted"),
}

JOB_LOOKS: dict[str, Look] = {
    "queued": Look("…", "queued", "muted"),
    "running": Look("▶", "running", "primary"),
    "succeeded": Look("✓", "succeeded", "success"),
    "failed": Look("✗", "failed", "error"),
    "cancelled": Look("■", "cancelled", "warning"),
    "crashed": Look("✗", "crashed", "error"),
    "unknown": Look("?", "unknown", "muted"),
}

_FALLBACK = Look("?", "unknown", "muted")


def item_look(status: str) -> Look:
    return ITEM_LOOKS.get(status, Look("?", status, "muted"))


def phase_look(state: str) -> Look:
    return PHASE_LOOKS.get(state, Look("?", state, "muted"))


def severity_look(severity: str) -> Look:
    return SEVERITY_LOOKS.get(severity, _FALLBACK)


def job_look(state: str) -> Look:
    return JOB_LOOKS.get(state, Look("?", state, "muted"))
