"""Phase 5 · Fine-tuning: the data checks, the run, its loss, its checkpoints and the gate.

Above the items: the training panel follows the newest `train` job through its journal (a file,
never a pipe: the run goes on when the TUI or the SSH connection goes away). The first read
replays the whole history, including the jobs of the same run before a resume, so a TUI
restarted mid-run shows every step; then it follows live: the loss chart (train as a braille
line, validation as diamonds, the best one green; m toggles smoothing), step / epoch / lr /
grad norm / tokens/s / memory / ETA, the checkpoints with the best marked, and the last log
lines. Below it: the data checks and the keep-or-reject gate as the checklist has them.
Keys: d checks the training data and writes the cleaned split (a job), i shows the data check's
full report (.weightgate/data/report.json: duplicate pairs, leaks with the eval case they match,
over-long examples, PII by kind with lines and masked samples, tag balance, the split), f runs
the few-shot variant (prompting first), s checks and splits the data and starts a run, x stops
the run (SIGTERM: a checkpoint is saved; resume later), u resumes the newest stopped run, g runs
the keep-or-reject gate on the newest adapter, c and v open the gate's task and general
comparisons (base run vs adapter run) in the Compare screen, m toggles smoothing (on by default,
the raw loss faint behind it), O overlays an earlier training run's loss (each press the next older).
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Static

from weightgate.core.engine.events import read_events
from weightgate.core.engine.jobs import events_path
from weightgate.core.training.session import new_run_params
from weightgate.core.training.views import gate_pairs, gate_result, read_data_report
from weightgate.screens.finetuning.loss_chart import TrainingHistory
from weightgate.screens.finetuning.training_panel import ACTIVE_STATES, TrainingPanel
from weightgate.tui.widgets.base_screen import PhaseScreen
from weightgate.tui.widgets.facts import FactsPanel
from weightgate.tui.widgets.weights_actions import error_text

DATA_FACTS = [
    ("format", "tune.format"),
    ("duplicates", "tune.dedup"),
    ("eval leakage", "tune.leakage"),
    ("token lengths", "tune.token_lengths"),
    ("PII", "tune.pii"),
    ("balance", "tune.balance"),
    ("split", "tune.split"),
    ("gate", "tune.gate"),
]

SECTION_ROWS = 200   # rows a data-report section lists before "… N more"


# --- the gate's comparisons ----------------------------------------------------------------


def gate_text(result: dict | None) -> Content:
    pairs = gate_pairs(result)
    if not pairs:
        return Content.styled("Gate comparisons: none yet (g runs the gate on the newest adapter)", "$text-muted")
    verdict = "kept" if result.get("kept") else "rejected"
    lines = [Content.assemble(("Gate comparisons ", "bold"), f"adapter {result.get('adapter', '?')}: ",
                              (verdict, "bold $success" if result.get("kept") else "bold $error"))]
    for set_name, key in (("task", "c"), ("general", "v")):
        if set_name not in pairs:
            continue
        row = result[set_name]
        base, tuned, delta = row.get("base"), row.get("adapter"), row.get("delta")
        scores = (f"  {base:.3f} -> {tuned:.3f} ({delta:+.3f})"
                  if all(isinstance(v, (int, float)) for v in (base, tuned, delta)) else "")
        lines.append(Content.assemble(f"  {set_name:<8}", f"base run {pairs[set_name][0]} vs adapter run "
                                      f"{pairs[set_name][1]}{scores}  ", (f"{key} opens it in Compare", "$text-muted")))
    return Content("\n").join(lines)


# --- the data check's full report --------------------------------------------------------------


def _more(rows: list, shown: int = SECTION_ROWS) -> list[Content]:
    extra = len(rows) - shown
    return [Content.styled(f"    … {extra} more (weightgate data check --json lists them all)", "$text-muted")] \
        if extra > 0 else []


def _where(row: dict) -> str:
    return f"line {row.get('line', '?')} ({row.get('id', '?')})"


def data_report_text(data: dict) -> Content:
    """Every finding of a data-check report, by section. PII is shown as counts, lines and the
    masked sample the report keeps (its first characters and an ellipsis), never the text."""
    bold, muted, bad, good = "bold", "$text-muted", "$error", "$success"
    formats = ", ".join(f"{name} {count}" for name, count in sorted((data.get("formats") or {}).items())) or "none"
    lines = [Content.assemble((str(data.get("path", "?")), bold),
                              f": {data.get('examples', 0)} examples ({formats}) -> {data.get('units', 0)} records; "
                              f"context {data.get('max_tokens', '?')} tokens")]
    blocking = data.get("blocking") or []
    if blocking:
        lines.append(Content.assemble(("blocking: ", f"bold {bad}"), "; ".join(blocking),
                                      (" (fix the file, then d again; nothing is prepared meanwhile)", muted)))
    elif data.get("digest"):
        lines.append(Content.assemble(("prepared ", f"bold {good}"), f"{data.get('prepared') or ''} "
                                      f"(digest {str(data['digest'])[:16]})"))

    def section(title: str, count: int, ok_text: str, bad_text: str | None = None) -> None:
        lines.append(Content(""))
        lines.append(Content.assemble((title, "bold underline"), "  ",
                                      ((bad_text or f"{count} found") if count else ok_text, bad if count else good)))

    problems = [*(data.get("problems") or []), *(data.get("render_problems") or [])]
    section("Schema", len(problems), "every line reads")
    for problem in problems[:SECTION_ROWS]:
        where = f"line {problem.get('line')}: " if problem.get("line") else ""
        lines.append(Content.assemble(f"    {where}{problem.get('error', '')}",
                                      (f"  hint: {problem['hint']}" if problem.get("hint") else "", muted)))
    lines.extend(_more(problems))

    exact, near = data.get("exact_duplicates") or [], data.get("near_duplicates") or []
    pairs = [(row, group["kept"]) for group in exact for row in group.get("removed", [])]
    section("Duplicates", len(pairs) + len(near), "none")
    for row, kept in pairs[:SECTION_ROWS]:
        lines.append(Content.assemble(f"    {_where(row)} = {_where(kept)}", ("  exact; the later one is left out", muted)))
    lines.extend(_more(pairs))
    for pair in near[:SECTION_ROWS]:
        similarity = pair.get("similarity")
        lines.append(Content.assemble(f"    {_where(pair.get('b', {}))} ~ {_where(pair.get('a', {}))}",
                                      f"  similarity {similarity:.2f}" if isinstance(similarity, (int, float)) else "",
                                      ("  near; the later one is left out", muted)))
    lines.extend(_more(near))

    leaks = data.get("leakage") or []
    sizes = data.get("leakage_sets") or {}
    section("Eval leakage", len(leaks), "none: no training example contains an eval case")
    if sizes:
        lines.append(Content.styled("    against " + ", ".join(f"the {k} set ({v} cases)" for k, v in sizes.items()),
                                    muted))
    for leak in leaks[:SECTION_ROWS]:
        containment = leak.get("containment")
        lines.append(Content.assemble(f"    {_where(leak)} matches {leak.get('set', '?')} case ",
                                      (str(leak.get("case", "?")), bold),
                                      f" ({containment:.0%})" if isinstance(containment, (int, float)) else "",
                                      ("  left out of the prepared copy", muted)))
    lines.extend(_more(leaks))

    over = data.get("over_long") or []
    section("Token lengths", len(over), f"every example fits {data.get('max_tokens', '?')} tokens")
    for row in over[:SECTION_ROWS]:
        lines.append(Content.assemble(f"    {_where(row)}: {row.get('tokens', '?')} tokens > {data.get('max_tokens', '?')}",
                                      ("  shorten or split it (never truncated)", muted)))
    lines.extend(_more(over))

    pii = data.get("pii") or {}
    counts = {kind: n for kind, n in (pii.get("counts") or {}).items() if n}
    findings = pii.get("findings") or []
    section("PII", int(pii.get("total") or 0), "none found")
    if counts:
        lines.append(Content.assemble("    by kind: ", ", ".join(f"{kind} {n}" for kind, n in counts.items()),
                                      ("  (replaced by placeholders in the prepared copy; the original is never "
                                       "edited)", muted)))
        by_kind: dict[str, list[str]] = {}
        for row in findings:
            by_kind.setdefault(str(row.get("kind")), []).append(str(row.get("line", "?")))
        for kind, where in by_kind.items():
            lines.append(Content.assemble(f"    {kind:<8}", ("lines ", muted), ", ".join(where[:40]),
                                          f" … +{len(where) - 40}" if len(where) > 40 else ""))
    for row in findings[:SECTION_ROWS]:
        lines.append(Content.assemble(f"    {_where(row)}: {row.get('kind', '?')} ",
                                      (str(row.get("sample") or "…"), muted)))
    lines.extend(_more(findings))

    tags = data.get("tags") or {}
    tag_counts = tags.get("counts") or {}
    section("Tag balance", 1 if tags.get("skewed") else 0, "balanced" if len(tag_counts) >= 2 else
            ("one tag only" if tag_counts else "no tags"), bad_text="skewed")
    if tag_counts:
        lines.append(Content("    " + ", ".join(f"{tag} {n}" for tag, n in tag_counts.items())
                             + (f"; untagged {tags['untagged']}" if tags.get("untagged") else "")))
    if tags.get("ratio") is not None:
        lines.append(Content.assemble(f"    {tags.get('most')} : {tags.get('least')} = {tags['ratio']:g} to 1",
                                      (f" (at most {tags.get('max_ratio'):g} to 1)", muted)))

    split = data.get("split") or {}
    removed = data.get("removed") or {}
    lines.append(Content(""))
    lines.append(Content.assemble(("Split", "bold underline"), "  ",
                                  f"{split.get('train', '?')} train / {split.get('val', '?')} validation",
                                  (f"  (val fraction {split.get('val_fraction', '?')}, by {split.get('method', '?')})",
                                   muted)))
    if removed:
        lines.append(Content("    left out: " + ", ".join(f"{len(ids)} {reason}" for reason, ids in removed.items())))
    counts_after = data.get("counts") or {}
    if counts_after:
        lines.append(Content("    prepared: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts_after.items())))
    boiler = data.get("boilerplate") or {}
    if boiler.get("lines_removed"):
        lines.append(Content.styled(f"    raw text: {boiler['lines_removed']} boilerplate line(s) removed, "
                                    f"{boiler.get('chunks', '?')} chunks", muted))
    return Content("\n").join(lines)


class DataReportModal(ModalScreen[None]):
    """The data check's whole report, scrollable; escape closes it."""

    DEFAULT_CSS = """
    DataReportModal { align: center middle; }
    DataReportModal > VerticalScroll {
        width: 120; max-width: 98%; height: auto; max-height: 96%; padding: 0 1;
        border: thick $primary 60%; background: $surface;
    }
    DataReportModal #data-report-title { padding: 0 1 1 1; }
    """

    BINDINGS = [Binding("escape,i,q", "close", "Close")]

    def __init__(self, data: dict, path: Path) -> None:
        super().__init__()
        self.data, self.path = data, path

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Content.assemble(("Data check report", "bold $primary"), (f"   {self.path}   escape closes",
                                                                                  "$text-muted")),
                         id="data-report-title")
            yield Static(data_report_text(self.data), id="data-report-body")

    @property
    def plain(self) -> str:
        return data_report_text(self.data).plain

    def action_close(self) -> None:
        self.dismiss(None)


class FinetuningScreen(PhaseScreen):
    TARGET = "phase-5"
    PHASE = 5
    HELP = ("Fine-tuning (only if the baseline misses the threshold): data checks, the LoRA/QLoRA run with its "
            "live loss and checkpoints, and the keep-or-reject gate. The run is a detached job: quit, reconnect, "
            "come back, and the whole history replays. x stops it with a checkpoint, u resumes, m smooths the loss.")

    BINDINGS = [
        Binding("d", "data_check", "Data check", tooltip="Check the training data and write the cleaned split"),
        Binding("f", "fewshot", "Few-shot", tooltip="Prompting first: the task set with few-shot examples (a job)"),
        Binding("s", "start_run", "Train", tooltip="Check and split the training data, then start a LoRA/QLoRA run"),
        Binding("g", "gate", "Gate", tooltip="Keep or reject the newest adapter: task and general sets (a job)"),
        Binding("c", "gate_compare('task')", "Gate: task",
                tooltip="Open the gate's task comparison (base run vs adapter run) in the Compare screen"),
        Binding("v", "gate_compare('general')", "Gate: general",
                tooltip="Open the gate's general-set comparison (base run vs adapter run) in the Compare screen"),
        Binding("i", "data_report", "Data report",
                tooltip="The data check's full report: duplicates, leaks, lengths, PII, tags, split"),
        Binding("m", "smooth", "Smooth loss",
                tooltip="Toggle the moving average of the train loss (on: the raw loss faint behind it)"),
        Binding("O", "overlay", "Overlay run", tooltip="Draw an earlier training run's loss on the same chart "
                "(each press: the next older run, then none)"),
        Binding("x", "stop_run", "Stop run", tooltip="SIGTERM: the run saves a checkpoint and stops (resume with u)"),
        Binding("u", "resume_run", "Resume", tooltip="Continue the newest stopped run from its last checkpoint"),
    ]
    STATEFUL_ACTIONS = (*PhaseScreen.STATEFUL_ACTIONS, "data_check", "start_run", "stop_run", "resume_run", "gate",
                        "gate_compare")

    DEFAULT_CSS = """
    FinetuningScreen #gate-compare { height: auto; margin: 0 0 1 0; padding: 0 1; }
    """

    def compose_panels(self) -> ComposeResult:
        yield TrainingPanel(id="training")
        yield FactsPanel("Data checks and the gate", DATA_FACTS, source="weightgate data check · weightgate train gate"
                                                                        " · i: the full data report",
                         id="tune-facts")
        yield Static("", id="gate-compare")

    @property
    def panel(self) -> TrainingPanel:
        return self.query_one("#training", TrainingPanel)

    def on_mount(self) -> None:
        super().on_mount()
        self._preparing = False
        self._gate: dict | None = None
        self.watch(self.app, "job_rows", self._jobs_changed)
        self.watch(self.app, "report", self._report_changed)

    def _report_changed(self, report) -> None:
        """The gate's newest verdict (a small file read, every report refresh): a gate job that
        just finished shows up with the report that follows it."""
        try:
            result = gate_result(getattr(self.app, "workspace", None), report)
        except Exception:  # noqa: BLE001 - a damaged report must not break the screen
            result = None
        if result != self._gate:
            self._gate = result
            try:
                self.query_one("#gate-compare", Static).update(gate_text(result))
            except NoMatches:
                pass
        self.update_bindings()

    def newest_train_row(self):
        for row in getattr(self.app, "job_rows", None) or []:   # newest first
            if row.status.kind == "train":
                return row
        return None

    def _jobs_changed(self, rows) -> None:
        row = self.newest_train_row()
        jobs_dir = getattr(self.app, "jobs_dir", None)
        if row is None:
            return
        job_dir = row.status.job_dir or (jobs_dir / row.job_id if jobs_dir else None)
        if job_dir is None:
            return
        try:
            self.panel.follow(row.job_id, job_dir, row.status.state)
        except NoMatches:
            return
        self.update_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "gate_compare":
            pairs = gate_pairs(getattr(self, "_gate", None))
            wanted = parameters[0] if parameters else None
            return True if (wanted in pairs if wanted else pairs) else None
        row = self.newest_train_row() if action in ("start_run", "stop_run", "resume_run", "gate") else None
        if action == "gate":
            return True if row is not None and row.status.state == "succeeded" else None
        if action == "start_run":
            return True if (row is None or row.status.is_terminal) and not getattr(self, "_preparing", False) else None
        if action == "stop_run":
            return True if row is not None and row.status.state in ACTIVE_STATES else None
        if action == "resume_run":
            return True if row is not None and row.status.state in ("cancelled", "failed", "crashed") else None
        return super().check_action(action, parameters)

    def action_start_run(self) -> None:
        workspace = self.app.workspace
        if workspace is None:
            return
        self._preparing = True
        self.update_bindings()
        self.notify("Checking and splitting the training data…", title="Train")

        def prepare() -> None:
            try:
                params = new_run_params(workspace, 1, None, "auto")   # the job picks a GPU when torch sees one
            except Exception as exc:  # noqa: BLE001 - notified with its hint
                self.app.call_from_thread(self._prepared, None, error_text(exc))
                return
            self.app.call_from_thread(self._prepared, params, None)
        self.run_worker(prepare, thread=True, group="train-prepare", exit_on_error=False)

    def _prepared(self, params: dict | None, error: str | None) -> None:
        self._preparing = False
        if error is not None:
            self.notify(error, title="Cannot start training", severity="error", timeout=12)
        elif self.app.start_job("train", params, show_jobs=False):
            self.notify("The run goes on after you quit; x stops it with a checkpoint.", title="Training started")
        self.update_bindings()

    def action_data_check(self) -> None:
        # A job: the tokenizer is loaded in the job's process, not the TUI's.
        self.app.start_job("data_check", {"fix": True})

    def action_fewshot(self) -> None:
        self.app.start_job("fewshot", {"shots": 3})

    def action_gate(self) -> None:
        self.app.start_job("tune_gate", {})

    def action_gate_compare(self, set_name: str) -> None:
        """The gate's comparison of `set_name` in the Compare screen: run A = the base model's
        baseline, run B = the adapter's gate run (as `weightgate eval compare A B`)."""
        result = gate_result(getattr(self.app, "workspace", None), self.report)
        pair = gate_pairs(result).get(set_name)
        if pair is None:
            self.notify(f"No gate comparison of the {set_name} set yet: g runs the gate on the newest adapter.",
                        title="Gate", severity="warning")
            return
        self.app.compare_request = pair
        self.app.goto("compare")

    def action_data_report(self) -> None:
        data, path, problem = read_data_report(getattr(self.app, "workspace", None))
        if data is None:
            self.notify(problem or "no data report", title="Data report", severity="warning")
            return
        self.app.push_screen(DataReportModal(data, path))

    def action_smooth(self) -> None:
        self.panel.toggle_smoothing()

    def overlay_candidates(self) -> list:
        """Other train jobs with a journal, newest first (the followed one left out)."""
        followed = self.panel.job_id
        return [row for row in getattr(self.app, "job_rows", None) or []
                if row.status.kind == "train" and row.job_id != followed]

    def action_overlay(self) -> None:
        candidates = self.overlay_candidates()
        if not candidates:
            self.notify("No other training run to overlay yet.", title="Overlay", severity="warning")
            return
        ids = [row.job_id for row in candidates]
        current = self._overlaid if getattr(self, "_overlaid", None) in ids else None
        following = ids[ids.index(current) + 1] if current is not None and ids.index(current) + 1 < len(ids) else \
            (None if current is not None else ids[0])
        self._overlaid = following
        if following is None:
            self.panel.show_overlay(None)
            return
        row = candidates[ids.index(following)]
        jobs_dir = self.app.jobs_dir
        job_dir = row.status.job_dir or jobs_dir / following

        def read() -> None:
            history = TrainingHistory()
            try:
                history.add(read_events(events_path(job_dir))[0])
            except OSError as exc:
                self.app.call_from_thread(self.notify, str(exc), title="Overlay", severity="error")
                return
            self.app.call_from_thread(self.panel.show_overlay, history, f"run {following}")
        self.run_worker(read, thread=True, group="train-overlay", exclusive=True, exit_on_error=False)

    def action_stop_run(self) -> None:
        row = self.newest_train_row()
        if row is not None:
            self.app.cancel_job(row.job_id)

    def action_resume_run(self) -> None:
        if self.app.start_job("train", {"resume": "last"}, show_jobs=False):
            self.notify("Resuming the newest stopped run from its last checkpoint.", title="Resume")
