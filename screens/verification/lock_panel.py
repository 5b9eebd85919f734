"""The Verification screen's lock panel: what weightgate.lock pins, each file's state, and the
live progress of a verify, download or conversion job.

`read_lock_view(ws)` (a thread worker) reads weightgate.lock, stats every locked file
(core.engine.lock.changed_on_disk: size or mtime moved since it last matched means "verify again"),
and scans every locked pickle with the static scanner (cached by path, size and mtime; never
unpickles), noting its trust and its safetensors twin. The panel adds what the checklist knows: a
file the last verification found different (verify.checksum failed) or whose header is bad
(verify.headers failed) is named as such.

One row per file (LockFilesTable): its hash state (matches published / computed locally /
MISMATCH, or what is wrong with it), a progress bar with the rate while a job hashes or fetches
it (the verify and download jobs' per-file `progress` events, scope "file"), and what a pickle
would import (scan findings; "—" for everything else). A download's files have rows before the
lock exists. A job is followed through JournalTail (its events.jsonl, replayed then tailed) and
folded into a Transfer: bytes done / total, MB/s, ETA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from weightgate.core.weights.views import LockView, PickleInfo
from weightgate.tui.widgets.busy_line import BusyLine
from weightgate.tui.widgets.fitted_table import Column, FittedTable, middle_ellipsis
from weightgate.tui.widgets.journal_tail import JournalTail, Transfer
from weightgate.tui.widgets.status import Look, job_look, rich_style
from weightgate.tui.widgets.units import human_bytes, human_eta, human_rate, when

if TYPE_CHECKING:
    from weightgate.core.engine.events import Event
    from weightgate.core.engine.lock import LockedFile
    from weightgate.core.engine.status import ItemStatus, Report


def _item(report: Report | None, item_id: str) -> ItemStatus | None:
    if report is None:
        return None
    try:
        return report.item(item_id)
    except KeyError:
        return None


def _item_values(report: Report | None, item_id: str, key: str) -> dict:
    """values[key] of a failing item (what the last verification found), else {}."""
    status = _item(report, item_id)
    if status is None or status.status != "fail":
        return {}
    found = (status.values or {}).get(key)
    return found if isinstance(found, dict) else {}


def file_state(path: str, entry: LockedFile, view: LockView, failed: dict, faults: dict) -> Look:
    """One locked file's state, most urgent first; when it is fine, which hash it matches."""
    if path in view.unsafe:
        return Look("✗", "unsafe path", "error")
    if path in failed:
        word = str(failed[path]).replace("_", " ")
        return Look("✗", word.upper() if word == "mismatch" else word, "error")
    if path in faults:
        return Look("✗", f"bad header: {faults[path]}", "error")
    if path in view.missing:
        return Look("✗", "missing", "error")
    if path in view.changed:
        return Look("↻", "changed on disk", "warning")
    if not entry.verified_at:
        return Look("○", "not verified", "primary")
    return _matched(entry)


def _matched(entry: LockedFile | None) -> Look:
    if entry is not None and entry.hash_source == "published":
        return Look("✓", "matches published", "success")
    return Look("✓", "computed locally", "success")


# What a job's per-file `state` says about a file, while the job runs (and until the lock is
# read again after it): the verify job's outcomes (core.weights.verify) and the download job's states.
LIVE_LOOKS = {
    "hashing": Look("…", "hashing", "primary"),
    "mismatch": Look("✗", "MISMATCH", "error"),
    "size_differs": Look("✗", "size differs", "error"),
    "missing": Look("✗", "missing", "error"),
    "unreadable": Look("✗", "unreadable", "error"),
    "unsafe_path": Look("✗", "unsafe path", "error"),
    "changed_during_verify": Look("↻", "changed while hashed", "warning"),
    "queued": Look("·", "queued", "muted"),
    "downloading": Look("↓", "downloading", "primary"),
    "retrying": Look("↻", "retrying", "warning"),
    "failed": Look("✗", "failed", "error"),
}


def live_look(state: str, entry: LockedFile | None, header: str = "") -> Look | None:
    if state in ("ok", "unchanged", "verified", "reused", "done"):
        if header and header not in ("ok", "not_checked"):
            return Look("✗", f"bad header: {header}", "error")
        if entry is None:
            return Look("✓", "reused from cache" if state == "reused" else "verified", "success")
        return _matched(entry)
    return LIVE_LOOKS.get(state)


@dataclass
class FileProgress:
    """One file in a job's per-file progress events."""

    done: float = 0.0
    total: float | None = None
    rate: float | None = None
    state: str = ""
    header: str = ""

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return 1.0 if self.state and self.state not in ("hashing", "queued", "downloading") else None
        return max(0.0, min(1.0, self.done / self.total))


@dataclass(frozen=True)
class FileRow:
    path: str
    entry: LockedFile | None          # None: a file a download is fetching, not locked yet
    state: Look
    progress: FileProgress | None = None
    job_kind: str = ""                # the followed job's kind while it runs ("" otherwise)
    pickle: PickleInfo | None = None


def scan_text(row: FileRow) -> tuple[str, str]:
    """(text, colour) of the Scan cell."""
    info = row.pickle
    if info is None:
        return "—", "muted"
    scan = info.scan
    if scan.findings:
        return "✗ " + ", ".join(scan.findings), "error"
    if scan.error:
        return f"✗ {scan.error}", "error"
    names = [name.rsplit(".", 1)[-1] for name in scan.imports]
    return "✓ " + (", ".join(names) if names else "imports nothing"), "foreground"


class LockFilesTable(FittedTable):
    """One row per locked file (and per file a download is fetching); the row key is its path."""

    COLUMNS = (
        Column("path", "File"),
        Column("size", "Size", 9, drop=1),
        Column("hash", "Hash", 19),
        Column("progress", "Progress", 21),
        Column("scan", "Scan", 18),
    )
    DEFAULT_CSS = """
    LockFilesTable { height: auto; max-height: 10; min-height: 2; overflow-x: hidden; }
    """

    def cells(self, row: FileRow) -> dict[str, Text]:
        variables = self.app.theme_variables
        entry = row.entry
        size = entry.size if entry is not None else (row.progress.total if row.progress else None)
        scan, scan_color = scan_text(row)
        return {
            "path": Text(middle_ellipsis(row.path, self.width_of("path")), no_wrap=True, overflow="ellipsis"),
            "size": Text(human_bytes(size), justify="right"),
            "hash": Text(row.state.label, no_wrap=True, overflow="ellipsis",
                         style=rich_style(row.state.color, variables, bold=row.state.color == "error")),
            "progress": self.progress_cell(row, variables),
            "scan": Text(scan, no_wrap=True, overflow="ellipsis", style=rich_style(scan_color, variables)),
        }

    def progress_cell(self, row: FileRow, variables: dict[str, str]) -> Text:
        progress = row.progress
        if progress is None:
            if row.job_kind == "verify":
                return Text("queued", style=rich_style("muted", variables))
            verified = row.entry.verified_at if row.entry is not None else 0
            return Text(f"verified {when(verified)}" if verified else "never verified", no_wrap=True,
                        style=rich_style("muted", variables))
        return progress_text(progress, variables, self.width_of("progress") or 20)


def progress_text(progress: FileProgress, variables: dict[str, str], width: int = 20) -> Text:
    """━━━━━  45% 512 MB/s: a bar, the share done and the file's rate."""
    fraction = progress.fraction
    cells = 5
    text = Text(no_wrap=True, overflow="ellipsis")
    if fraction is None:
        text.append("━" * cells, style=rich_style("muted", variables))
        text.append("   …")
    else:
        filled = round(fraction * cells)
        text.append("━" * filled, style=rich_style("primary", variables))
        text.append("━" * (cells - filled), style=rich_style("muted", variables))
        text.append(f" {fraction:4.0%}")
    if progress.rate:
        text.append(f" {human_rate(progress.rate)}")
    return text


@dataclass
class FollowedJob:
    """The job the panel follows and what its journal said so far."""

    job_id: str
    kind: str
    transfer: Transfer = field(default_factory=Transfer)
    state: str = "running"
    error: str = ""
    failed_files: list[str] = field(default_factory=list)
    mb_per_s: float | None = None
    result: dict = field(default_factory=dict)
    files: dict[str, FileProgress] = field(default_factory=dict)   # per-file progress events
    subject: str = ""                                              # convert_pickle: the file

    def apply(self, events: list[Event]) -> bool:
        """Fold events in; True once the result is in."""
        for event in events:
            payload = event.payload
            if event.kind == "progress" and payload.get("scope") == "file":
                self._file_event(payload)
            if self.transfer.apply(event):
                continue
            if event.kind == "metric":
                rate = (payload.get("values") or {}).get("mb_per_s")
                if isinstance(rate, (int, float)):
                    self.mb_per_s = float(rate)
            elif event.kind == "log" and payload.get("level") == "error":
                self.failed_files.append(str(payload.get("message", "")))
            elif event.kind == "error" and event.seq:
                self.error = str(payload.get("message", ""))
            elif event.kind == "result":
                self.state = str(payload.get("status", "?"))
                self.result = payload.get("data") or {}
        return self.state != "running"

    def _file_event(self, payload: dict) -> None:
        path = str(payload.get("file") or payload.get("message") or "")
        if not path:
            return
        progress = self.files.setdefault(path, FileProgress())
        done, total, rate = (payload.get(key) for key in ("done", "total", "rate_bps"))
        if isinstance(done, (int, float)):
            progress.done = float(done)
        if isinstance(total, (int, float)):
            progress.total = float(total)
        if isinstance(rate, (int, float)) and rate > 0:
            progress.rate = float(rate)   # a final event without a rate keeps the last one
        progress.state = str(payload.get("state") or progress.state)
        progress.header = str(payload.get("header") or progress.header)

    def text(self) -> Content:
        if self.kind == "convert_pickle":
            return self._convert_text()
        look = job_look(self.state)
        t = self.transfer
        verb = "hashed" if self.kind == "verify" else "fetched"
        head = Content.styled(f"{look.icon} {self.kind} {look.word}",
                              f"bold ${look.color}" if look.color != "muted" else "bold $text-muted")
        job = Content.styled(f"   job {self.job_id}", "$text-muted")
        amount = f"{verb} {human_bytes(t.done)} / {human_bytes(t.total)}" if t.seen else ""
        if self.state == "running":
            parts = [amount or "starting…"]
            if t.seen:
                parts.append(human_rate(t.rate))
                parts.append(f"ETA {human_eta(t.eta_s)}")
            second = f"  job {self.job_id}"
            if self.kind == "download" and t.file:
                share = f" {t.file_done / t.file_total:.0%}" if t.file_total else ""
                second += f" · {t.file}{share}"
            return Content("\n").join([Content.assemble(head, "  ", _bar(t.fraction), "  ", " · ".join(parts)),
                                       Content.styled(second, "$text-muted")])
        if self.state == "succeeded":
            rate = f" at {human_rate(self.mb_per_s * 1e6)}" if self.mb_per_s else (
                f" at {human_rate(t.rate)}" if t.rate else "")
            done = f"  {amount}{rate}" if amount else ""
            if self.kind == "verify":
                files = (self.result.get("totals") or {}).get("files")
                done += f" · {files} files match the lock" if files else " · every file matches the lock"
            else:
                done += " · lock written"
            return Content.assemble(head, done, job)
        lines = [Content.assemble(head, ("  " + (self.error or self.state), "$error"), job)]
        for line in self.failed_files[:4]:
            lines.append(Content.styled(f"  {line}", "$error"))
        return Content("\n").join(lines)


    def _convert_text(self) -> Content:
        look = job_look(self.state)
        what = f" {self.subject}" if self.subject else ""
        head = Content.styled(f"{look.icon} convert{what} {look.word}",
                              f"bold ${look.color}" if look.color != "muted" else "bold $text-muted")
        job = Content.styled(f"   job {self.job_id}", "$text-muted")
        t = self.transfer
        if self.state == "running":
            amount = f"checked {t.done:.0f} / {t.total:.0f} tensors" if t.seen and t.total else \
                "loading with torch.load(weights_only=True)…"
            return Content.assemble(head, "  ", _bar(t.fraction), "  ", amount, job)
        if self.state == "succeeded":
            locked = self.result.get("locked") or {}
            output = Path(str(self.result.get("output", ""))).name
            done = f"  → {output}, {self.result.get('tensors', '?')} tensors, equal bit for bit"
            done += f" · locked as the twin of {locked['of']}" if locked.get("twin") else " · not in the lock"
            return Content.assemble(head, done, job)
        return Content.assemble(head, ("  " + (self.error or self.state), "$error"), job)


def _bar(fraction: float | None, cells: int = 12) -> Content:
    if fraction is None:
        return Content.styled("━" * cells, "$text-muted")
    filled = round(fraction * cells)
    return Content.assemble(("━" * filled, "$primary"), ("━" * (cells - filled), "$text-muted"),
                            f" {fraction:4.0%}")


class LockPanel(Vertical):
    """Lock facts, the followed job, the files table; or the no-lock message."""

    DEFAULT_CSS = """
    LockPanel {
        height: auto; margin: 0 0 1 0; padding: 0 1;
        border: round $panel; border-title-color: $text-muted; border-subtitle-color: $text-muted;
    }
    LockPanel #lock-facts { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    LockPanel #lock-job { height: auto; display: none; text-wrap: nowrap; text-overflow: ellipsis; }
    LockPanel #lock-job.-visible { display: block; }
    LockPanel #lock-empty { height: auto; }
    LockPanel #lock-selected { height: auto; display: none; }
    LockPanel #lock-selected.-visible { display: block; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: LockView | None = None
        self.report: Report | None = None
        self.job: FollowedJob | None = None
        self._rows: list[FileRow] = []
        # (view, report) when the followed job ended: its per-file states overlay the rows until both
        # have been read again (the report can lag the lock; the overlay spares a flicker).
        self._view_at_job_end: tuple[LockView | None, Report | None] | None = None
        self.border_title = "Lock · weightgate.lock"
        self.border_subtitle = "v verify · f fetch · c convert a pickle"

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("reading weightgate.lock…", "$text-muted"), id="lock-facts")
        yield Static("", id="lock-job")
        yield LockFilesTable(id="lock-files")
        yield Static("", id="lock-selected")
        yield Static("", id="lock-empty")
        yield BusyLine(id="lock-busy")
        yield JournalTail()

    def on_mount(self) -> None:
        self.query_one(LockFilesTable).display = False
        self.query_one("#lock-empty").display = False

    @property
    def table(self) -> LockFilesTable:
        return self.query_one(LockFilesTable)

    @property
    def tail(self) -> JournalTail:
        return self.query_one(JournalTail)

    # --- the lock -----------------------------------------------------------------------------

    def show(self, view: LockView, report: Report | None) -> None:
        self.view, self.report = view, report
        lock = view.lock
        facts = self.query_one("#lock-facts", Static)
        empty = self.query_one("#lock-empty", Static)
        facts.display = lock is not None
        self._show_rows()
        empty.display = lock is None
        if lock is None:
            lines = [Content.assemble(("No weights locked yet: ", "bold"),
                                      "choose a model in phase 1 (c) and fetch it (f).")]
            if view.error:
                lines = [Content.assemble(("✗ weightgate.lock cannot be read: ", "bold $error"), view.error)]
            elif self.following and self.job.kind == "download":
                lines = [Content.assemble(("Downloading", "bold"), f" {view.chosen or 'the model'}: "
                                          "weightgate.lock is written once every file has been verified.")]
            elif view.chosen:
                lines.append(Content.assemble("Chosen: ", (view.chosen, "bold"),
                                              ". Press f here to fetch it: a hub model downloads in a job "
                                              "(verified while it downloads), a local one is hashed now."))
            else:
                lines.append(Content.styled("Nothing is chosen yet: go to phase 1 (1), shortlist candidates (+) "
                                            "and choose one (c).", "$text-muted"))
            empty.update(Content("\n").join(lines))
            return
        facts.update(self.facts_text(view))

    def _live(self) -> FollowedJob | None:
        """The followed job whose per-file states still describe the files: while it runs, and
        after it ended until the lock and the report are read again (they then say the same)."""
        job = self.job
        if job is None or job.kind not in ("verify", "download") or not job.files:
            return None
        if job.state == "running":
            return job
        ended_with = self._view_at_job_end
        if ended_with is not None and (self.view is ended_with[0] or self.report is ended_with[1]):
            return job   # the lock or the report is not yet read again since the job ended
        return None

    def _show_rows(self) -> None:
        """Rebuild the rows from the lock view, the report and the followed job's files."""
        view, report = self.view, self.report
        lock = view.lock if view is not None else None
        live = self._live()
        running = self.job.kind if self.job is not None and self.job.state == "running" else ""
        job_files = self.job.files if self.job is not None and self.job.kind in ("verify", "download") else {}
        failed = _item_values(report, "verify.checksum", "failed")
        faults = _item_values(report, "verify.headers", "faults")
        rows: dict[str, FileRow] = {}
        for entry in sorted(lock.files, key=lambda e: e.path) if lock is not None else []:
            progress = job_files.get(entry.path)
            state = file_state(entry.path, entry, view, failed, faults)
            if live is not None and progress is not None:
                state = live_look(progress.state, entry, progress.header) or state
            rows[entry.path] = FileRow(entry.path, entry, state, progress, running, view.pickles.get(entry.path))
        if running == "download" or live is not None:
            for path, progress in sorted(job_files.items()):
                if path not in rows:   # fetched now, not locked yet
                    state = live_look(progress.state, None) or Look("…", progress.state or "queued", "muted")
                    rows[path] = FileRow(path, None, state, progress, running)
        self._rows = list(rows.values())
        self.table.display = bool(self._rows)
        self.table.show([(row.path, row) for row in self._rows])
        self._show_selected()

    # --- the selected file ----------------------------------------------------------------------

    def on_data_table_row_highlighted(self, message) -> None:
        self._show_selected()

    def selected_pickle(self) -> tuple[str, PickleInfo] | None:
        """The pickle the convert key acts on: the highlighted row if it is one, else the only
        locked pickle without a twin, else the only locked pickle."""
        view = self.view
        if view is None or not view.pickles:
            return None
        key = self.table.selected_key if self.table.row_count else None
        if key in view.pickles:
            return key, view.pickles[key]
        pending = [(path, info) for path, info in view.pickles.items() if info.twin is None]
        if len(pending) == 1:
            return pending[0]
        return next(iter(view.pickles.items())) if len(view.pickles) == 1 else None

    def _show_selected(self) -> None:
        widget = self.query_one("#lock-selected", Static)
        chosen = self.selected_pickle()
        widget.set_class(chosen is not None, "-visible")
        if chosen is None:
            return
        path, info = chosen
        scan = info.scan
        if scan.findings:
            what = Content.styled(f"scan: {len(scan.findings)} import(s) outside the allowlist: "
                                  + ", ".join(scan.findings) + " (never loaded, trusted or not)", "$error")
        elif scan.error:
            what = Content.styled(f"scan: {scan.error} (never loaded)", "$error")
        else:
            what = Content(f"scan clean ({scan.format}): would import " + ", ".join(scan.imports))
        if info.twin:
            step = Content.styled(f" · converted: {info.twin} is locked and is what loads", "$success")
        elif not scan.safe:
            step = Content("")
        elif info.trusted:
            step = Content.styled(" · trusted at its sha256: c converts it to safetensors", "$primary")
        else:
            step = Content.styled(" · not trusted; if you trust where these bytes came from, run this, then c:",
                                  "$warning")
            step = Content("\n").join([step, Content.styled(f"  {info.trust_command}", "$warning")])
        widget.update(Content.assemble((f"{path}: ", "bold"), what, step))

    def facts_text(self, view: LockView) -> Content:
        lock = view.lock
        label = lambda text: (f"{text:<9}", "bold $text-muted")  # noqa: E731
        if lock.kind == "hub":
            revision = Content.assemble(lock.revision or "?", " → ",
                                        (lock.commit[:12] if lock.commit else "not pinned", "bold"))
        else:
            revision = Content.styled("— (local files)", "$text-muted")
        remote_item = _item(self.report, "verify.remote_code")
        if not lock.remote_code:
            remote = ("no", "")
        elif remote_item is not None and remote_item.status == "pass":
            remote = ("yes, trusted at the pinned commit", "$warning")
        elif lock.kind != "hub":
            remote = ("yes: local code cannot be trusted at a commit (remove auto_map and *.py)", "bold $error")
        else:
            remote = ("yes: not trusted (weightgate weights trust remote-code)", "bold $error")
        licence_item = _item(self.report, "verify.license")
        licence = Content.styled(lock.license, "") if lock.license else Content.styled("not stated", "$warning")
        verdict = Content("")
        if licence_item is not None and licence_item.status == "fail":
            verdict = Content.styled(f"   ✗ licence: {licence_item.detail}", "$error")
        published = sum(1 for f in lock.files if f.hash_source == "published")
        computed = len(lock.files) - published
        files = [f"{len(lock.files)} files, {human_bytes(lock.total_bytes())}",
                 f"hashes: {published} published, {computed} computed"]
        bad = [row.state.word for row in self._rows if row.state.icon == "✗"]
        changed = [row for row in self._rows if row.state.icon in ("↻", "○")]
        if bad and lock.kind == "hub":
            files.append(f"{len(bad)} failed: f downloads them again")
        elif bad:
            files.append(f"{len(bad)} failed: restore them (f re-locks what is on disk now)")
        if changed:
            files.append(f"{len(changed)} to re-hash: press v")
        inline = lambda text: (f"   {text} ", "bold $text-muted")  # noqa: E731
        return Content("\n").join([
            Content.assemble(label("source"), (lock.source, "bold"), f" ({lock.kind})", inline("revision"),
                             revision),
            Content.assemble(label("licence"), licence, inline("remote code"), remote, inline("provenance"),
                             lock.provenance if lock.provenance else ("—", "$text-muted"), verdict),
            Content.assemble(label("files"), " · ".join(files), ("   in " + view.root, "$text-muted")),
        ])

    # --- jobs ---------------------------------------------------------------------------------

    def follow(self, job_id: str, job_dir: Path, kind: str, subject: str = "") -> None:
        if self.job is not None and self.job.job_id == job_id:
            return
        self.job = FollowedJob(job_id, kind, subject=subject)
        self._view_at_job_end = None
        self._show_job()
        self.tail.follow(job_id, Path(job_dir))

    @property
    def following(self) -> bool:
        return self.job is not None and self.job.state == "running"

    def on_journal_tail_read(self, message: JournalTail.Read) -> None:
        message.stop()
        job = self.job
        if job is None or message.job_id != job.job_id:
            return
        was_running = job.state == "running"
        ended = job.apply(message.events)
        self._show_job()
        if ended and was_running:
            self._view_at_job_end = (self.view, self.report)
        if self.view is not None:
            if ended and was_running:
                self.show(self.view, self.report)
            elif job.files:
                self._show_rows()
        if ended and was_running:
            self.post_message(self.JobEnded(job))

    def _show_job(self) -> None:
        widget = self.query_one("#lock-job", Static)
        widget.set_class(self.job is not None, "-visible")
        if self.job is not None:
            self.job_content = self.job.text()
            widget.update(self.job_content)

    @property
    def job_text(self) -> str:
        content = getattr(self, "job_content", None)
        return content.plain if content is not None else ""

    def show_busy(self, text: str | None) -> None:
        self.query_one(BusyLine).show(text)

    class JobEnded(Message):
        """The followed job's result is in (the screen re-reads the lock and the report)."""

        def __init__(self, job: FollowedJob) -> None:
            super().__init__()
            self.job = job
