"""The Memory screen driven with Pilot on a workspace with the tiny model locked: the bars come
from the real estimator, editing the context re-draws them at once, l adds training, f records
the choice, and the measured table shows memory.measured's evidence."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pilot import started, wait_for
from textual.color import Color

from weightgate.core.engine.evidence import latest_by_item, read_evidence, record_result
from weightgate.core.engine.workspace import Workspace, init_workspace
from weightgate.screens.memory.memory_panel import HEADROOM, PARTS
from weightgate.tui.app import WeightgateApp

SIZE = (130, 46)


@pytest.fixture
def ws(tmp_path: Path, tiny_model_dir: Path) -> Workspace:
    from weightgate.core.weights.local_source import lock_local_source

    ws = init_workspace(tmp_path / "ws")

    def change(doc):
        doc["requirements"]["context_length"] = 512
        doc["requirements"]["ceilings"]["memory_budget_gib"] = 1
    ws.update_config(change)
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    lock_local_source(ws, str(model))
    return ws


async def open_memory(pilot):
    app = await started(pilot)
    await pilot.press("3")
    await wait_for(pilot, lambda: app.screen.TARGET == "phase-3", what="phase 3")
    screen = app.screen
    await wait_for(pilot, lambda: screen.panel.report is not None, what="first estimate")
    return app, screen


def bars_text(screen) -> str:
    return str(screen.panel.query_one("#mem-bars").render())


async def test_changing_the_context_redraws_the_bars(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        app, screen = await open_memory(pilot)
        panel = screen.panel
        assert panel.report.context == 512
        before = bars_text(screen)
        assert "fp32 native" in before and "nf4" in before and "budget 1.0 GiB" in before
        kv_before = panel.report.estimate_for("fp32").breakdown["kv_cache"]

        context = panel.query_one("#mem-context")
        context.focus()
        await pilot.press("end", *["backspace"] * 3, *"1000000")  # a long context: the KV cache dominates
        await wait_for(pilot, lambda: panel.report.context == 1000000, what="re-estimate")
        after = bars_text(screen)
        assert after != before
        assert panel.report.estimate_for("fp32").breakdown["kv_cache"] == kv_before * 1000000 // 512
        assert "does not fit" in after                     # a million tokens do not fit 1 GiB

        await pilot.press(*["backspace"] * 7)                 # empty: a clear message, no crash
        await wait_for(pilot, lambda: "positive whole numbers" in bars_text(screen), what="input hint")

        await pilot.press(*"512")
        await wait_for(pilot, lambda: panel.report.context == 512 and "positive" not in bars_text(screen),
                       what="back to 512")
        screen.query_one("ItemTable").focus()
        await pilot.press("l")                                # LoRA training estimate joins the bars
        await wait_for(pilot, lambda: panel.report.training, what="training estimate")
        assert "LoRA fp32" in bars_text(screen) and "AdamW" in bars_text(screen)
        assert "nf4" not in [e.precision for e in panel.report.training]    # a 4-bit base is QLoRA's
        await pilot.press("l")
        await wait_for(pilot, lambda: panel.report.train_setup.method == "qlora", what="QLoRA estimate")
        assert [e.precision for e in panel.report.training] == ["nf4"]
        assert "QLoRA nf4" in bars_text(screen) and "QLoRA training:" in bars_text(screen)


async def test_every_precision_is_one_key_away(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        app, screen = await open_memory(pilot)
        panel = screen.panel
        shown = lambda: [e.precision for e in panel.report.inference]  # noqa: E731
        assert shown() == ["fp32", "bf16", "int8", "nf4"]        # the main ones: readable
        await pilot.press("e")
        await wait_for(pilot, lambda: "fp16" in shown(), what="all precisions")
        assert shown() == ["fp32", "bf16", "fp16", "int8", "nf4", "fp4"]
        lines = bars_text(screen).splitlines()
        for precision in shown():
            assert any(line.lstrip("▶ ").startswith(precision) for line in lines), precision
        assert "precisions: all (e)" in str(panel.query_one("#mem-train").render())
        assert panel.report.choice.precision == "fp32"           # the choice does not change
        await pilot.press("e")
        await wait_for(pilot, lambda: "fp16" not in shown(), what="main precisions again")


async def test_fit_with_the_training_estimate_records_the_training_choice(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        app, screen = await open_memory(pilot)
        screen.query_one("ItemTable").focus()
        await pilot.press("l", "l")                          # QLoRA
        await wait_for(pilot, lambda: screen.panel.train == "qlora", what="QLoRA")
        await pilot.press("f")
        await wait_for(pilot, lambda: (ws.config().get("decisions") or {}).get("training_precision"),
                       what="training decision")
        decisions = ws.config()["decisions"]
        assert (decisions["precision"], decisions["training_precision"], decisions["training_method"]) == (
            "fp32", "nf4", "qlora")
        assert "QLoRA" in decisions["training_reason"]


async def test_fit_records_the_choice_and_measured_rows_show(ws: Workspace) -> None:
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        app, screen = await open_memory(pilot)
        # Nothing decided yet: measuring and the quantized check are dimmed.
        await wait_for(pilot, lambda: screen.active_bindings["m"].enabled is False, what="m dimmed")
        assert screen.active_bindings["k"].enabled is False
        assert "Not measured yet" in str(screen.panel.query_one("#mem-measured").render())

        await pilot.press("f")
        await wait_for(pilot, lambda: (ws.config().get("decisions") or {}).get("precision"), what="decision")
        assert ws.config()["decisions"]["precision"] == "fp32"
        latest = latest_by_item(read_evidence(ws))
        assert latest["memory.fits"].status == "pass" and latest["memory.largest_precision"].status == "pass"
        await wait_for(pilot, lambda: screen.active_bindings["m"].enabled, what="m enabled")

        rows = {"weights": {"estimate": 599808, "measured": 599808, "error": 0.0},
                "train": {"estimate": 40 * 2**20, "measured": 60 * 2**20, "error": -1 / 3}}
        record_result(ws, "memory.measured", "pass", {"comparison": {"precision": "fp32", "device": "cpu",
                                                                      "rows": rows}}, note="from a test")
        app.refresh_report()
        measured = screen.panel.query_one("#mem-measured")
        await wait_for(pilot, lambda: "Measured vs estimated" in str(measured.render()), what="measured table")
        text = str(measured.render())
        assert "weights" in text and "+0.0%" in text and "-33.3%" in text
        assert "+ means the estimate is above what was measured" in text   # the sign explained


def painted_lines(app: WeightgateApp, widget) -> list[list[tuple[str, Color]]]:
    """(character, foreground) per cell of `widget` as the terminal receives it: the compositor's
    strips through the app's filters (under NO_COLOR, Textual's Monochrome greys every colour)."""
    region = widget.content_region
    lines = []
    for strip in app.screen._compositor.render_strips()[region.y:region.bottom]:
        for line_filter in app._filters:
            strip = strip.apply_filter(line_filter, app.background_colors[1])
        cells = []
        for segment in strip.crop(region.x, region.right):
            color = Color.from_rich_color(segment.style.color) if segment.style and segment.style.color else None
            cells += [(char, color) for char in segment.text]
        lines.append(cells)
    return lines


async def test_under_no_color_the_bar_parts_differ_by_glyph_and_the_legend_names_them(
        ws: Workspace, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = WeightgateApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        app, screen = await open_memory(pilot)
        panel = screen.panel
        await pilot.press("l")                      # LoRA: adds the adapter and optimizer parts
        panel.query_one("#mem-context").focus()
        # 64k tokens, batch 4: the KV cache and activations get cells next to the weights and overhead
        await pilot.press("end", *["backspace"] * 3, *"65536", "tab", "end", "backspace", "4")
        await wait_for(pilot, lambda: panel.report.training and panel.report.context == 65536
                       and panel.report.batch == 4, what="the training estimate at 64k x 4")
        await pilot.pause(0.1)
        assert app.no_color
        lines = painted_lines(app, screen.panel.query_one("#mem-bars"))
        texts = ["".join(char for char, _ in cells) for cells in lines]
        row = next(i for i, text in enumerate(texts) if text.lstrip("▶ ").startswith("LoRA "))
        bar = [(char, color) for char, color in lines[row] if char in {p.glyph for p in (*PARTS, HEADROOM)}]
        colours = {color for _, color in bar if color is not None}
        assert all(c.r == c.g == c.b for c in colours), f"NO_COLOR still paints colours: {colours}"
        assert len({part.glyph for part in (*PARTS, HEADROOM)}) == len(PARTS) + 1, "two parts share a glyph"
        glyphs = "".join(char for char, _ in bar)
        shown_parts = [part for part in (*PARTS, HEADROOM) if part.glyph in glyphs]
        estimate = screen.panel.report.training[0]
        assert all(estimate.breakdown.get(part.key) for part in shown_parts if part is not HEADROOM)
        assert len(shown_parts) >= 3, f"too few parts to tell apart in {texts[row]!r}"
        legend = next(text for text in texts if "headroom" in text)
        for part in shown_parts:
            assert f"{part.glyph * 2} {part.name}" in legend, f"{part.name} missing from the legend: {legend!r}"
