"""The Verification screen's lock panel: what weightgate.lock pins, each file's state, and the
live progress of a verify or download job.

`read_lock_view(ws)` (a thread worker) reads weightgate.lock and stats every locked file
(core.lock.changed_on_disk: size or mtime moved since it last matched means "verify again").
The panel adds what the checklist knows: a file the last verification found different
(verify.checksum failed) or whose header is bad (verify.headers failed) is named as such.
A job is followed through JournalTail (its events.jsonl, replayed then tailed) and folded into
a Transfer: bytes done / total, MB/s, ETA, and for a download the file being fetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from tui.widgets.candidates import BusyLine
from tui.widgets.fitted_table import Column, FittedTable, middle_ellipsis
from tui.widgets.journal_tail import JournalTail, Transfer
from tui.widgets.status import Look, job_look, rich_style
from tui.widgets.units import human_bytes, human_eta, human_rate, when

if TYPE_CHECKING:
    from core.events import Event
    from core.gates import ItemStatus, Report
    from core.lock import LockedFile, ModelLock
    from core.workspace import Workspace


@dataclass(frozen=True)
class LockView:
    """weightgate.lock and the files on disk, as of one read."""

    lock: ModelLock | None = None
    root: str = ""
    changed: frozenset[str] = frozenset()   # size or mtime differ from the lock (or missing)
    missing: frozenset[str] = frozenset()
    unsafe: frozenset[str] = frozenset()    # paths the lock must not steer a read to
    chosen: str | None = None
    error: str | None = None


def read_lock_view(ws: Workspace) -> LockView:
    """Runs in a thread worker: reads the lock and stats the files (no hashing)."""
    from core.errors import InputError  # noqa: PLC0415
    from core.fingerprints import plain  # noqa: PLC0415
    from core.lock import changed_on_disk, read_lock  # noqa: PLC0415
    from core.verify import snapshot_dir, unsafe_reason  # noqa: PLC0415

    chosen = None
    try:
        decisions = plain(ws.config()).get("decisions")
        if isinstance(decisions, dict) and decisions.get("model"):
            chosen = str(decisions["model"])
    except InputError:
        pass  # the banner shows a broken weightgate.toml; the lock still reads
    try:
        lock = read_lock(ws)
        if lock is None:
            return LockView(chosen=chosen)
        root = snapshot_dir(ws, lock)
    except InputError as exc:
        text = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        return LockView(chosen=chosen, error=text)
    unsafe = frozenset(entry.path for entry in lock.files if unsafe_reason(entry.path) is not None)
    safe = [entry for entry in lock.files if entry.path not in unsafe]
    changed = frozenset(changed_on_disk(replace(lock, files=safe), root))
    missing = frozenset(path for path in changed if not (root / path).exists())
    return LockView(lock=lock, root=str(root), changed=changed, missing=missing, unsafe=unsafe, chosen=chosen)


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
    """One locked file's state, most urgent first."""
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
    return Look("✓", "ok", "success")


@dataclass(frozen=True)
class FileRow:
    entry: LockedFile
    state: Look


class LockFilesTable(FittedTable):
    """One row per locked file; the row key is its path."""

    COLUMNS = (
        Column("path", "File"),
        Column("size", "Size", 9, drop=3),
        Column("hash", "Hash", 9, drop=2),
        Column("verified", "Verified", 11, drop=1),
        Column("state", "State", 18),
    )
    DEFAULT_CSS = """
    LockFilesTable { height: auto; max-height: 10; min-height: 2; overflow-x: hidden; }
    """

    def cells(self, row: FileRow) -> dict[str, Text]:
        variables = self.app.theme_variables
        entry = row.entry
        published = entry.hash_source == "published"
        return {
            "path": Text(middle_ellipsis(entry.path, self.width_of("path")), no_wrap=True, overflow="ellipsis"),
            "size": Text(human_bytes(entry.size), justify="right"),
            "hash": Text(entry.hash_source or "?", style="" if published else rich_style("muted", variables)),
            "verified": Text(when(entry.verified_at), style=rich_style("muted", variables)),
            "state": Text(row.state.label, no_wrap=True, overflow="ellipsis",
                          style=rich_style(row.state.color, variables, bold=row.state.color == "error")),
        }


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

    def apply(self, events: list[Event]) -> bool:
        """Fold events in; True once the result is in."""
        for event in events:
            if self.transfer.apply(event):
                continue
            payload = event.payload
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

    def text(self) -> Content:
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
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: LockView | None = None
        self.report: Report | None = None
        self.job: FollowedJob | None = None
        self._rows: list[FileRow] = []
        self.border_title = "Lock · weightgate.lock"
        self.border_subtitle = "v verify · f fetch"

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("reading weightgate.lock…", "$text-muted"), id="lock-facts")
        yield Static("", id="lock-job")
        yield LockFilesTable(id="lock-files")
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
        self.table.display = lock is not None
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
        failed = _item_values(report, "verify.checksum", "failed")
        faults = _item_values(report, "verify.headers", "faults")
        self._rows = [FileRow(entry, file_state(entry.path, entry, view, failed, faults))
                      for entry in sorted(lock.files, key=lambda e: e.path)]
        facts.update(self.facts_text(view))
        self.table.show([(row.entry.path, row) for row in self._rows])

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
        else:
            remote = ("yes: not trusted (weightgate trust remote-code)", "bold $error")
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

    def follow(self, job_id: str, job_dir: Path, kind: str) -> None:
        if self.job is not None and self.job.job_id == job_id:
            return
        self.job = FollowedJob(job_id, kind)
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
        if ended and was_running and self.view is not None:
            self.show(self.view, self.report)
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
