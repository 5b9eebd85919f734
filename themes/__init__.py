"""weightgate's look: two Textual themes (dark and light) and the app stylesheet.

The themes only set colours; every status is also spelled out with a word and an icon, so the
UI stays readable with NO_COLOR=1 (Textual then drops colours) or on a monochrome terminal.

Every status colour (success, error, warning, primary, secondary, accent, foreground and
status-muted) reads at >= 4.5:1 (WCAG AA) on each background it is drawn on: background,
surface, panel, and the cursor and highlight tints app.tcss lays over them (primary at up to
20%). tests/tui/test_contrast.py measures it in the running app; change a colour here or a tint
there and that test says whether it still holds. Only these two themes are selectable
(tui/app.py unregisters Textual's built-in ones, which were never checked).
"""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

STYLESHEET: Path = Path(__file__).with_name("app.tcss")

DARK = Theme(
    name="weightgate-dark",
    primary="#6CB6FF",
    secondary="#C2A3FF",
    accent="#FFAF5F",
    warning="#E5C07B",
    error="#FF8A92",
    success="#7FD18B",
    foreground="#D3D7DE",
    background="#12141A",
    surface="#1A1D24",
    panel="#252A33",
    dark=True,
    variables={
        "footer-key-foreground": "#6CB6FF",
        "status-muted": "#A3AAB5",
        "block-cursor-text-style": "bold",
        "input-selection-background": "#6CB6FF 35%",
    },
)

LIGHT = Theme(
    name="weightgate-light",
    primary="#0A529B",
    secondary="#5B34A0",
    accent="#8A4200",
    warning="#744B00",
    error="#A11D2A",
    success="#0F5A26",
    foreground="#1F2328",
    background="#F6F7F9",
    surface="#FFFFFF",
    panel="#E6E9EE",
    dark=False,
    variables={
        "footer-key-foreground": "#0A529B",
        "status-muted": "#4A5059",
        "block-cursor-text-style": "bold",
        "input-selection-background": "#0A529B 25%",
    },
)

THEMES: tuple[Theme, ...] = (DARK, LIGHT)  # the only selectable themes (see the module docstring)
THEMES_BY_NAME: dict[str, Theme] = {theme.name: theme for theme in THEMES}
DEFAULT_THEME = DARK.name


def other_theme(name: str) -> str:
    """The theme a toggle switches to: light from dark (or any dark theme), dark otherwise."""
    return LIGHT.name if name != LIGHT.name else DARK.name
