"""Compare: two eval runs side by side, regressions first.

Pick run A and run B (default: the baseline of the newest run's set against the newest run);
the summary shows overall and per-tag numbers (hard and edge apart), the significance tests and
the eval-set digest warning; the table lists the cases in compare order (regressions, then
improvements, then changed outputs, then unchanged); the panes below show the selected case's
two outputs with a word-level diff. Runs are read in a thread worker: nothing here blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Select, Static

from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.compare import compare_runs, default_pair
from weightgate.core.evaluation.runs import list_runs
from weightgate.tui.widgets.base_screen import WorkspaceScreen
from weightgate.tui.widgets.compare_view import CompareCaseTable, CompareSummary, SideBySide, run_option

if TYPE_CHECKING:
    from weightgate.core.evaluation.compare import Comparison


class CompareScreen(WorkspaceScreen):
    TARGET = "compare"
    HELP = ("Compare two eval runs: regressions (pass → fail) first, then improvements, then changed outputs. "
            "Pick A and B at the top (tab / shift+tab, enter opens a list); ↑ ↓ select a case to see both outputs "
            "with the word diff: removed words struck through in A, added words in bold in B, and with m (or "
            "NO_COLOR) as [-removed-] {+added+}. x swaps A and B; R starts a blind review of these two runs.")

    ESCAPE_GOES_BACK = True
    BINDINGS = [
        Binding("escape", "leave", "Back", tooltip="Back to the screen you came from"),
        Binding("x", "swap", "Swap A/B", tooltip="Compare B against A instead"),
        Binding("m", "toggle_markers", "Diff markers", tooltip="Show [-removed-] {+added+} markers (no colour needed)"),
        Binding("R", "review_these", "Blind review", tooltip="Start a blind A/B review of these two runs"),
        Binding("ctrl+r", "reload", "Reload runs", show=False),
    ]

    DEFAULT_CSS = """
    CompareScreen #pickers { height: auto; margin-bottom: 1; }
    CompareScreen #pickers Select { width: 1fr; }
    CompareScreen #pickers .picker-label { width: auto; padding: 1 1 0 1; text-style: bold; }
    """

    AUTO_FOCUS = "CompareCaseTable"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.comparison: Comparison | None = None
        self.runs: list = []
        self._pair: tuple[str | None, str | None] = (None, None)

    def compose_main(self) -> ComposeResult:
        with Horizontal(id="pickers"):
            yield Static("A", classes="picker-label")
            yield Select([], prompt="run A", id="run-a", allow_blank=True)
            yield Static("B", classes="picker-label")
            yield Select([], prompt="run B", id="run-b", allow_blank=True)
        yield CompareSummary(id="compare-summary")
        yield CompareCaseTable(id="compare-cases")
        yield SideBySide(id="side-by-side")

    # --- parts ------------------------------------------------------------------------------

    @property
    def summary(self) -> CompareSummary:
        return self.query_one(CompareSummary)

    @property
    def table(self) -> CompareCaseTable:
        return self.query_one(CompareCaseTable)

    @property
    def side_by_side(self) -> SideBySide:
        return self.query_one(SideBySide)

    @property
    def pair(self) -> tuple[str | None, str | None]:
        return self._pair

    def _workspace(self):
        return getattr(self.app, "workspace", None) or Workspace(self.app.workspace_root)

    # --- loading ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        super().on_mount()
        self.summary.show(None, "Reading the runs…")
        self.side_by_side.show(None)
        self.load_runs()

    def reopened(self) -> None:
        """App.goto calls this when the screen is shown again: new runs may have appeared."""
        self.load_runs(keep=True)

    def action_reload(self) -> None:
        self.load_runs(keep=True)

    def show_pair(self, run_a: str, run_b: str) -> None:
        """Compare these two run ids (e.g. from the CLI or another screen)."""
        self._pair = (run_a, run_b)
        self.load_runs(keep=True)

    @work(thread=True, exclusive=True, group="compare-runs", exit_on_error=False)
    def load_runs(self, keep: bool = False) -> None:
        request = getattr(self.app, "compare_request", None)   # another screen asked for a pair
        if request:
            self.app.compare_request = None
            self._pair, keep = tuple(request), True
        ws = self._workspace()
        try:
            runs = list_runs(ws)
            default = default_pair(ws)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            self.app.call_from_thread(self.summary.show, None, f"Cannot read the runs: {exc}")
            return
        ids = {run.id for run in runs}
        a, b = self._pair if keep else (None, None)
        if a not in ids or b not in ids:
            a, b = (default[0].id if default[0] else None), (default[1].id if default[1] else None)
        self.app.call_from_thread(self._show_runs, runs, a, b)

    def _show_runs(self, runs: list, a: str | None, b: str | None) -> None:
        self.runs = runs
        options = [run_option(run) for run in runs]
        self._pair = (a, b)  # first: the Changed events of the pickers then match it and are ignored
        for selector, value in (("#run-a", a), ("#run-b", b)):
            select = self.query_one(selector, Select)
            select.set_options(options)
            select.value = value if value is not None else Select.NULL
        if len(runs) < 2 or a is None or b is None:
            self.comparison = None
            self.summary.show(None, "Compare needs two eval runs: run `weightgate eval run` (again after a change)."
                              if len(runs) < 2 else "Pick run A and run B above.")
            self.table.show([])
            return
        self.compare(a, b)

    def on_select_changed(self, event: Select.Changed) -> None:
        a = self.query_one("#run-a", Select).value
        b = self.query_one("#run-b", Select).value
        a = a if isinstance(a, str) else None
        b = b if isinstance(b, str) else None
        if (a, b) == self._pair:
            return
        self._pair = (a, b)
        if a and b:
            self.compare(a, b)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def compare(self, a: str, b: str) -> None:
        try:
            comparison = compare_runs(a, b, ws=self._workspace())
        except Exception as exc:  # noqa: BLE001 - an unreadable run is shown, not raised
            self.app.call_from_thread(self.summary.show, None, f"Cannot compare {a} and {b}: {exc}")
            return
        self.app.call_from_thread(self._show_comparison, comparison)

    def _show_comparison(self, comparison: Comparison) -> None:
        if (comparison.run_a.id, comparison.run_b.id) != self._pair:
            return  # an older request finished late: the user has picked other runs since
        same = self.comparison is not None and (self.comparison.run_a.id, self.comparison.run_b.id) == (
            comparison.run_a.id, comparison.run_b.id)
        self.comparison = comparison
        self.summary.show(comparison)
        self.side_by_side.labels = (comparison.run_a.name or comparison.run_a.id,
                                    comparison.run_b.name or comparison.run_b.id)
        self.table.show(comparison.cases, keep=same)
        selected = self.table.selected_id
        self.side_by_side.show(comparison.case(selected) if selected else None)

    def on_compare_case_table_case_selected(self, event: CompareCaseTable.CaseSelected) -> None:
        case = self.comparison.case(event.case_id) if self.comparison and event.case_id else None
        self.side_by_side.show(case)

    # --- actions ----------------------------------------------------------------------------

    def action_swap(self) -> None:
        a, b = self._pair
        if a and b:
            self._pair = (b, a)
            self.query_one("#run-a", Select).value = b
            self.query_one("#run-b", Select).value = a
            self.compare(b, a)

    def action_toggle_markers(self) -> None:
        on = self.side_by_side.toggle_markers()
        self.notify("[-removed-] {+added+} markers " + ("on" if on else "off"), title="Diff")

    def action_review_these(self) -> None:
        a, b = self._pair
        if not (a and b):
            self.notify("Pick run A and run B first.", severity="warning")
            return
        review = self.app.get_screen("review")  # created (not yet shown) on first use
        review.prefill(a, b)
        self.app.goto("review")
