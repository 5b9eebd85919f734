"""Phase 1 · Selection: requirements, the eval set, candidates and the choice.

Above the items, two tabs (one shown at a time, so the items keep their room on a 40-line
terminal):
  Candidates    the shortlist smallest first (parameters, size class, bf16 size, licence,
                remote code, the choice), with warnings: a large model without a smaller one,
                weightgate.toml's order not smallest first, metadata missing.
  Requirements  the requirements as weightgate.toml states them today (the item table
                truncates them).
It opens on Requirements until they all pass, then on Candidates.

Keys: + / insert add a candidate (reads metadata, no weights: a thread worker), c choose the
selected one (with a reason), f fetch the chosen (or selected) model, i re-read the selected
candidate's metadata, s switch tabs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message

from weightgate.core.weights.candidates import add_candidate, choose_model, metadata_summary
from weightgate.core.weights.metadata import fetch_metadata
from weightgate.core.weights.metadata_cache import save_metadata
from weightgate.core.weights.views import Shortlist, read_shortlist
from weightgate.screens.selection.candidates import AddCandidateModal, CandidateTabs, Summary
from weightgate.tui.widgets.base_screen import PhaseScreen
from weightgate.tui.widgets.facts import FactsPanel
from weightgate.tui.widgets.modals import NoteModal
from weightgate.tui.widgets.weights_actions import EngineDone, WeightsActions

if TYPE_CHECKING:
    from textual.widgets import TabbedContent

    from weightgate.core.engine.status import Report
    from weightgate.core.weights.views import Candidate, Shortlist
    from weightgate.screens.selection.candidates import CandidatesPanel

# The panel's widgets (tables, tabs, dialogs) are imported when the screen is first shown, not
# at start-up: `import tui.app` imports every screen module.

REQUIREMENTS = [
    ("task", "select.task"),
    ("quality", "select.threshold"),
    ("ceilings", "select.ceilings"),
    ("deployment", "select.deployment"),
    ("use", "select.intended_use"),
    ("eval set", "select.evalset"),
]
SHORTLIST_INTERVAL_S = 2.0


class ShortlistRead(Message):
    """read_shortlist() finished (posted by a thread worker)."""

    def __init__(self, shortlist: Shortlist) -> None:
        super().__init__()
        self.shortlist = shortlist


class SelectionScreen(WeightsActions, PhaseScreen):
    TARGET = "phase-1"
    PHASE = 1
    HELP = ("Selection: requirements, the eval set, candidates and the choice. Fill [requirements] in "
            "weightgate.toml and evals/task.jsonl; shortlist candidates smallest first (+), choose one (c) and "
            "fetch it (f); attest training quality and domain fit.")

    BINDINGS = [
        Binding("plus,insert", "add_candidate", "Add", tooltip="Shortlist a candidate (reads metadata, no weights)"),
        Binding("c", "choose", "Choose", tooltip="Choose the selected candidate, with a reason"),
        Binding("f", "fetch", "Fetch", tooltip="Fetch and lock the chosen (or selected) model"),
        Binding("i", "inspect", "Inspect", tooltip="Re-read the selected candidate's metadata"),
        Binding("s", "switch_tab", "Candidates / requirements", show=False),
    ]
    STATEFUL_ACTIONS = (*PhaseScreen.STATEFUL_ACTIONS, "choose", "fetch", "inspect")

    DEFAULT_CSS = """
    SelectionScreen FactsPanel#requirements { border: none; margin: 0; padding: 0; }
    """

    def compose_panels(self) -> ComposeResult:
        yield CandidateTabs(FactsPanel("Requirements", REQUIREMENTS,
                                       source="weightgate.toml [requirements] · evals/task.jsonl", id="requirements"))

    # --- reading ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        super().on_mount()
        self._reading = False
        self._read_again = False
        self._select_next: str | None = None  # a candidate to select once the table lists it
        self._tab_chosen = False  # the first report picks the tab; after that the user does
        self.watch(self.app, "report", self._report_changed)
        self.set_interval(SHORTLIST_INTERVAL_S, self.reload)

    @property
    def panel(self) -> CandidatesPanel:
        return self.query_one("#candidates")

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#selection-tabs")

    def _report_changed(self, report: Report | None) -> None:
        if report is None:
            return
        if not self.query("#selection-tabs") or not self.query("#candidates"):
            # The report can arrive before the tabs are mounted: apply it once they are.
            self.call_after_refresh(self._report_changed, report)
            return
        if not self._tab_chosen:
            self._tab_chosen = True
            ready = all(report.item(item_id).status == "pass" for _, item_id in REQUIREMENTS)
            self.tabs.active = "tab-candidates" if ready else "tab-requirements"
        self._label_tabs(report)
        self.reload()

    def _label_tabs(self, report: Report) -> None:
        todo = sum(1 for _, item_id in REQUIREMENTS if report.item(item_id).status != "pass")
        label = "Requirements ✓" if not todo else f"Requirements ({todo} to do)"
        self.tabs.get_tab("tab-requirements").label = label
        self._label_candidates()

    def _label_candidates(self) -> None:
        shortlist = self.panel.shortlist
        count = len(shortlist.candidates) if shortlist else 0
        warn = " ⚠" if shortlist and shortlist.warnings else ""
        self.tabs.get_tab("tab-candidates").label = f"Candidates ({count}){warn}"

    def reload(self) -> None:
        """Re-read the shortlist (thread worker); cheap: weightgate.toml and small JSON files."""
        workspace = getattr(self.app, "workspace", None)
        if not self.query("#candidates"):
            return  # the timer can fire before the panel is mounted or after the screen is taken down
        if workspace is None or (not self.is_current and self.panel.shortlist):
            return
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        self.run_worker(lambda: self._read(workspace), thread=True, group="shortlist", exit_on_error=False)

    def _read(self, workspace) -> None:
        try:
            shortlist = read_shortlist(workspace)
        except Exception as exc:  # noqa: BLE001 - shown in the panel, not a crash
            shortlist = Shortlist(error=f"{type(exc).__name__}: {exc}")
        self.post_message(ShortlistRead(shortlist))

    def on_shortlist_read(self, message: ShortlistRead) -> None:
        shortlist = message.shortlist
        self._reading = False
        self.panel.show(shortlist)
        if self._select_next and shortlist.get(self._select_next):
            self.panel.table.select_key(self._select_next)
            self._select_next = None
        self._label_candidates()
        self.update_bindings()
        if self._read_again:
            self._read_again = False
            self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    # --- keys -------------------------------------------------------------------------------

    @property
    def shortlist(self) -> Shortlist | None:
        try:
            return self.panel.shortlist
        except NoMatches:
            return None

    @property
    def selected_candidate(self) -> Candidate | None:
        try:
            return self.panel.selected
        except NoMatches:  # asked before the panel is composed
            return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("choose", "inspect"):
            return True if self.selected_candidate is not None else None
        if action == "fetch":
            shortlist = self.shortlist
            return True if self.selected_candidate is not None or (shortlist and shortlist.chosen) else None
        return super().check_action(action, parameters)

    def on_data_table_row_highlighted(self, event) -> None:
        if event.data_table is self.panel.table:
            self.update_bindings()

    def _show_candidates(self) -> None:
        self.tabs.active = "tab-candidates"

    def action_switch_tab(self) -> None:
        tabs = self.tabs
        tabs.active = "tab-requirements" if tabs.active == "tab-candidates" else "tab-candidates"

    def action_add_candidate(self) -> None:
        def done(answer: tuple[str, str] | None) -> None:
            if not answer:
                return
            spec, note = answer
            self._show_candidates()
            self.run_engine("add", spec, f"Adding {spec}: reading its config and safetensors headers "
                            "(no weights)…", lambda ws: _add(ws, spec, note))


        self.app.push_screen(AddCandidateModal(), done)

    def action_choose(self) -> None:
        candidate = self.selected_candidate
        if candidate is None:
            return
        self._show_candidates()

        def done(reason: str | None) -> None:
            if reason:
                self.run_engine("choose", candidate.spec, f"Recording the choice of {candidate.spec}…",
                                lambda ws: _choose(ws, candidate.spec, reason))

        self.app.push_screen(NoteModal(
            f"Choose {candidate.spec}",
            "The choice is recorded in weightgate.toml [decisions] with your reason; fetching (f) then downloads "
            "and locks exactly this model. Say why it clears the requirements at the lowest cost.",
            placeholder="e.g. smallest candidate that clears the threshold on the eval set",
            submit_label="Choose",
            missing="Give the reason for this choice: it is recorded with it in weightgate.toml."), done)

    def action_fetch(self) -> None:
        shortlist = self.shortlist
        candidate = self.selected_candidate
        if shortlist and shortlist.chosen:
            spec = shortlist.chosen
            if candidate is not None and candidate.spec != spec:
                self.notify(f"Fetching the chosen model {spec}, not the selected {candidate.spec}: "
                            "choose it first (c) to fetch it.", title="Fetch")
        elif candidate is not None:
            spec = candidate.spec
            self.notify(f"No model is chosen yet: fetching the selected candidate {spec}.", title="Fetch")
        else:
            self.notify("Nothing to fetch: add a candidate (+) and choose it (c).", severity="warning")
            return
        self._show_candidates()
        self.start_fetch(spec, spec)

    def action_inspect(self) -> None:
        candidate = self.selected_candidate
        if candidate is None:
            return
        self._show_candidates()
        spec = candidate.spec
        self.run_engine("inspect", spec, f"Reading the metadata of {spec} (no weights)…",
                        lambda ws: _inspect(ws, spec))

    # --- outcomes -----------------------------------------------------------------------------

    def show_busy(self, text: str | None) -> None:
        self.panel.show_busy(text)

    def engine_done(self, message: EngineDone) -> None:
        if message.action == "add":
            self.notify(Summary(message.subject, message.result).text(), title="Candidate added",
                        severity="warning" if message.result.get("warnings") else "information", timeout=8)
            self._select_next = message.subject
        elif message.action == "inspect":
            self.notify(Summary(message.subject, message.result).text(), title="Metadata saved")
        elif message.action == "choose":
            self.notify(f"{message.subject}: recorded in weightgate.toml [decisions]. Press f to fetch it.",
                        title="Model chosen")
        self.reload()


def _add(ws, spec: str, note: str) -> dict:
    return add_candidate(ws, spec, note)


def _choose(ws, spec: str, reason: str) -> None:
    choose_model(ws, spec, reason)


def _inspect(ws, spec: str) -> dict:
    summary = metadata_summary(fetch_metadata(spec).to_dict())
    save_metadata(ws, spec, summary)
    return summary
