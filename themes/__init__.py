"""weightgate's look: two Textual themes (dark and light) and the app stylesheet.

The themes only set colours; every status is also spelled out with a word and an icon, so the
UI stays readable with NO_COLOR=1 (Textual then drops colours) or on a monochrome terminal.
"""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

STYLESHEET: Path = Path(__file__).with_name("app.tcss")

DARK = Theme(
    name="weightgate-dark",
    primary="#5FAFFF",
    secondary="#AF87FF",
    accent="#FFAF5F",
    warning="#E5C07B",
    error="#F0646E",
    success="#7FD18B",
    foreground="#D3D7DE",
    background="#12141A",
    surface="#1A1D24",
    panel="#252A33",
    dark=True,
    variables={
        "footer-key-foreground": "#5FAFFF",
        "block-cursor-text-style": "bold",
        "input-selection-background": "#5FAFFF 35%",
    },
)

LIGHT = Theme(
    name="weightgate-light",
    primary="#0B5CAD",
    secondary="#6A3FB5",
    accent="#A34E00",
    warning="#8A5A00",
    error="#B42330",
    success="#1A7F37",
    foreground="#1F2328",
    background="#F6F7F9",
    surface="#FFFFFF",
    panel="#E6E9EE",
    dark=False,
    variables={
        "footer-key-foreground": "#0B5CAD",
        "block-cursor-text-style": "bold",
        "input-selection-background": "#0B5CAD 25%",
    },
)

THEMES: tuple[Theme, ...] = (DARK, LIGHT)
THEMES_BY_NAME: dict[str, Theme] = {theme.name: theme for theme in THEMES}
DEFAULT_THEME = DARK.name


def other_theme(name: str) -> str:
    """The theme a toggle switches to: light from dark (or any dark theme), dark otherwise."""
    return LIGHT.name if name != LIGHT.name else DARK.name
