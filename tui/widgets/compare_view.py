"""Widgets of the Compare screen: the summary, the case table, the two outputs side by side.

They take a core.evaluation.compare.Comparison and know nothing about screens. The word diff is coloured
(removed: struck through in red on A's side; added: bold green on B's side) and, with NO_COLOR
set or the markers toggled on, also spelled out as [-removed-] and {+added+}, so it reads the
same on a monochrome terminal.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Static

from weightgate.core.evaluation.compare import (
    ARROWS,
    CHANGED,
    FOCUS_TAGS,
    IMPROVEMENT,
    REGRESSION,
    format_ci,
    format_p,
)
from weightgate.core.evaluation.word_diff import DELETE, INSERT, side, visible
from weightgate.tui.widgets.status import on_theme_change, rich_style

if TYPE_CHECKING:
    from weightgate.core.evaluation.compare import CaseDiff, Comparison, GroupSummary

STATUS_WORDS = {REGRESSION: "regression", IMPROVEMENT: "improved", CHANGED: "changed", "unchanged": "same"}
STATUS_COLORS = {REGRESSION: "error", IMPROVEMENT: "success", CHANGED: "warning", "unchanged": "muted"}
DELETE_STYLE = "strike $error"
INSERT_STYLE = "bold $success"


def markers_by_default() -> bool:
    """NO_COLOR (no-color.org: set and not empty) turns the [-…-] {+…+} markers on."""
    return bool(os.environ.get("NO_COLOR"))


def diff_content(segments: list[tuple[str, str]], which: str, *, markers: bool) -> Content:
    """One side of a word diff: "a" shows equal + removed words, "b" equal + added words."""
    parts: list[tuple[str, str] | str] = []
    for op, text in side(segments, which):
        text = visible(text)
        if op == DELETE:
            parts.append((f"[-{text}-]" if markers else text, DELETE_STYLE))
        elif op == INSERT:
            parts.append((f"{{+{text}+}}" if markers else text, INSERT_STYLE))
        else:
            parts.append(text)
    return Content.assemble(*parts) if parts else Content.styled("(empty output)", "$text-muted italic")


def _group_line(label: str, s: GroupSummary) -> Content:
    head = (f"{label:<9}", "bold")
    if not s.cases:
        return Content.assemble(head, ("no cases tagged " + label.strip(), "$text-muted"))
    delta_style = "$error" if s.delta < 0 else "$success" if s.delta > 0 else "$text-muted"
    return Content.assemble(
        head, f"{s.cases:>3} cases  pass {s.passed_a:>3} → {s.passed_b:<3} score {s.score_a:.3f} → {s.score_b:.3f} ",
        (f"({s.delta:+.3f})", delta_style), "  ",
        (f"▼{s.regressions}", "$error" if s.regressions else "$text-muted"), " ",
        (f"▲{s.improvements}", "$success" if s.improvements else "$text-muted"), " ",
        (f"≠{s.changed}", "$text-muted"))


def summary_content(comparison: Comparison) -> Content:
    c = comparison
    sig = c.significance
    lines: list[Content] = [
        Content.assemble(("A ", "bold"), c.run_a.label, (" · baseline" if c.run_a.baseline else "", "$text-muted")),
        Content.assemble(("B ", "bold"), c.run_b.label, (" · baseline" if c.run_b.baseline else "", "$text-muted"),
                         (f"   changed from A: {', '.join(c.identity_changes)}" if c.identity_changes else "",
                          "$text-muted")),
    ]
    for warning in c.warnings:
        lines.append(Content.assemble(("⚠ WARNING ", "bold $warning"), (warning, "$warning")))
    lines.append(_group_line("overall", c.overall))
    for tag in FOCUS_TAGS:
        lines.append(_group_line(tag, c.focus[tag]))
    others = [f"{tag} {s.passed_a}→{s.passed_b}/{s.cases}" for tag, s in c.by_tag.items()]
    if others:
        lines.append(Content.assemble(("tags     ", "bold"), ("  ·  ".join(others), "$text-muted")))
    b, i = sig.discordant
    lines.append(Content.assemble(
        ("score Δ  ", "bold"), f"{sig.score_delta:+.3f}  95% CI {format_ci(sig.score_ci)}",
        ("  paired bootstrap", "$text-muted")))
    lines.append(Content.assemble(
        ("tests    ", "bold"), "McNemar ", (format_p(sig.mcnemar_p), "bold"),
        (f" ({b} pass→fail, {i} fail→pass)", "$text-muted"), "   Wilcoxon ",
        (format_p(sig.wilcoxon_p), "bold"), (f" (n={sig.wilcoxon_n})", "$text-muted")))
    return Content("\n").join(lines)


class CompareSummary(Static):
    DEFAULT_CSS = """
    CompareSummary { height: auto; padding: 0 1; margin-bottom: 1; }
    """

    def show(self, comparison: Comparison | None, message: str = "") -> None:
        self.comparison = comparison
        if comparison is None:
            self.update(Content.styled(message or "Pick two runs to compare.", "$text-muted"))
        else:
            self.update(summary_content(comparison))

    @property
    def plain(self) -> str:
        comparison = getattr(self, "comparison", None)
        return summary_content(comparison).plain if comparison is not None else str(self.render())


class CompareCaseTable(DataTable):
    """One row per paired case in compare order; the row key is the case id."""

    DEFAULT_CSS = """
    CompareCaseTable { height: 1fr; min-height: 5; overflow-x: hidden; }
    """

    class CaseSelected(Message):
        def __init__(self, case_id: str | None) -> None:
            super().__init__()
            self.case_id = case_id

    COLUMNS = (("status", "Status", 13), ("id", "Case", 18), ("tags", "Tags", 18), ("score", "Score A → B", 16))

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.cases: list[CaseDiff] = []

    def on_mount(self) -> None:
        for key, label, width in self.COLUMNS:
            self.add_column(label, key=key, width=width)
        on_theme_change(self, lambda: self.show(self.cases, keep=True))

    def _status_cell(self, case: CaseDiff) -> Text:
        variables = self.app.theme_variables if self.is_mounted else {}
        label = f"{ARROWS[case.status]} {STATUS_WORDS[case.status]}"
        return Text(label, style=rich_style(STATUS_COLORS[case.status], variables, bold=case.status == REGRESSION),
                    no_wrap=True)

    def show(self, cases: list[CaseDiff], *, keep: bool = False) -> None:
        selected = self.selected_id if keep else None
        self.cases = list(cases)
        self.clear()
        for case in self.cases:
            self.add_row(self._status_cell(case), case.id, ", ".join(case.tags),
                         f"{case.score_a:.2f} → {case.score_b:.2f}", key=case.id)
        if self.cases:
            ids = [c.id for c in self.cases]
            self.move_cursor(row=ids.index(selected) if selected in ids else 0)
        self.post_message(self.CaseSelected(self.selected_id))

    @property
    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - cursor outside the rows
            return None

    def row_ids(self) -> list[str]:
        return [self.coordinate_to_cell_key((row, 0)).row_key.value for row in range(self.row_count)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self:
            self.post_message(self.CaseSelected(event.row_key.value if event.row_key else None))


class OutputPane(VerticalScroll):
    DEFAULT_CSS = """
    OutputPane {
        width: 1fr; height: auto; max-height: 14; border: round $panel-lighten-2; padding: 0 1;
        border-title-color: $text; border-title-style: bold;
    }
    OutputPane > Static { width: 1fr; }
    """

    def __init__(self, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = title
        self.can_focus = False

    def compose(self):
        yield Static("", classes="output")

    def show(self, content: Content, title: str | None = None) -> None:
        if title is not None:
            self.border_title = title
        self.query_one(".output", Static).update(content)


class SideBySide(Vertical):
    """The selected case: its prompt and expected answer, then A's output with the removed
    words and B's with the added words, side by side."""

    DEFAULT_CSS = """
    SideBySide { height: auto; max-height: 50%; }
    SideBySide #case-head { height: auto; max-height: 4; padding: 0 1; }
    SideBySide #outputs { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.case: CaseDiff | None = None
        self.markers = markers_by_default()
        self.labels = ("A", "B")

    def compose(self):
        yield Static("", id="case-head")
        with Horizontal(id="outputs"):
            yield OutputPane("A", id="output-a")
            yield OutputPane("B", id="output-b")

    def show(self, case: CaseDiff | None, labels: tuple[str, str] | None = None) -> None:
        self.case = case
        if labels is not None:
            self.labels = labels
        head = self.query_one("#case-head", Static)
        pane_a, pane_b = self.query_one("#output-a", OutputPane), self.query_one("#output-b", OutputPane)
        if case is None:
            head.update("")
            pane_a.show(Content(""), f"A · {self.labels[0]}")
            pane_b.show(Content(""), f"B · {self.labels[1]}")
            return
        head.update(self.head_content())
        pane_a.show(self.side_content("a"),
                    f"A · {self.labels[0]} · {case.score_a:.2f} {'pass' if case.passed_a else 'fail'}")
        pane_b.show(self.side_content("b"),
                    f"B · {self.labels[1]} · {case.score_b:.2f} {'pass' if case.passed_b else 'fail'}")

    def head_content(self) -> Content:
        case = self.case
        if case is None:
            return Content("")
        return Content.assemble(
            (f"{ARROWS[case.status]} {STATUS_WORDS[case.status]} ", "bold"), (case.id, "bold"),
            (f"  [{', '.join(case.tags)}]" if case.tags else "", "$text-muted"), "\n",
            ("prompt   ", "bold $text-muted"), visible(case.prompt.replace("\n", " ⏎ ")), "\n",
            ("expected ", "bold $text-muted"), expected_text(case.expected))

    def side_content(self, which: str) -> Content:
        if self.case is None:
            return Content("")
        return diff_content(self.case.segments, which, markers=self.markers)

    def toggle_markers(self) -> bool:
        self.markers = not self.markers
        self.show(self.case)
        return self.markers

    def plain(self, which: str) -> str:
        return self.side_content(which).plain


def expected_text(expected) -> str:
    """A case's expected answers on one line (several: joined with |)."""
    if isinstance(expected, list):
        return visible(" | ".join(str(x) for x in expected))
    return "" if expected is None else visible(str(expected))


def run_option(run) -> tuple[str, str]:
    score = run.summary.get("score")
    score_text = f" · {score:.3f}" if isinstance(score, (int, float)) else ""
    flags = " · baseline" if run.baseline else ""
    status = "" if run.status == "complete" else f" · {run.status}"
    name = f" {run.name}" if run.name and run.name != run.id else ""
    return f"{run.id}{name} · {run.set}{score_text}{flags}{status}", run.id
