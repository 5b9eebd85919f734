"""Compare two eval runs case by case: what regressed, what improved, and is it significant.

    comparison = compare_runs(run_a, run_b)      # run dirs, run ids (with ws=), or loaded runs
    comparison.cases                             # regressions, improvements, changed, unchanged
    comparison.regressions                       # the count `--fail-on-regression` exits on
    render_comparison_text(comparison)           # plain text for `weightgate eval compare A B`
    comparison.to_dict()                         # for --json

Cases are aligned by id; cases in only one run are listed apart and left out of every number.
Within each group the biggest score change comes first. Outputs are diffed word by word into
(op, text) segments, op one of "equal", "delete" (only in A), "insert" (only in B): pure data,
the UI colours it and `marked_text` spells it out with [-word-] / {+word+} markers.

Statistics (core.evaluation.stats, pure Python): exact McNemar on the pass/fail flips, the exact Wilcoxon
signed-rank test on the per-case score change, and paired-bootstrap 95 % intervals (fixed
seed) of the mean score change and the pass-rate change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from weightgate.core.engine.digest import short
from weightgate.core.engine.errors import InputError
from weightgate.core.evaluation import stats
from weightgate.core.evaluation.runs import COMPLETE, _load, find_run, list_runs
from weightgate.core.evaluation.word_diff import EQUAL, marked_text, visible, word_diff

REGRESSION, IMPROVEMENT, CHANGED, UNCHANGED = "regression", "improvement", "changed", "unchanged"
ORDER = (REGRESSION, IMPROVEMENT, CHANGED, UNCHANGED)
ARROWS = {REGRESSION: "▼", IMPROVEMENT: "▲", CHANGED: "≠", UNCHANGED: "="}
FOCUS_TAGS = ("hard", "edge")  # reported apart from the other tags
SCORE_EPS = 1e-9


# --- runs as compare reads them ------------------------------------------------------------

@dataclass
class RunView:
    """The parts of a run (run.json + cases.jsonl) that compare and review read."""

    id: str
    name: str = ""
    created: str | float | None = None
    set: str = ""
    evalset_digest: str = ""
    components: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    baseline: bool = False
    status: str = ""
    cases: list[dict] = field(default_factory=list)
    path: Path | None = None
    identity: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.id} ({self.name})" if self.name and self.name != self.id else self.id


def read_run_dir(path: Path) -> RunView:
    """A run directory as written by the eval job: run.json and cases.jsonl."""

    return from_run(_load(Path(path)))


def from_run(run) -> RunView:
    """A core.evaluation.runs.Run (cases read on first use) as compare reads it."""
    view = _view(run.to_dict(), [case.to_dict() for case in run.cases], run.path)
    view.identity = dict(run.identity)
    return view


def _view(meta: Mapping, cases: Iterable, path: Path | None) -> RunView:
    identity = meta.get("identity") or {}
    components = dict(identity.get("components") or {})
    return RunView(
        id=str(meta.get("id") or (path.name if path else "?")), name=str(meta.get("name") or ""),
        created=meta.get("created"), set=str(meta.get("set") or ""),
        evalset_digest=str(components.get("evalset") or ""), components=components,
        summary=dict(meta.get("summary") or {}), baseline=bool(meta.get("baseline")),
        status=str(meta.get("status") or ""), cases=[_case_dict(case) for case in cases], path=path,
        identity=dict(identity))


def _case_dict(case: Any) -> dict:
    if isinstance(case, Mapping):
        return dict(case)
    if hasattr(case, "to_dict"):
        return dict(case.to_dict())
    return dict(vars(case))


def as_run_view(run: Any, ws=None) -> RunView:
    """Accept what callers have: a RunView, a core.evaluation.runs.Run, a run id or unique prefix (needs
    `ws`), a run directory, or a mapping {"run": <run.json>, "cases": [...]}."""
    if isinstance(run, RunView):
        return run
    if isinstance(run, Path) or (isinstance(run, str) and ws is None):
        return read_run_dir(Path(run))
    if isinstance(run, str):
        return from_run(find_run(ws, run))
    if isinstance(run, Mapping):
        return _view(run.get("run") or run, run.get("cases") or [], None)
    return from_run(run)


def default_pair(ws) -> tuple[Any, Any]:
    """(A, B) core.evaluation.runs.Run to compare by default: B is the newest run (complete ones first),
    A the baseline of B's set (else the run of that set just before B). Either may be None."""

    runs = list_runs(ws)  # newest first
    if not runs:
        return None, None
    complete = [r for r in runs if r.status == COMPLETE]
    latest = (complete or runs)[0]
    same_set = [r for r in runs if r.id != latest.id and r.set == latest.set]
    baselines = [r for r in same_set if r.baseline]
    if baselines:
        return baselines[0], latest
    older = [r for r in same_set if (r.created, r.id) < (latest.created, latest.id)]
    return (older[0] if older else (same_set[0] if same_set else None)), latest


def resolve_pair(ws, ref_a: str | None = None, ref_b: str | None = None) -> tuple[Any, Any]:
    """Runs A and B for `weightgate eval compare [A [B]]`: ids or unique prefixes, or the words
    "baseline" (the baseline of B's set) and "latest"; what is not given follows default_pair."""

    default_a, default_b = default_pair(ws)

    def pick(ref: str | None, default, role: str):
        if ref is None or ref == ("baseline" if role == "A" else "latest"):
            if default is None:
                raise InputError(f"no run to use as {role}", path=ws.runs_dir,
                                 hint="compare needs two eval runs: `weightgate eval run`, change something, run it again")
            return default
        if ref == "latest":
            runs = list_runs(ws)
            if not runs:
                raise InputError("no eval runs yet", path=ws.runs_dir, hint="`weightgate eval run`")
            return runs[0]
        if ref == "baseline":
            if default_a is None or not default_a.baseline:
                raise InputError("no baseline run", hint="mark one with `weightgate eval baseline RUN`")
            return default_a
        return find_run(ws, ref)

    return pick(ref_a, default_a, "A"), pick(ref_b, default_b, "B")


def compare_command(ws, ref_a: str | None = None, ref_b: str | None = None, *, as_json: bool = False,
                    fail_on_regression: bool = False, show_unchanged: bool = False) -> tuple[str, int]:
    """What `weightgate eval compare A B [--json] [--fail-on-regression]` prints and its exit code:
    1 when --fail-on-regression is given and any case went from pass to fail, else 0."""

    comparison = compare_runs(*resolve_pair(ws, ref_a, ref_b))
    if as_json:
        text = json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_comparison_text(comparison, show_unchanged=show_unchanged)
    return text, 1 if fail_on_regression and comparison.regressions else 0


# --- word diff ------------------------------------------------------------------------------


# --- the comparison -----------------------------------------------------------------------

@dataclass
class CaseDiff:
    id: str
    status: str                   # regression / improvement / changed / unchanged
    tags: list[str]
    prompt: str
    expected: Any
    passed_a: bool
    passed_b: bool
    score_a: float
    score_b: float
    output_a: str
    output_b: str
    segments: list[tuple[str, str]]

    @property
    def delta(self) -> float:
        return self.score_b - self.score_a

    @property
    def arrow(self) -> str:
        return ARROWS[self.status]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["segments"] = [list(s) for s in self.segments]
        data["delta"] = self.delta
        return data


@dataclass
class GroupSummary:
    """Paired numbers for a set of cases (all, or one tag)."""

    cases: int = 0
    passed_a: int = 0
    passed_b: int = 0
    score_a: float = 0.0          # mean score
    score_b: float = 0.0
    regressions: int = 0
    improvements: int = 0
    changed: int = 0
    unchanged: int = 0

    @property
    def delta(self) -> float:
        return self.score_b - self.score_a

    @property
    def pass_rate_a(self) -> float:
        return self.passed_a / self.cases if self.cases else 0.0

    @property
    def pass_rate_b(self) -> float:
        return self.passed_b / self.cases if self.cases else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "delta": self.delta, "pass_rate_a": self.pass_rate_a,
                "pass_rate_b": self.pass_rate_b}


@dataclass
class Significance:
    mcnemar_p: float              # exact McNemar on pass/fail flips
    discordant: tuple[int, int]   # (pass->fail, fail->pass)
    wilcoxon_p: float             # Wilcoxon signed-rank on the score change
    wilcoxon_n: int               # cases whose score changed
    wilcoxon_exact: bool
    score_delta: float            # mean of B - A over paired cases
    score_ci: stats.Interval | None
    pass_rate_delta: float
    pass_rate_ci: stats.Interval | None
    resamples: int = stats.BOOTSTRAP_RESAMPLES
    seed: int = stats.BOOTSTRAP_SEED

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunRef:
    id: str
    name: str
    set: str
    evalset_digest: str
    created: Any
    baseline: bool

    @classmethod
    def of(cls, run: RunView) -> RunRef:
        return cls(run.id, run.name, run.set, run.evalset_digest, run.created, run.baseline)

    @property
    def label(self) -> str:
        return f"{self.id} ({self.name})" if self.name and self.name != self.id else self.id


@dataclass
class Comparison:
    run_a: RunRef
    run_b: RunRef
    cases: list[CaseDiff]
    only_in_a: list[str]
    only_in_b: list[str]
    overall: GroupSummary
    by_tag: dict[str, GroupSummary]         # every tag except hard and edge
    focus: dict[str, GroupSummary]          # hard and edge, always both (0 cases: none tagged)
    significance: Significance
    warnings: list[str]
    identity_changes: list[str]             # identity components that differ between A and B

    @property
    def regressions(self) -> int:
        return self.overall.regressions

    def by_status(self, status: str) -> list[CaseDiff]:
        return [case for case in self.cases if case.status == status]

    def case(self, case_id: str) -> CaseDiff | None:
        return next((case for case in self.cases if case.id == case_id), None)

    def to_dict(self) -> dict:
        return {
            "run_a": asdict(self.run_a), "run_b": asdict(self.run_b),
            "overall": self.overall.to_dict(),
            "by_tag": {tag: s.to_dict() for tag, s in self.by_tag.items()},
            "focus": {tag: s.to_dict() for tag, s in self.focus.items()},
            "significance": self.significance.to_dict(),
            "regressions": self.regressions,
            "warnings": list(self.warnings),
            "identity_changes": list(self.identity_changes),
            "only_in_a": list(self.only_in_a), "only_in_b": list(self.only_in_b),
            "cases": [case.to_dict() for case in self.cases],
        }


def _score(case: Mapping) -> float:
    value = case.get("score")
    if isinstance(value, bool) or value is None:
        return 1.0 if (value if value is not None else case.get("passed")) else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return 1.0 if case.get("passed") else 0.0


def prompt_text(case: Mapping) -> str:
    prompt = case.get("prompt", case.get("input", ""))
    if isinstance(prompt, list):  # chat messages
        return "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in prompt if isinstance(m, Mapping))
    return "" if prompt is None else str(prompt)


def _status(a: Mapping, b: Mapping, score_a: float, score_b: float) -> str:
    passed_a, passed_b = bool(a.get("passed")), bool(b.get("passed"))
    if passed_a and not passed_b:
        return REGRESSION
    if passed_b and not passed_a:
        return IMPROVEMENT
    if str(a.get("output") or "") != str(b.get("output") or "") or abs(score_b - score_a) > SCORE_EPS:
        return CHANGED
    return UNCHANGED


def compare_runs(run_a: Any, run_b: Any, *, ws=None) -> Comparison:
    """Align two runs by case id and compare them (see the module docstring)."""
    a, b = as_run_view(run_a, ws), as_run_view(run_b, ws)
    cases_a = {str(c.get("id")): c for c in a.cases}
    cases_b = {str(c.get("id")): c for c in b.cases}
    paired = [case_id for case_id in cases_a if case_id in cases_b]
    diffs: list[CaseDiff] = []
    for index, case_id in enumerate(paired):
        ca, cb = cases_a[case_id], cases_b[case_id]
        sa, sb = _score(ca), _score(cb)
        out_a, out_b = str(ca.get("output") or ""), str(cb.get("output") or "")
        tags = list(dict.fromkeys([*(ca.get("tags") or []), *(cb.get("tags") or [])]))
        diffs.append(CaseDiff(
            id=case_id, status=_status(ca, cb, sa, sb), tags=[str(t) for t in tags],
            prompt=prompt_text(ca) or prompt_text(cb), expected=ca.get("expected", cb.get("expected")),
            passed_a=bool(ca.get("passed")), passed_b=bool(cb.get("passed")), score_a=sa, score_b=sb,
            output_a=out_a, output_b=out_b,
            segments=word_diff(out_a, out_b) if out_a != out_b else ([(EQUAL, out_a)] if out_a else [])))
    position = {case_id: i for i, case_id in enumerate(paired)}

    def key(case: CaseDiff):
        rank = ORDER.index(case.status)
        # Regressions and changed: the biggest drop first; improvements: the biggest gain first.
        change = case.delta if case.status != IMPROVEMENT else -case.delta
        return (rank, change if case.status != UNCHANGED else 0.0, position[case.id])

    diffs.sort(key=key)
    tags = sorted({tag for case in diffs for tag in case.tags})
    warnings, changes = _warnings(a, b, paired, cases_a, cases_b)
    return Comparison(
        run_a=RunRef.of(a), run_b=RunRef.of(b), cases=diffs,
        only_in_a=[i for i in cases_a if i not in cases_b], only_in_b=[i for i in cases_b if i not in cases_a],
        overall=summarize(diffs),
        by_tag={tag: summarize([c for c in diffs if tag in c.tags]) for tag in tags if tag not in FOCUS_TAGS},
        focus={tag: summarize([c for c in diffs if tag in c.tags]) for tag in FOCUS_TAGS},
        significance=significance(diffs), warnings=warnings, identity_changes=changes)


def summarize(cases: list[CaseDiff]) -> GroupSummary:
    n = len(cases)
    summary = GroupSummary(cases=n)
    if not n:
        return summary
    summary.passed_a = sum(c.passed_a for c in cases)
    summary.passed_b = sum(c.passed_b for c in cases)
    summary.score_a = sum(c.score_a for c in cases) / n
    summary.score_b = sum(c.score_b for c in cases) / n
    for status, attr in ((REGRESSION, "regressions"), (IMPROVEMENT, "improvements"),
                         (CHANGED, "changed"), (UNCHANGED, "unchanged")):
        setattr(summary, attr, sum(1 for c in cases if c.status == status))
    return summary


def significance(cases: list[CaseDiff]) -> Significance:
    b = sum(1 for c in cases if c.passed_a and not c.passed_b)
    c_ = sum(1 for c in cases if c.passed_b and not c.passed_a)
    score_diffs = [c.delta for c in cases]
    pass_diffs = [float(c.passed_b) - float(c.passed_a) for c in cases]
    rank = stats.wilcoxon_signed_rank(score_diffs)
    n = len(cases)
    return Significance(
        mcnemar_p=stats.mcnemar_exact(b, c_), discordant=(b, c_),
        wilcoxon_p=rank.p_value, wilcoxon_n=rank.n, wilcoxon_exact=rank.exact,
        score_delta=sum(score_diffs) / n if n else 0.0, score_ci=stats.bootstrap_mean_ci(score_diffs),
        pass_rate_delta=sum(pass_diffs) / n if n else 0.0, pass_rate_ci=stats.bootstrap_mean_ci(pass_diffs))


def _warnings(a: RunView, b: RunView, paired: list[str], cases_a: dict, cases_b: dict) -> tuple[list[str], list[str]]:
    warnings = []
    if a.id == b.id:
        warnings.append("A and B are the same run")
    if a.set and b.set and a.set != b.set:
        warnings.append(f"different eval sets: A ran the {a.set} set, B the {b.set} set")
    if a.evalset_digest and b.evalset_digest and a.evalset_digest != b.evalset_digest:
        inputs_a, inputs_b = a.identity.get("evalset_inputs"), b.identity.get("evalset_inputs")
        what = ("the prompts are the same but expected answers, scorers or tags changed"
                if inputs_a and inputs_a == inputs_b else "the cases or their expected answers changed")
        warnings.append(f"different eval-set digests (A {short(a.evalset_digest)}, B {short(b.evalset_digest)}): "
                        f"{what} between the runs, so score changes may come from the eval set, not the model")
    elif not a.evalset_digest or not b.evalset_digest:
        warnings.append("a run does not record its eval-set digest; cannot tell whether both used the same cases")
    only_a, only_b = len(cases_a) - len(paired), len(cases_b) - len(paired)
    if only_a or only_b:
        warnings.append(f"{only_a} case(s) only in A and {only_b} only in B: left out of every number")
    if not paired:
        warnings.append("no case ids in common: nothing to compare")
    keys = sorted(set(a.components) | set(b.components))
    changes = [k for k in keys if k != "evalset" and a.components.get(k) != b.components.get(k)]
    return warnings, changes


# --- plain text -------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}"


def format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def format_ci(ci: stats.Interval | None, digits: int = 3) -> str:
    if ci is None:
        return "n/a"
    return f"[{ci.low:+.{digits}f}, {ci.high:+.{digits}f}]"


def summary_line(label: str, s: GroupSummary) -> str:
    if not s.cases:
        return f"{label:<12} no cases"
    return (f"{label:<12} {s.cases:>4} cases   pass {s.passed_a:>3} → {s.passed_b:<3}   "
            f"score {s.score_a:.3f} → {s.score_b:.3f} ({_signed(s.delta)})   "
            f"▼{s.regressions} ▲{s.improvements} ≠{s.changed}")


def significance_lines(sig: Significance) -> list[str]:
    b, c = sig.discordant
    level = int(round(100 * (sig.score_ci.level if sig.score_ci else 0.95)))
    rank = "exact" if sig.wilcoxon_exact else "normal approx."
    return [
        f"score change  {_signed(sig.score_delta)}   {level}% CI {format_ci(sig.score_ci)}   "
        f"(paired bootstrap, {sig.resamples} resamples, seed {sig.seed})",
        f"pass rate     {_signed(100 * sig.pass_rate_delta, 1)} pts   {level}% CI "
        f"[{100 * sig.pass_rate_ci.low:+.1f}, {100 * sig.pass_rate_ci.high:+.1f}] pts" if sig.pass_rate_ci
        else "pass rate     n/a",
        f"McNemar       {format_p(sig.mcnemar_p)}   (exact; {b} pass→fail, {c} fail→pass)",
        f"Wilcoxon      {format_p(sig.wilcoxon_p)}   (signed-rank, {rank}; {sig.wilcoxon_n} cases changed score)",
    ]


def render_comparison_text(comparison: Comparison, *, show_unchanged: bool = False, max_cases: int | None = None) -> str:
    """The report `weightgate eval compare A B` prints: plain text, no colour; diffs use [-…-] {+…+}."""
    c = comparison
    lines = [f"A  {c.run_a.label}   set {c.run_a.set or '?'}   eval set {short(c.run_a.evalset_digest) or '?'}"
             f"{'   (baseline)' if c.run_a.baseline else ''}",
             f"B  {c.run_b.label}   set {c.run_b.set or '?'}   eval set {short(c.run_b.evalset_digest) or '?'}"
             f"{'   (baseline)' if c.run_b.baseline else ''}"]
    for warning in c.warnings:
        lines.append(f"WARNING: {warning}")
    if c.identity_changes:
        lines.append(f"changed between A and B: {', '.join(c.identity_changes)}")
    lines += ["", summary_line("overall", c.overall)]
    for tag in FOCUS_TAGS:
        lines.append(summary_line(tag, c.focus[tag]))
    for tag, s in c.by_tag.items():
        lines.append(summary_line(f"  {tag}", s))
    lines += ["", *significance_lines(c.significance), ""]
    lines.append(f"{c.overall.regressions} regression(s), {c.overall.improvements} improvement(s), "
                 f"{c.overall.changed} changed output(s) with the same verdict, {c.overall.unchanged} unchanged")
    shown = [case for case in c.cases if show_unchanged or case.status != UNCHANGED]
    if max_cases is not None:
        shown = shown[:max_cases]
    for case in shown:
        tags = f"  [{', '.join(case.tags)}]" if case.tags else ""
        lines += ["", f"{case.arrow} {case.status:<11} {case.id}{tags}   score {case.score_a:.3f} → {case.score_b:.3f}"]
        if case.output_a == case.output_b:
            lines.append(f"    A = B: {_one_line(case.output_a)}")
        else:
            lines.append(f"    A: {_one_line(marked_text(case.segments, 'a'))}")
            lines.append(f"    B: {_one_line(marked_text(case.segments, 'b'))}")
    if c.only_in_a:
        lines += ["", f"only in A: {', '.join(c.only_in_a)}"]
    if c.only_in_b:
        lines += ["", f"only in B: {', '.join(c.only_in_b)}"]
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return visible(text.replace("\n", "⏎ "))
