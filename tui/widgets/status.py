"""How statuses look: an icon, a word and a theme colour for every item status and phase state.

The word is always shown next to the icon, so nothing depends on colour (NO_COLOR, monochrome
terminals, colour-blind users). Colours are theme variable names, resolved at render time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from rich.style import Style
from rich.text import Text
from textual.content import Content

if TYPE_CHECKING:
    from textual.widget import Widget

# The theme variable (themes/__init__.py) for muted words, "not needed" and the like: a solid
# colour chosen for >= 4.5:1 on every background, where Rich's dim left the contrast to the terminal.
MUTED_VARIABLE = "status-muted"


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
        color = f"${MUTED_VARIABLE}" if self.color == "muted" else f"${self.color}"
        style = f"{'bold ' if bold else ''}{color}"
        return Content.styled(self.label, style)

    def text(self, variables: dict[str, str], *, bold: bool = False) -> Text:
        """For DataTable cells (Rich text): the colour is looked up in the current theme."""
        return Text(self.label, style=rich_style(self.color, variables, bold=bold), no_wrap=True)


def rich_style(color: str, variables: dict[str, str], *, bold: bool = False) -> Style:
    if color == "muted":
        value = variables.get(MUTED_VARIABLE)
        return Style(color=value, bold=bold) if value else Style(dim=True, bold=bold)
    value = variables.get(color)
    return Style(color=value, bold=bold) if value else Style(bold=bold)


def on_theme_change(widget: Widget, repaint: Callable[[], object]) -> None:
    """Call `repaint` after the app switches theme, once `app.theme_variables` hold the new
    theme's colours. (A watch on `app.theme` runs before Textual recomputes them, so Rich cells
    rebuilt there kept the old theme's colours: dark-theme greens on the light background.)"""
    widget.app.theme_changed_signal.subscribe(widget, lambda _theme: repaint())


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
