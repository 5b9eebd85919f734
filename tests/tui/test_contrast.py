"""Status colours are readable in every selectable theme: WCAG 2 contrast >= 4.5:1 (AA for
normal text) between each status colour and each background it is drawn on.

The colours are read from the running app, never copied here: the theme variables the app
resolved after switching theme, the cursor and highlight tints from its stylesheet, and the
foreground / background pairs of the status words it actually painted on the screen.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import phase1_ready
from pilot import started, wait_for
from textual.color import Color

from weightgate.themes import THEMES_BY_NAME
from weightgate.tui.app import WeightgateApp
from weightgate.tui.widgets.items import ItemTable
from weightgate.tui.widgets.sidebar import PhaseSidebar
from weightgate.tui.widgets.status import ITEM_LOOKS, JOB_LOOKS, MUTED_VARIABLE, PHASE_LOOKS, SEVERITY_LOOKS, rich_style

SIZE = (160, 48)
AA = 4.5
STATUS_LOOKS = {**{f"item {k}": v for k, v in ITEM_LOOKS.items()},
                **{f"phase {k}": v for k, v in PHASE_LOOKS.items()},
                **{f"job {k}": v for k, v in JOB_LOOKS.items()},
                **{f"severity {k}": v for k, v in SEVERITY_LOOKS.items()}}
STATUS_LABELS = {look.label.strip() for look in STATUS_LOOKS.values() if look.label.strip()}


def relative_luminance(color: Color) -> float:
    """WCAG 2.x relative luminance of an sRGB colour."""
    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
    return 0.2126 * linear(color.r) + 0.7152 * linear(color.g) + 0.0722 * linear(color.b)


def contrast(foreground: Color, background: Color) -> float:
    lighter, darker = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_matches_the_wcag_reference_values() -> None:
    assert contrast(Color(0, 0, 0), Color(255, 255, 255)) == pytest.approx(21.0)
    assert contrast(Color(119, 119, 119), Color(255, 255, 255)) == pytest.approx(4.48, abs=0.01)
    assert contrast(Color(18, 20, 26), Color(18, 20, 26)) == pytest.approx(1.0)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """Phase 1's requirement items pass, the rest are todo or locked: pass, todo, open and
    locked all appear on the overview and in phase 1's item table."""
    return phase1_ready(tmp_path / "ws").root


async def switch_theme(pilot, name: str) -> WeightgateApp:
    app = pilot.app
    app.theme = name
    # theme_variables follow on the next refresh of the CSS; status-muted differs between our themes
    await wait_for(pilot, lambda: app.theme_variables.get(MUTED_VARIABLE) == app.current_theme.variables[MUTED_VARIABLE],
                   what=f"{name}'s variables")
    await pilot.pause(0.2)  # the tables repaint on theme_changed_signal
    return app


def tinted(widget, component: str, under: Color) -> Color:
    """The opaque colour of `component`'s background (e.g. a cursor tint) laid over `under`."""
    return under + widget.get_component_styles(component).background


async def backgrounds(pilot) -> dict[str, Color]:
    """Every background a status is drawn on in this theme: the three surfaces and the focused and
    unfocused cursor / highlight tints of the item table and the sidebar, as the stylesheet resolves them."""
    app = pilot.app
    variables = app.theme_variables
    found = {name: Color.parse(variables[name]) for name in ("background", "surface", "panel")}
    await pilot.press("1")
    await wait_for(pilot, lambda: app.screen.query(ItemTable), what="phase 1's item table")
    table = app.screen.query_one(ItemTable)
    sidebar = app.screen.query_one(PhaseSidebar)
    for focused in (table, sidebar):
        focused.focus()
        await pilot.pause()
        state = "focused" if focused is table else "unfocused"
        found[f"item cursor ({state})"] = tinted(table, "datatable--cursor", table.background_colors[1])
        state = "focused" if focused is sidebar else "unfocused"
        found[f"sidebar highlight ({state})"] = tinted(sidebar, "option-list--option-highlighted",
                                                       sidebar.background_colors[1])
    return found


@pytest.mark.parametrize("theme", sorted(THEMES_BY_NAME))
async def test_every_status_colour_reads_on_every_background(workspace: Path, theme: str) -> None:
    app = WeightgateApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await switch_theme(pilot, theme)
        surfaces = await backgrounds(pilot)
        failures = []
        for name, look in STATUS_LOOKS.items():
            style = rich_style(look.color, app.theme_variables)
            assert style.color is not None, f"{name}: {look.color!r} resolves to no colour in {theme}"
            colour = Color.from_rich_color(style.color)
            for where, background in surfaces.items():
                ratio = contrast(colour, background)
                if ratio < AA:
                    failures.append(f"{name} {colour.hex} on {where} {background.hex}: {ratio:.2f}:1")
        assert not failures, f"{theme}: below {AA}:1\n" + "\n".join(failures)


def painted_statuses(app: WeightgateApp) -> list[tuple[str, Color, Color]]:
    """(text, foreground, background) of every status word on the screen as the compositor painted it."""
    found = []
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            text, style = segment.text.strip(), segment.style
            if style is None or not any(label in text for label in STATUS_LABELS):
                continue
            assert style.color is not None and style.bgcolor is not None, f"{text!r} has no explicit colours"
            found.append((text, Color.from_rich_color(style.color), Color.from_rich_color(style.bgcolor)))
    return found


@pytest.mark.parametrize("theme", sorted(THEMES_BY_NAME))
async def test_status_words_on_screen_read_after_a_theme_switch(workspace: Path, theme: str) -> None:
    """Switching theme repaints every status (the item table kept the dark theme's greens on the
    light background: 1.6:1) and what is painted meets 4.5:1, the cursor row included."""
    other = next(name for name in THEMES_BY_NAME if name != theme)
    app = WeightgateApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await switch_theme(pilot, other)
        await switch_theme(pilot, theme)
        seen: list[tuple[str, Color, Color]] = painted_statuses(app)
        await pilot.press("1")
        await wait_for(pilot, lambda: app.screen.query(ItemTable), what="phase 1's item table")
        await pilot.pause(0.2)
        seen += painted_statuses(app)
        words = {text for text, _, _ in seen}
        for label in ("✓ pass", "○ todo", "● open", "⊘ locked"):
            assert any(label in text for text in words), f"{label!r} not painted; saw {sorted(words)}"
        failures = [f"{text!r} {fg.hex} on {bg.hex}: {contrast(fg, bg):.2f}:1"
                    for text, fg, bg in seen if contrast(fg, bg) < AA]
        assert not failures, f"{theme}: below {AA}:1\n" + "\n".join(failures)


async def test_only_the_checked_themes_are_selectable(workspace: Path) -> None:
    app = WeightgateApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert set(app.available_themes) == set(THEMES_BY_NAME)
