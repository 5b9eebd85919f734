"""Widgets of the Review screen: the start form, one blind case, and the reveal.

The case view takes a core.evaluation.review.CaseView, which carries no run ids, names or scores: the two
outputs are labelled only "left" and "right". Only the reveal, built from a ReviewResult, names
the runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, Input, Select, Static

from weightgate.tui.widgets.compare_view import OutputPane, expected_text, visible

if TYPE_CHECKING:
    from weightgate.core.evaluation.review import CaseView, ReviewResult

ANSWER_WORDS = {"better": "left is better", "worse": "right is better", "tie": "tie"}
KEYS_LINE = "1 / ← left better  ·  2 / → right better  ·  t / space tie  ·  backspace / b back a case"


class ReviewPicker(Vertical):
    """Pick run A and run B and the reviewer's name, then start."""

    DEFAULT_CSS = """
    ReviewPicker { height: auto; padding: 0 1; }
    ReviewPicker .row { height: auto; margin-bottom: 1; }
    ReviewPicker .label { width: 12; padding: 1 1 0 0; text-style: bold; }
    ReviewPicker Select { width: 1fr; }
    ReviewPicker Input { width: 1fr; }
    ReviewPicker #review-about { margin-bottom: 1; color: $text-muted; }
    """

    class Start(Message):
        def __init__(self, run_a: str | None, run_b: str | None, reviewer: str) -> None:
            super().__init__()
            self.run_a, self.run_b, self.reviewer = run_a, run_b, reviewer

    def compose(self) -> ComposeResult:
        yield Static(
            "A blind A/B review: each case shows the two runs' outputs as \"left\" and \"right\", in a random "
            "order per case, without the run names. Every answer is saved at once; leave at any time and "
            "come back to resume. The names are revealed at the end with B's win rate over A.", id="review-about")
        with Horizontal(classes="row"):
            yield Static("Run A", classes="label")
            yield Select([], prompt="run A", id="review-run-a", allow_blank=True)
        with Horizontal(classes="row"):
            yield Static("Run B", classes="label")
            yield Select([], prompt="run B", id="review-run-b", allow_blank=True)
        with Horizontal(classes="row"):
            yield Static("Reviewer", classes="label")
            yield Input(placeholder="your name", id="review-reviewer")
        yield Button("Start blind review", id="review-start", variant="primary")

    def fill(self, options: list[tuple[str, str]], run_a: str | None, run_b: str | None, reviewer: str) -> None:
        for selector, value in (("#review-run-a", run_a), ("#review-run-b", run_b)):
            select = self.query_one(selector, Select)
            select.set_options(options)
            select.value = value if value is not None and value in {v for _, v in options} else Select.NULL
        reviewer_input = self.query_one("#review-reviewer", Input)
        if not reviewer_input.value:
            reviewer_input.value = reviewer

    def values(self) -> Start:
        a = self.query_one("#review-run-a", Select).value
        b = self.query_one("#review-run-b", Select).value
        return self.Start(a if isinstance(a, str) else None, b if isinstance(b, str) else None,
                          self.query_one("#review-reviewer", Input).value.strip())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "review-start":
            event.stop()
            self.post_message(self.values())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.values())


class ReviewCasePanel(Vertical):
    """One case, blind: progress, prompt, the left and right outputs, the current answer."""

    DEFAULT_CSS = """
    ReviewCasePanel { height: 1fr; }
    ReviewCasePanel #review-progress { height: auto; padding: 0 1; }
    ReviewCasePanel #review-prompt { height: auto; max-height: 8; padding: 0 1 1 1; }
    ReviewCasePanel #review-outputs { height: 1fr; min-height: 6; }
    ReviewCasePanel #review-keys { height: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: CaseView | None = None
        self.answered = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="review-progress")
        yield Static("", id="review-prompt")
        with Horizontal(id="review-outputs"):
            yield OutputPane("left", id="review-left")
            yield OutputPane("right", id="review-right")
        yield Static(KEYS_LINE, id="review-keys")

    def show(self, view: CaseView, answered: int) -> None:
        self.view, self.answered = view, answered
        self.query_one("#review-progress", Static).update(self.progress_content())
        self.query_one("#review-prompt", Static).update(Content.assemble(
            ("prompt   ", "bold $text-muted"), visible(view.prompt), "\n",
            ("expected ", "bold $text-muted"), expected_text(view.expected)))
        self.query_one("#review-left", OutputPane).show(_output(view.left), "left")
        self.query_one("#review-right", OutputPane).show(_output(view.right), "right")

    def progress_content(self) -> Content:
        view = self.view
        if view is None:
            return Content("")
        answer = (f"   your answer: {ANSWER_WORDS[view.answer]} (answer again to change it)" if view.answer
                  else "")
        return Content.assemble((view.progress, "bold"), (f"   {self.answered} answered", "$text-muted"),
                                (f"   [{', '.join(view.tags)}]" if view.tags else "", "$text-muted"),
                                (answer, "$accent"))

    @property
    def plain(self) -> str:
        if self.view is None:
            return ""
        v = self.view
        return "\n".join([self.progress_content().plain, f"prompt {v.prompt}", f"expected {expected_text(v.expected)}",
                          f"left: {v.left}", f"right: {v.right}"])


class RevealView(Static):
    """The end of a review: who won, with the interval, and which run was which."""

    DEFAULT_CSS = """
    RevealView { height: auto; padding: 0 1; }
    """

    def show(self, result: ReviewResult) -> None:
        self.result = result
        self.update(self.reveal_content(result))

    @staticmethod
    def reveal_content(r: ReviewResult) -> Content:
        def name(run: dict) -> str:
            return run["id"] + (f" ({run['name']})" if run.get("name") and run["name"] != run["id"] else "")

        verdict = ("B is preferred" if r.ci_low > 0.5 else "A is preferred" if r.ci_high < 0.5
                   else "no clear preference (the interval includes 50%)")
        lines = [
            Content.styled("Review complete: the reveal", "bold"),
            Content.assemble(("A = ", "bold"), name(r.run_a)),
            Content.assemble(("B = ", "bold"), name(r.run_b)),
            Content(""),
            Content.assemble(("win rate of B over A  ", "bold"), (f"{100 * r.win_rate_b:.1f}%", "bold $accent"),
                             f"   95% CI [{100 * r.ci_low:.1f}%, {100 * r.ci_high:.1f}%]",
                             ("   (Wilson; ties count half)", "$text-muted")),
            Content(f"B won {r.wins_b}, A won {r.wins_a}, ties {r.ties}, of {r.answered} cases   →   {verdict}"),
            Content.styled(f"sign test on the decisive answers (ties dropped): p = {r.sign_test_p:.3f}; "
                           f"the left side won {r.left_won} of {r.wins_a + r.wins_b} (position-bias check)",
                           "$text-muted"),
        ]
        if r.identical:
            lines.append(Content.styled(f"{r.identical} case(s) had identical outputs and were not shown",
                                        "$text-muted"))
        lines += [Content(""), Content.styled(
            f"Recorded as evidence for eval.human_review (review {r.review_id}, reviewer {r.reviewer}). "
            "N starts a new review.", "$text-muted")]
        return Content("\n").join(lines)

    @property
    def plain(self) -> str:
        result = getattr(self, "result", None)
        return self.reveal_content(result).plain if result is not None else ""


def _output(text: str) -> Content:
    return Content(visible(text)) if text else Content.styled("(empty output)", "$text-muted italic")
