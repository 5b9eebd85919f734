"""A phase's gate and its items: the building block of the Overview and every phase screen.

PhaseView = GateBanner (state, why, what holds the gate) + ItemTable + ItemDetail. It follows
`app.report`; a phase screen adds its own panels around it (see base_screen.PhaseScreen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from weightgate.core.engine.checklist import PHASES
from weightgate.tui.widgets.items import ItemDetail, ItemTable
from weightgate.tui.widgets.status import phase_look

if TYPE_CHECKING:
    from weightgate.core.engine.status import ItemStatus, PhaseStatus, Report

HELD_LIMIT = 10


def held_list(statuses: Iterable[ItemStatus], limit: int = HELD_LIMIT) -> str:
    """'select.task (todo), select.evalset (fail), … +7 more'"""
    statuses = list(statuses)
    shown = [f"{status.item.id} ({status.status})" for status in statuses[:limit]]
    if len(statuses) > limit:
        shown.append(f"+{len(statuses) - limit} more")
    return ", ".join(shown)


def gate_text(status: PhaseStatus | None, number: int, *, overview: bool = False) -> Content:
    phase = PHASES[number - 1]
    title = Content.assemble(("Overview · current phase " if overview else "Phase ", "$text-muted"),
                             (f"{phase.number} · {phase.title}", "bold"))
    if status is None:
        return Content("\n").join([title, Content.styled(phase.why, "italic"),
                                   Content.styled("reading the workspace…", "$text-muted")])
    look = phase_look(status.state)
    head = Content.assemble(title, "   ", look.content(bold=True))
    lines = [head, Content.styled(phase.why, "italic")]
    later = f"phase {number + 1}" if number < len(PHASES) else "shipping"
    if status.state == "locked":
        first_phase = min(held.item.phase for held in status.held_by)
        lines.append(Content.assemble(
            ("Locked: ", "bold $error"),
            f"held by {len(status.held_by)} item{'s' if len(status.held_by) != 1 else ''} of earlier phases "
            f"(first in phase {first_phase}): ",
            (held_list(status.held_by), "bold"),
        ))
        lines.append(Content.styled("You can work here: what you run is recorded, the gate stays closed until "
                                    "those items hold.", "$text-muted"))
    elif status.state == "not-needed":
        lines.append(Content.assemble(("Not needed: ", "bold"), status.note or "skipped by the evaluation"))
    elif status.state == "passed":
        lines.append(Content.assemble(("Passed: ", "bold $success"),
                                      f"every critical item passes and every recommended one passes or is "
                                      f"waived; {later} is open."))
    else:
        count = len(status.blocking)
        stale = " (some are stale: re-measure them)" if status.state == "stale" else ""
        lines.append(Content.assemble(
            ("Gate: ", "bold $primary"),
            f"{later} is held by {count} item{'s' if count != 1 else ''} of this phase{stale}: ",
            (held_list(status.blocking), "bold"),
        ))
    return Content("\n").join(lines)


def override_lines(report: Report) -> list[Content]:
    """Every action done with closed gates, as `weightgate status` lists them (newest last)."""
    from weightgate.core.engine.status import override_line  # lazy: core's status rules load after the first frame

    return [Content.assemble(("⚠ override: ", "bold $warning"), override_line(record))
            for record in report.overrides[-3:]]


class GateBanner(Static):
    DEFAULT_CSS = """
    GateBanner { height: auto; padding: 0 1 1 1; }
    """

    def show(self, content: Content) -> None:
        if content != getattr(self, "_content", None):
            self._content = content
            self.update(content)

    @property
    def plain(self) -> str:
        content = getattr(self, "_content", None)
        return content.plain if content is not None else ""


class PhaseView(Vertical):
    """Gate banner, item table and detail pane for phase `number` (None: the current phase)."""

    SCOPED_CSS = False  # the short-terminal rules below start at the screen (.-short)
    DEFAULT_CSS = """
    PhaseView { height: 1fr; }
    /* On a short terminal (the screen's -short class) the view takes the height it needs and the
       main area scrolls, rather than squeezing the items and their detail out of sight. */
    .-short PhaseView { height: auto; }
    .-short PhaseView ItemTable { max-height: 12; }
    .-short PhaseView ItemDetail { height: auto; }
    """

    def __init__(self, number: int | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fixed_number = number
        self.number = number or 1
        self.status: PhaseStatus | None = None

    def compose(self) -> ComposeResult:
        yield GateBanner(gate_text(None, self.number, overview=self.fixed_number is None))
        yield ItemTable()
        yield ItemDetail()

    @property
    def table(self) -> ItemTable:
        return self.query_one(ItemTable)

    @property
    def detail(self) -> ItemDetail:
        return self.query_one(ItemDetail)

    @property
    def banner(self) -> GateBanner:
        return self.query_one(GateBanner)

    def on_mount(self) -> None:
        self.watch(self.app, "report", self.show_report)

    def show_report(self, report: Report | None) -> None:
        if report is None:
            return
        if not (self.query(GateBanner) and self.query(ItemTable) and self.query(ItemDetail)):
            # The report can arrive before this view's children are mounted: show it once they are.
            self.call_after_refresh(self.show_report, report)
            return
        self.number = self.fixed_number or report.current_phase
        self.status = report.phase(self.number)
        text = gate_text(self.status, self.number, overview=self.fixed_number is None)
        if report.overrides and (self.fixed_number is None or self.number == 6):
            text = Content("\n").join([text, *override_lines(report)])
        self.banner.show(text)
        self.table.show(self.status.items)
        self.detail.show(self.selected)

    def on_item_table_item_selected(self, event: ItemTable.ItemSelected) -> None:
        self.detail.show(self.table.status_of(event.item_id) if event.item_id else None)

    @property
    def selected(self) -> ItemStatus | None:
        # Asked by check_action on every footer refresh, also while this view is still composing.
        tables = self.query(ItemTable)
        if not tables:
            return None
        item_id = tables.first().selected_id
        return tables.first().status_of(item_id) if item_id else None
