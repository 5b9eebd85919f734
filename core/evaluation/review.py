"""Blind A/B review: a person judges two runs' outputs case by case without knowing which is which.

    session = start_review(ws, "run-a", "run-b", reviewer="ana")   # or open_review / latest_open_review
    view = session.view(session.next_index())   # prompt + "left" / "right" outputs, no run names
    session.answer(view.case_id, "better")      # about the LEFT output: better / worse / tie
    result = reveal(session)                    # once every case is answered
    complete_review(ws, session)                # reveal + result.json + evidence (once)

On disk, `.weightgate/reviews/<review-id>/`:
    session.json    the two run ids, the reviewer, the seed, and per case which run is shown on
                    the left (seeded random, fixed when the session starts)
    answers.jsonl   one line per answer, appended and fsynced at once (core.engine.atomic.append_line):
                    a crash loses at most the answer being written, and a torn last line is
                    ignored; reopening resumes at the first unanswered case. Answering a case
                    again appends a new line; the last answer for a case counts.
    result.json     written at the reveal.

Which cases: those in both runs whose outputs differ (identical outputs have nothing to judge;
they are counted as `identical` and left out of the win rate), optionally a seeded sample.

The reveal: B's win rate over A with ties counted as half a win, (wins_B + ties / 2) / answered,
with a 95 % Wilson score interval on that half-counted proportion, and an exact sign test on the
decisive answers (ties dropped). Also how often the LEFT side won, a check for position bias.

Evidence: `eval.human_review` (recommended) gets a "pass" when a review is completed: the item asks
that a blind review was done, not that B won (the numbers are in its values). The record's
fingerprints for model / precision / adapter / eval set are today's where run B's identity
agrees with today's inputs, and run B's own where it does not: so the evidence is fresh exactly
while the reviewed run B matches the workspace as it is now.
"""

from __future__ import annotations

import getpass
import json
import os
import random
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from weightgate.core.engine.atomic import append_line, write_atomic
from weightgate.core.engine.checklist import get_item
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import record_result
from weightgate.core.engine.fingerprints import Fingerprints
from weightgate.core.engine.jsonl import iter_jsonl
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation import stats
from weightgate.core.evaluation.compare import RunView, as_run_view, default_pair, prompt_text
from weightgate.core.evaluation.runs import read_run

LEFT_ANSWERS = ("better", "worse", "tie")  # what the reviewer says about the LEFT output
EVIDENCE_ITEM = "eval.human_review"


def reviews_dir(ws) -> Path:
    return Path(ws.state_dir if hasattr(ws, "state_dir") else Path(ws) / ".weightgate") / "reviews"


@dataclass(frozen=True)
class ReviewCase:
    id: str
    left: str  # "a" or "b": whose output is shown on the left


@dataclass(frozen=True)
class Answer:
    case: str
    left: str       # better / worse / tie, about the left output
    left_run: str   # "a" or "b"
    winner: str     # "a", "b" or "tie"
    reviewer: str = ""
    time: float = 0.0


@dataclass(frozen=True)
class CaseView:
    """What the reviewer sees: no run ids, no names, no scores."""

    index: int          # 0-based position in the session
    number: int         # 1-based, for "case 7 of 30"
    total: int
    case_id: str
    tags: list[str]
    prompt: str
    expected: Any
    left: str
    right: str
    answer: str | None  # the current answer about the left output, if any

    @property
    def progress(self) -> str:
        return f"case {self.number} of {self.total}"


def winner_of(left_answer: str, left_run: str) -> str:
    if left_answer not in LEFT_ANSWERS:
        raise ValueError(f"answer must be one of {', '.join(LEFT_ANSWERS)}, not {left_answer!r}")
    if left_answer == "tie":
        return "tie"
    other = "b" if left_run == "a" else "a"
    return left_run if left_answer == "better" else other


@dataclass
class ReviewSession:
    dir: Path
    id: str
    created: float
    run_a: str
    run_b: str
    reviewer: str
    seed: int
    cases: list[ReviewCase]
    identical: list[str] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    _runs: tuple[RunView, RunView] | None = field(default=None, repr=False)

    @property
    def answers_path(self) -> Path:
        return self.dir / "answers.jsonl"

    @property
    def answered(self) -> int:
        return sum(1 for case in self.cases if case.id in self.answers)

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def done(self) -> bool:
        return self.answered == self.total

    def next_index(self, after: int = -1) -> int | None:
        """The first unanswered case after position `after` (wrapping round), None when done."""
        n = self.total
        for step in range(1, n + 1):
            index = (after + step) % n
            if self.cases[index].id not in self.answers:
                return index
        return None

    def runs(self) -> tuple[RunView, RunView]:
        if self._runs is None:
            self._runs = (_load_run(self.dir, self.run_a), _load_run(self.dir, self.run_b))
        return self._runs

    def view(self, index: int) -> CaseView:
        case = self.cases[index]
        run_a, run_b = self.runs()
        ca, cb = _case_of(run_a, case.id), _case_of(run_b, case.id)
        left, right = (ca, cb) if case.left == "a" else (cb, ca)
        answer = self.answers.get(case.id)
        return CaseView(index=index, number=index + 1, total=self.total, case_id=case.id,
                        tags=[str(t) for t in (ca.get("tags") or [])], prompt=prompt_text(ca),
                        expected=ca.get("expected"), left=str(left.get("output") or ""),
                        right=str(right.get("output") or ""), answer=answer.left if answer else None)

    def answer(self, case_id: str, left_answer: str, *, reviewer: str | None = None) -> Answer:
        """Record an answer about the LEFT output now (fsynced before this returns)."""
        case = next((c for c in self.cases if c.id == case_id), None)
        if case is None:
            raise InputError(f"case {case_id!r} is not part of review {self.id}")
        answer = Answer(case=case_id, left=left_answer, left_run=case.left,
                        winner=winner_of(left_answer, case.left), reviewer=reviewer or self.reviewer,
                        time=time.time())
        append_line(self.answers_path, json.dumps(asdict(answer), sort_keys=True, ensure_ascii=False))
        self.answers[case_id] = answer
        return answer


def _case_of(run: RunView, case_id: str) -> dict:
    for case in run.cases:
        if str(case.get("id")) == case_id:
            return case
    raise InputError(f"run {run.id} has no case {case_id!r} any more", path=run.path,
                     hint="the run was changed after the review started; start a new review")


def _load_run(review_dir: Path, run_id: str) -> RunView:
    """A review lives in <workspace>/.weightgate/reviews/<id>/; its runs in the same workspace."""

    return as_run_view(read_run(Workspace(review_dir.parents[2]), run_id))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def start_review(ws, run_a: Any, run_b: Any, *, reviewer: str | None = None, seed: int | None = None,
                 sample: int | None = None) -> ReviewSession:
    """A new session over the cases where A's and B's outputs differ (in A's order)."""
    a, b = as_run_view(run_a, ws), as_run_view(run_b, ws)
    if a.id == b.id:
        raise InputError("a review needs two different runs", hint="pick run B other than run A")
    seed = secrets.randbits(32) if seed is None else seed
    rng = random.Random(seed)
    outputs_b = {str(c.get("id")): str(c.get("output") or "") for c in b.cases}
    ids, identical = [], []
    for case in a.cases:
        case_id = str(case.get("id"))
        if case_id not in outputs_b:
            continue
        (identical if outputs_b[case_id] == str(case.get("output") or "") else ids).append(case_id)
    if sample is not None and sample < len(ids):
        keep = set(rng.sample(ids, sample))
        ids = [i for i in ids if i in keep]
    if not ids:
        raise InputError(f"runs {a.id} and {b.id} have no case with different outputs: nothing to review",
                         hint="compare them with `weightgate eval compare` instead")
    cases = [ReviewCase(case_id, rng.choice(("a", "b"))) for case_id in ids]
    created = time.time()
    review_id = time.strftime("review-%Y%m%d-%H%M%S", time.localtime(created)) + f"-{secrets.token_hex(2)}"
    directory = reviews_dir(ws) / review_id
    session = ReviewSession(dir=directory, id=review_id, created=created, run_a=a.id, run_b=b.id,
                            reviewer=(reviewer or "").strip() or _user(), seed=seed, cases=cases,
                            identical=identical, _runs=(a, b) if a.path and b.path else None)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / "session.json", json.dumps({
        "id": review_id, "created": created, "run_a": a.id, "run_b": b.id, "reviewer": session.reviewer,
        "seed": seed, "cases": [asdict(c) for c in cases], "identical": identical,
    }, indent=2, ensure_ascii=False) + "\n")
    return session


def open_review(ws, review_id: str) -> ReviewSession:
    """Reload a session and its answers (a torn last line from a crash is ignored)."""
    directory = reviews_dir(ws) / review_id
    path = directory / "session.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no review {review_id!r}", path=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"session.json is not valid JSON: {exc.msg}", path=path, line=exc.lineno,
                         column=exc.colno) from None
    session = ReviewSession(
        dir=directory, id=data["id"], created=float(data.get("created", 0)), run_a=data["run_a"],
        run_b=data["run_b"], reviewer=data.get("reviewer", ""), seed=int(data.get("seed", 0)),
        cases=[ReviewCase(c["id"], c["left"]) for c in data["cases"]], identical=list(data.get("identical") or []))
    session.answers = read_answers(session)
    return session


def read_answers(session: ReviewSession) -> dict[str, Answer]:
    """The last answer per case; lines for unknown cases or with a bad answer are ignored."""
    path = session.answers_path
    if not path.exists():
        return {}
    sides = {case.id: case.left for case in session.cases}
    answers: dict[str, Answer] = {}
    for line in iter_jsonl(path, allow_partial_tail=True):
        value = line.value
        if not isinstance(value, dict) or value.get("case") not in sides or value.get("left") not in LEFT_ANSWERS:
            continue
        case_id = value["case"]
        left_run = sides[case_id]  # the session decides the side, not the line
        answers[case_id] = Answer(case=case_id, left=value["left"], left_run=left_run,
                                  winner=winner_of(value["left"], left_run), reviewer=value.get("reviewer", ""),
                                  time=float(value.get("time", 0)))
    return answers


@dataclass(frozen=True)
class ReviewInfo:
    id: str
    created: float
    run_a: str
    run_b: str
    reviewer: str
    answered: int
    total: int

    @property
    def done(self) -> bool:
        return self.answered >= self.total


def list_reviews(ws) -> list[ReviewInfo]:
    """Every readable review, oldest first."""
    root = reviews_dir(ws)
    infos = []
    if not root.is_dir():
        return infos
    for directory in sorted(root.iterdir()):
        if not (directory / "session.json").is_file():
            continue
        try:
            session = open_review(ws, directory.name)
        except (InputError, KeyError, TypeError, ValueError):
            continue
        infos.append(ReviewInfo(session.id, session.created, session.run_a, session.run_b, session.reviewer,
                                session.answered, session.total))
    infos.sort(key=lambda info: (info.created, info.id))
    return infos


def latest_open_review(ws, run_a: str | None = None, run_b: str | None = None) -> ReviewSession | None:
    """The most recent unfinished review whose runs still exist (of runs A and B, if given)."""
    for info in reversed(list_reviews(ws)):
        if not info.done and (run_a is None or info.run_a == run_a) and (run_b is None or info.run_b == run_b):
            session = open_review(ws, info.id)
            try:
                session.runs()
            except InputError:
                continue
            return session
    return None


# --- the reveal ----------------------------------------------------------------------------

@dataclass
class ReviewResult:
    review_id: str
    reviewer: str
    run_a: dict            # {"id", "name"}
    run_b: dict
    answered: int
    total: int
    wins_a: int
    wins_b: int
    ties: int
    identical: int         # cases left out: both outputs were the same
    win_rate_b: float      # (wins_b + ties / 2) / answered
    ci_low: float
    ci_high: float
    sign_test_p: float     # exact, decisive answers only
    left_won: int          # how often the left side won (position-bias check)
    complete: bool
    method: str = ("win rate of B over A = (wins_B + ties/2) / answered; ties count half; "
                   "95% Wilson score interval; exact two-sided sign test on decisive answers")

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        """The reveal in plain words (for the CLI and the evidence note)."""
        a, b = self.run_a, self.run_b
        name = lambda run: run["id"] + (f" ({run['name']})" if run.get("name") and run["name"] != run["id"] else "")  # noqa: E731
        lines = [
            f"A = {name(a)}", f"B = {name(b)}",
            f"B wins {self.wins_b}, A wins {self.wins_a}, ties {self.ties} of {self.answered} answered"
            + (f" ({self.total - self.answered} unanswered)" if not self.complete else ""),
            f"win rate of B over A: {100 * self.win_rate_b:.1f}% (ties count half), "
            f"95% CI [{100 * self.ci_low:.1f}%, {100 * self.ci_high:.1f}%] (Wilson)",
            f"sign test (ties dropped): p = {self.sign_test_p:.3f}",
            f"left side preferred in {self.left_won} of {self.wins_a + self.wins_b} decisive answers",
        ]
        if self.identical:
            lines.append(f"{self.identical} case(s) with identical outputs were not shown")
        return "\n".join(lines)


def reveal(session: ReviewSession, *, partial: bool = False) -> ReviewResult:
    """Unblind: who won. Refuses an unfinished session unless partial=True."""
    if not session.done and not partial:
        raise InputError(f"review {session.id} is not finished: {session.answered} of {session.total} answered",
                         hint="answer the remaining cases first (or reveal with partial=True)")
    answers = [session.answers[c.id] for c in session.cases if c.id in session.answers]
    wins_a = sum(1 for x in answers if x.winner == "a")
    wins_b = sum(1 for x in answers if x.winner == "b")
    ties = sum(1 for x in answers if x.winner == "tie")
    n = len(answers)
    score = wins_b + ties / 2
    interval = stats.wilson_interval(score, n) or stats.Interval(0.0, 1.0)
    names = {}
    try:
        run_a, run_b = session.runs()
        names = {"a": run_a.name, "b": run_b.name}
    except InputError:
        pass
    return ReviewResult(
        review_id=session.id, reviewer=session.reviewer,
        run_a={"id": session.run_a, "name": names.get("a", "")}, run_b={"id": session.run_b, "name": names.get("b", "")},
        answered=n, total=session.total, wins_a=wins_a, wins_b=wins_b, ties=ties, identical=len(session.identical),
        win_rate_b=score / n if n else 0.0, ci_low=interval.low, ci_high=interval.high,
        sign_test_p=stats.binomial_two_sided(wins_b, wins_a + wins_b),
        left_won=sum(1 for x in answers if x.winner != "tie" and x.winner == x.left_run),
        complete=session.done)


def complete_review(ws, session: ReviewSession) -> ReviewResult:
    """Reveal a finished review, write result.json and record the evidence, once per review."""
    result = reveal(session)
    path = session.dir / "result.json"
    if not path.exists():
        record_review_evidence(ws, session, result)
        write_atomic(path, json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return result


def record_review_evidence(ws, session: ReviewSession, result: ReviewResult):
    item = get_item(EVIDENCE_ITEM)
    prints = _RunFingerprints(Fingerprints(ws), session.runs()[1])
    values = {key: getattr(result, key) for key in (
        "review_id", "reviewer", "answered", "wins_a", "wins_b", "ties", "identical", "win_rate_b",
        "ci_low", "ci_high", "sign_test_p", "left_won")}
    values.update(run_a=session.run_a, run_b=session.run_b, stale_inputs=prints.differing(item.inputs),
                  method=result.method)
    note = (f"blind review {session.id} by {session.reviewer}: B ({session.run_b}) over A ({session.run_a}) "
            f"{100 * result.win_rate_b:.1f}% [{100 * result.ci_low:.1f}, {100 * result.ci_high:.1f}]")
    return record_result(ws, item.id, "pass", values, note=note, fingerprints=prints)


# Fingerprint names of the item's inputs -> run identity component names.
_COMPONENT = {"model": "model", "precision": "precision", "adapter": "adapter"}


class _RunFingerprints:
    """Today's fingerprints, except where run B's identity records a different input: then run
    B's, so the evidence is stale until the workspace is back at what was reviewed."""

    def __init__(self, today, run: RunView):
        self.today = today
        self.run = run

    def _recorded(self, name: str) -> str | None:
        components = self.run.components
        if name in _COMPONENT:
            value = components.get(_COMPONENT[name])
        elif name == f"evalset.{self.run.set}":
            value = components.get("evalset")
        else:
            value = None
        return value if isinstance(value, str) and value else None

    def get(self, name: str) -> str:
        recorded = self._recorded(name)
        return recorded if recorded is not None else self.today.get(name)

    def of(self, names) -> dict[str, str]:
        return {name: self.get(name) for name in names}

    def differing(self, names) -> list[str]:
        return [name for name in names if self.get(name) != self.today.get(name)]


def default_runs(ws) -> tuple[str | None, str | None]:
    """Run ids a new review starts with: the same default pair as compare (baseline vs latest)."""
    a, b = default_pair(ws)
    return (a.id if a else None), (b.id if b else None)


def environment_reviewer() -> str:
    return os.environ.get("WEIGHTGATE_REVIEWER") or _user()


def render_reviews_text(ws) -> str:
    """What `weightgate review` (list) prints: every review, its progress, and the reveal of the
    finished ones. Unfinished reviews show no winner (they stay blind)."""
    infos = list_reviews(ws)
    if not infos:
        return "no reviews yet: open the workbench and press R (blind A/B review)\n"
    blocks = []
    for info in infos:
        state = "finished" if info.done else f"{info.answered} of {info.total} answered (resume with R)"
        block = [f"{info.id}   reviewer {info.reviewer}   {state}"]
        if info.done:
            block += ["  " + line for line in reveal(open_review(ws, info.id)).text().splitlines()]
        blocks.append("\n".join(block))
    return "\n\n".join(blocks) + "\n"
