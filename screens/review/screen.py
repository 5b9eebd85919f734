"""Review: a blind A/B review of two eval runs, one case at a time, resumable.

Opening the screen resumes the most recent unfinished review at its first unanswered case; with
none open it shows the start form (runs A and B, default baseline vs latest, and the reviewer).
Each case shows the prompt and the two outputs as "left" and "right" (which run is which is
seeded per case and never shown). Keys (also in the footer and F1):

    1 or left     the left output is better
    2 or right    the right output is better
    t or space    tie
    backspace, b  back one case (answering again replaces the earlier answer)
    N             start a new review (an unfinished one stays resumable)

Every answer is appended to the session's answers.jsonl and fsynced before the next case is
shown. After the last case the reveal: B's win rate over A with its interval, and which run was
which; the result is recorded as evidence for eval.human_review.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.review import (
    complete_review,
    default_runs,
    environment_reviewer,
    latest_open_review,
    start_review,
)
from weightgate.core.evaluation.runs import list_runs
from weightgate.screens.review.review_view import RevealView, ReviewCasePanel, ReviewPicker
from weightgate.tui.widgets.base_screen import WorkspaceScreen
from weightgate.tui.widgets.compare_view import run_option

if TYPE_CHECKING:
    from weightgate.core.evaluation.review import ReviewResult, ReviewSession

ANSWER_ACTIONS = ("answer", "previous")
LOADING, EMPTY, PICK, CASE, REVEAL = "loading", "empty", "pick", "case", "reveal"


class ReviewScreen(WorkspaceScreen, inherit_bindings=False):
    TARGET = "review"
    HELP = ("Blind A/B review: judge two runs' outputs, shown as left and right in a random order per case. "
            "1 or ← left is better · 2 or → right is better · t or space tie · backspace or b back one case · "
            "N new review. Each answer is saved at once; leave any time (o, j, q) and come back with R to "
            "resume. At the end the runs are revealed with B's win rate over A (ties count half) and its "
            "95% interval.")

    # The answer keys are priority bindings so they work wherever the focus is; check_action
    # turns them off outside a case, so the start form's inputs get every key.
    BINDINGS = [
        Binding("1,left", "answer('better')", "Left better", priority=True, tooltip="The left output is better"),
        Binding("2,right", "answer('worse')", "Right better", priority=True, tooltip="The right output is better"),
        Binding("t,space", "answer('tie')", "Tie", priority=True, tooltip="Both equally good (or bad)"),
        Binding("backspace,b", "previous", "Back", priority=True, tooltip="Back one case to change its answer"),
        Binding("N", "new_review", "New review", tooltip="Start another review (this one stays resumable)"),
        Binding("o", "goto('overview')", "Overview"),
        Binding("j", "goto('jobs')", "Jobs"),
        Binding("escape", "leave", "Leave", tooltip="Out of a text field, else back to the screen before"),
    ]
    ESCAPE_GOES_BACK = True
    STATEFUL_ACTIONS = ("answer", "previous", "new_review")

    DEFAULT_CSS = """
    ReviewScreen #review-title { height: auto; padding: 0 1 1 1; }
    ReviewScreen #review-message { height: auto; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session: ReviewSession | None = None
        self.result: ReviewResult | None = None
        self.index: int | None = None
        self.mode = LOADING
        self._prefill: tuple[str, str] | None = None
        self._loads = 0  # load requests so far; only the newest one's result is shown

    def compose_main(self) -> ComposeResult:
        yield Static("Blind A/B review", id="review-title")
        yield Static("Reading the reviews…", id="review-message")
        yield ReviewPicker(id="review-picker")
        yield ReviewCasePanel(id="review-case")
        yield RevealView(id="review-reveal")

    @property
    def case_panel(self) -> ReviewCasePanel:
        return self.query_one(ReviewCasePanel)

    @property
    def reveal_view(self) -> RevealView:
        return self.query_one(RevealView)

    @property
    def picker(self) -> ReviewPicker:
        return self.query_one(ReviewPicker)

    def _workspace(self):
        return getattr(self.app, "workspace", None) or Workspace(self.app.workspace_root)

    def _set_mode(self, mode: str, message: str = "") -> None:
        self.mode = mode
        self.query_one("#review-message", Static).update(message)
        self.query_one("#review-message").display = bool(message)
        self.picker.display = mode == PICK
        self.case_panel.display = mode == CASE
        self.reveal_view.display = mode == REVEAL
        self.refresh_bindings()

    # --- opening ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        super().on_mount()
        self._set_mode(LOADING, "Reading the reviews…")
        self.load()

    def reopened(self) -> None:
        """App.goto calls this when the screen is shown again."""
        if self._prefill is None:
            if self.mode in (CASE, REVEAL) and self.session is not None:
                return  # the session in memory is what is on disk: answers are written before they show
            if self.mode == PICK:
                start = self.picker.values()
                if start.run_a and start.run_b:
                    self._prefill = (start.run_a, start.run_b)  # keep the picks, re-read the runs
        self.load()

    def prefill(self, run_a: str, run_b: str) -> None:
        """Review these runs (from the Compare screen): resume an open review of this pair, or
        show the start form with them picked. Works before the screen is first shown, too."""
        self._prefill = (run_a, run_b)
        if self.is_mounted:
            self.load()

    def load(self, resume: bool = True) -> None:
        self._loads += 1
        self._load(self._loads, resume, self._prefill)

    @work(thread=True, group="review-load", exit_on_error=False)
    def _load(self, seq: int, resume: bool, pair: tuple[str, str] | None) -> None:
        ws = self._workspace()
        try:
            if pair is not None:
                session = latest_open_review(ws, *pair)
            else:
                session = latest_open_review(ws) if resume else None
            if session is not None:
                session.runs()  # read both runs here, off the UI thread
                self.app.call_from_thread(self._loaded, seq, self._resume, session)
                return
            runs = list_runs(ws)
            a, b = pair or default_runs(ws)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            self.app.call_from_thread(self._loaded, seq, self._set_mode, EMPTY, f"Cannot read the reviews: {exc}")
            return
        self.app.call_from_thread(self._loaded, seq, self._show_picker, [run_option(run) for run in runs], a, b,
                                  environment_reviewer())

    def _loaded(self, seq: int, show, *args) -> None:
        """Only the newest load shows its result (an older one may finish later)."""
        if seq == self._loads:
            self._prefill = None
            show(*args)

    def _show_picker(self, options: list[tuple[str, str]], a: str | None, b: str | None, reviewer: str) -> None:
        self.session, self.result, self.index = None, None, None
        if len(options) < 2:
            self._set_mode(EMPTY, "A review needs two eval runs: run `weightgate eval run`, change something "
                                  "(precision, adapter, prompt), and run it again.")
            return
        self.picker.fill(options, a, b, reviewer)
        self._set_mode(PICK)
        self.query_one("#review-start").focus()

    def on_review_picker_start(self, event: ReviewPicker.Start) -> None:
        if not event.run_a or not event.run_b:
            self.notify("Pick run A and run B.", severity="warning")
            return
        self._loads += 1
        self._start(self._loads, event.run_a, event.run_b, event.reviewer)

    @work(thread=True, group="review-load", exit_on_error=False)
    def _start(self, seq: int, run_a: str, run_b: str, reviewer: str) -> None:
        try:
            session = start_review(self._workspace(), run_a, run_b, reviewer=reviewer or None)
            session.runs()
        except InputError as exc:
            message = exc.message + (f"\nhint: {exc.hint}" if exc.hint else "")
            self.app.call_from_thread(self.notify, message, title="Cannot start the review", severity="error")
            return
        self.app.call_from_thread(self._loaded, seq, self._resume, session)

    def _resume(self, session: ReviewSession) -> None:
        self.session, self.result = session, None
        index = session.next_index()
        if index is None:
            self.reveal()
            return
        if session.answered:
            self.notify(f"Resuming review {session.id} at case {index + 1} of {session.total} "
                        f"({session.answered} answered).", title="Review")
        self.show_case(index)

    def show_case(self, index: int) -> None:
        assert self.session is not None
        try:
            view = self.session.view(index)
        except InputError as exc:  # a run was changed or deleted under the review
            self.notify(f"{exc.message}\nhint: {exc.hint}", title="Cannot show the case", severity="error", timeout=10)
            self.load(resume=False)
            return
        self.index = index
        self.case_panel.show(view, self.session.answered)
        self._set_mode(CASE)

    # --- answering --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ANSWER_ACTIONS:
            return self.mode == CASE and self.session is not None
        if action == "new_review":
            return self.mode in (CASE, REVEAL, EMPTY)
        return super().check_action(action, parameters)

    def action_answer(self, left_answer: str) -> None:
        session, index = self.session, self.index
        if session is None or index is None:
            return
        case = session.cases[index]
        try:
            session.answer(case.id, left_answer)  # appended and fsynced before we move on
        except OSError as exc:
            self.notify(f"The answer was not saved: {exc}", title="Review", severity="error", timeout=10)
            return
        following = session.next_index(index)
        if following is None:
            self.reveal()
        else:
            self.show_case(following)

    def action_previous(self) -> None:
        if self.session is not None and self.index is not None and self.index > 0:
            self.show_case(self.index - 1)

    def action_new_review(self) -> None:
        self.load(resume=False)

    # --- the reveal -------------------------------------------------------------------------

    def reveal(self) -> None:
        """Every case is answered: unblind (and record the evidence) in a worker."""
        self._set_mode(LOADING, "Every case answered. Revealing…")
        self._finish()

    @work(thread=True, exclusive=True, group="review-reveal", exit_on_error=False)
    def _finish(self) -> None:
        session = self.session
        if session is None:
            return
        try:
            result = complete_review(self._workspace(), session)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            self.app.call_from_thread(self.notify, f"Could not reveal the review: {exc}", title="Review",
                                      severity="error")
            return
        self.app.call_from_thread(self._show_reveal, result)

    def _show_reveal(self, result: ReviewResult) -> None:
        self.result = result
        self.reveal_view.show(result)
        self._set_mode(REVEAL)
        refresh = getattr(self.app, "refresh_report", None)
        if refresh is not None:
            refresh()
