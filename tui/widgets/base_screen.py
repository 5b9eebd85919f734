"""Screens share one frame: header, sidebar, error banner, main area, footer.

WorkspaceScreen  the frame plus navigation keys (1-6, o, j, n/p) and their gating.
PhaseScreen      a WorkspaceScreen showing one phase's gate and items (PhaseView), with the
                 attest / waive / revoke keys. A phase screen in `screens/` subclasses it, sets
                 PHASE, and may add panels by overriding `compose_panels()`.

The screens talk to the App only through a few methods (goto, apply_evidence, ...) and the
App's reactive state (report, workspace_error, devices, job_rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input, Select, TextArea

from weightgate.core.engine.checklist import PHASES
from weightgate.tui.widgets.error_banner import WorkspaceErrorBanner
from weightgate.tui.widgets.footer import WrappingFooter
from weightgate.tui.widgets.header import AppHeader
from weightgate.tui.widgets.items import ItemTable
from weightgate.tui.widgets.main_area import MainArea
from weightgate.tui.widgets.phase_view import PhaseView
from weightgate.tui.widgets.sidebar import PhaseSidebar, phase_target

if TYPE_CHECKING:
    from textual.widget import Widget

    from weightgate.core.engine.status import ItemStatus, Report

PHASE_KEYS = Binding.Group("Phase", compact=True)
SIDEBAR_MIN_WIDTH = 100  # narrower terminals start with the sidebar hidden (backslash shows it)
SHORT_HEIGHT = 30        # shorter terminals lay the main area out at its natural height, scrolling


class WorkspaceScreen(Screen):
    """The frame every non-modal screen shares, and the keys that move between screens."""

    TARGET: ClassVar[str] = ""  # this screen's name for the sidebar and App.goto
    HELP: ClassVar[str] = ""    # one line for the help screen
    # Esc outside an input goes back to the screen shown before (Compare, Review); phase screens
    # have nowhere "back" to go, so there Esc only leaves an input.
    ESCAPE_GOES_BACK: ClassVar[bool] = False
    # Actions whose availability depends on state; the footer is refreshed when one changes.
    STATEFUL_ACTIONS: ClassVar[tuple[str, ...]] = ("next_phase", "previous_phase")

    BINDINGS = [
        *[Binding(str(phase.number), f"goto_phase({phase.number})", phase.title, group=PHASE_KEYS)
          for phase in PHASES],
        Binding("o", "goto('overview')", "Overview"),
        Binding("j", "goto('jobs')", "Jobs"),
        Binding("n,ctrl+right", "next_phase", "Next phase", tooltip="Go to the next phase (a locked one opens too, with what locks it)"),
        Binding("p,ctrl+left", "previous_phase", "Previous phase", show=False),
        Binding("escape", "leave", "Leave field / back", show=False),
        Binding("backslash", "toggle_sidebar", "Sidebar", tooltip="Hide or show the phase sidebar"),
        Binding("E", "edit", "Edit", tooltip="Open weightgate.toml (on Evaluation: the eval set) in $EDITOR"),
    ]

    DEFAULT_CSS = """
    WorkspaceScreen #body { height: 1fr; }
    WorkspaceScreen #main { height: 1fr; width: 1fr; padding: 1 1 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield AppHeader()
        with Horizontal(id="body"):
            yield PhaseSidebar(self.TARGET)
            with MainArea(id="main"):
                yield WorkspaceErrorBanner()
                yield from self.compose_main()
        yield WrappingFooter()

    def compose_main(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self._binding_state: tuple = ()
        self.watch(self.app, "report", lambda _: self.update_bindings(), init=False)
        if hasattr(self.app, "sidebar_shown"):
            self.watch(self.app, "sidebar_shown", lambda _: self._apply_sidebar())

    def on_resize(self) -> None:
        self._fit_terminal()

    def on_screen_resume(self) -> None:
        self._fit_terminal()

    def _fit_terminal(self) -> None:
        short = self.app.size.height < SHORT_HEIGHT
        if short != self.has_class("-short"):
            self.set_class(short, "-short")
            # The layout changed under the focused widget (it took the focus before): bring it back into view.
            self.call_after_refresh(self._show_focused)
        self._apply_sidebar()

    def _show_focused(self) -> None:
        if self.focused is not None:
            self.focused.scroll_visible(animate=False)

    # --- the sidebar --------------------------------------------------------------------

    def sidebar_wanted(self) -> bool:
        """The user's choice (backslash) if made, else shown when there is room for it."""
        chosen = getattr(self.app, "sidebar_shown", None)
        return chosen if chosen is not None else self.app.size.width >= SIDEBAR_MIN_WIDTH

    def _apply_sidebar(self) -> None:
        sidebars = self.query(PhaseSidebar)
        if not sidebars:
            return
        sidebar = sidebars.first()
        shown = self.sidebar_wanted()
        if sidebar.display != shown:
            if not shown and sidebar.has_focus:
                self._focus_main()
            sidebar.display = shown

    def action_toggle_sidebar(self) -> None:
        self.app.sidebar_shown = not self.sidebar_wanted()

    def update_bindings(self) -> None:
        """Refresh the footer only when a stateful action became (un)available.

        The report is re-read every 2 s; re-rendering the footer each time would be wasted work
        (and lose a mouse hover), so compare what check_action says first.
        """
        state = tuple(self.check_action(action, ()) for action in self.STATEFUL_ACTIONS)
        if state != getattr(self, "_binding_state", None):
            self._binding_state = state
            self.refresh_bindings()

    # --- navigation ---------------------------------------------------------------------

    @property
    def phase_number(self) -> int | None:
        """The phase this screen is about (None: not about a phase)."""
        return None

    @property
    def report(self) -> Report | None:
        return getattr(self.app, "report", None)

    def _neighbour(self, step: int) -> int | None:
        number = self.phase_number
        if number is None:
            return None
        target = number + step
        return target if 1 <= target <= len(PHASES) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_phase":
            # Hidden after the last phase; a locked next phase still opens (as its digit does) and
            # says what locks it.
            return self._neighbour(+1) is not None
        if action == "previous_phase":
            return self._neighbour(-1) is not None
        return True

    def action_leave(self) -> None:
        """Esc: out of a text field (its keys go back to the app: 5 opens phase 5 again), else back."""
        if isinstance(self.focused, (Input, TextArea, Select)):
            self._focus_main()
        elif self.ESCAPE_GOES_BACK:
            self.app.go_back()

    def _focus_main(self) -> None:
        auto_focus = self.AUTO_FOCUS
        targets = self.query(auto_focus) if auto_focus else None
        if targets:
            targets.first().focus()
        else:
            self.set_focus(None)

    def edit_target(self) -> Path:
        """The file E opens: weightgate.toml (a screen about another file names it instead)."""
        return Path(self.app.workspace_root) / "weightgate.toml"

    def action_edit(self) -> None:
        self.app.edit_file(self.edit_target())

    def action_goto_phase(self, number: int) -> None:
        self.app.goto(phase_target(number))

    def action_goto(self, target: str) -> None:
        self.app.goto(target)

    def action_next_phase(self) -> None:
        target = self._neighbour(+1)
        if target is None:
            return
        report = self.report
        if report is not None and report.phase(target).locked:
            # Opening a locked phase is allowed (its digit does it too); say what locks it.
            held = [held.item.id for held in report.phase(target).held_by]
            shown = ", ".join(held[:3]) + (f" +{len(held) - 3} more" if len(held) > 3 else "")
            self.notify(f"Its gate opens when phase {target - 1} passes"
                        + (f" (held by {shown})" if shown else "") + ". You can look ahead meanwhile.",
                        title=f"Phase {target} is locked", severity="warning", timeout=8)
        self.app.goto(phase_target(target))

    def action_previous_phase(self) -> None:
        target = self._neighbour(-1)
        if target is not None:
            self.app.goto(phase_target(target))

    def on_phase_sidebar_navigate(self, event: PhaseSidebar.Navigate) -> None:
        self.app.goto(event.target)


class PhaseScreen(WorkspaceScreen):
    """One phase: its gate, its items, and the evidence keys."""

    PHASE: ClassVar[int | None] = None  # None: follow the current phase (the Overview)
    HELP = "A phase's gate and items. Select an item to see why it matters and what it needs."

    BINDINGS = [
        Binding("a", "attest", "Attest", tooltip="Confirm an attest item with a note"),
        Binding("w", "waive", "Waive", tooltip="Waive a recommended item with a reason"),
        Binding("r", "revoke", "Revoke", tooltip="Withdraw an attestation or waiver"),
    ]

    DEFAULT_CSS = """
    PhaseScreen #panels { height: auto; }
    """

    AUTO_FOCUS = "ItemTable"
    STATEFUL_ACTIONS = (*WorkspaceScreen.STATEFUL_ACTIONS, "attest", "waive", "revoke")

    def compose_main(self) -> ComposeResult:
        panels = list(self.compose_panels())
        if panels:
            with Vertical(id="panels"):
                yield from panels
        yield PhaseView(self.PHASE)

    def compose_panels(self) -> list[Widget] | ComposeResult:
        """Phase-specific panels above the items; later work adds real tools here."""
        return []

    @property
    def phase_view(self) -> PhaseView:
        return self.query_one(PhaseView)

    @property
    def phase_number(self) -> int | None:
        if self.PHASE is not None:
            return self.PHASE
        report = self.report
        return report.current_phase if report is not None else None

    @property
    def selected(self) -> ItemStatus | None:
        # check_action asks this whenever the footer refreshes, which can happen while the
        # screen is still composing or already tearing down: no PhaseView then, nothing selected.
        views = self.query(PhaseView)
        return views.first().selected if views else None

    def select_item(self, item_id: str) -> bool:
        return self.phase_view.table.select_item(item_id)

    # --- evidence keys ------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("attest", "waive", "revoke"):
            return True if self.selected is not None else None
        return super().check_action(action, parameters)

    def on_item_table_item_selected(self, event: ItemTable.ItemSelected) -> None:
        self.update_bindings()

    def _ask(self, *args, **kwargs):
        from weightgate.tui.widgets.modals import NoteModal  # noqa: PLC0415 - Input is not needed for the first frame

        return NoteModal(*args, **kwargs)

    def action_attest(self) -> None:
        status = self.selected
        if status is None:
            return
        item = status.item
        if item.mode.value != "attest":
            self.notify(f"{item.id} is decided automatically, not by attestation.\n"
                        f"What it needs: {status.detail}", title="Cannot attest", severity="warning")
            return

        def done(note: str | None) -> None:
            if note:
                self.app.apply_evidence("attest", item.id, note)

        self.app.push_screen(self._ask(
            f"Attest {item.id}",
            f"{item.title}.\nWhy: {item.why}\nSay what you checked. The note is kept with the evidence; "
            f"it goes stale when {', '.join(item.inputs) or 'its inputs'} change.",
            placeholder="e.g. read the model card's training-data section", submit_label="Attest"), done)

    def action_waive(self) -> None:
        status = self.selected
        if status is None:
            return
        item = status.item
        if item.severity.value != "recommended":
            # The engine owns the rule and its wording; an empty reason can never be recorded.
            self.app.apply_evidence("waive", item.id, "")
            return

        def done(reason: str | None) -> None:
            if reason:
                self.app.apply_evidence("waive", item.id, reason)

        self.app.push_screen(self._ask(
            f"Waive {item.id}",
            f"{item.title}.\nA waived recommended item no longer holds the gate. Say why it does not apply; "
            "the reason is kept with the evidence.",
            placeholder="e.g. single-tenant deployment, no drift expected", submit_label="Waive"), done)

    def action_revoke(self) -> None:
        status = self.selected
        if status is None:
            return
        item = status.item

        def done(note: str | None) -> None:
            if note is not None:
                self.app.apply_evidence("revoke", item.id, note)

        self.app.push_screen(self._ask(
            f"Revoke the attestation or waiver of {item.id}",
            "The item goes back to what its checks say. A note is optional.",
            placeholder="optional: why", submit_label="Revoke", required=False), done)
