"""Engine calls the Selection and Verification screens make about the model's weights.

Adding a candidate reads its metadata over the network, fetching a local model hashes every
file: all of it runs in a thread worker. `WeightsActions` is a mixin for a screen: it runs one
call at a time (`run_engine`), says what it is doing through `show_busy()` (the screen shows a
loading indicator), and turns the outcome into an `EngineDone` message handled on the UI
thread. Errors are shown as notifications with their hint.

Fetch is shared: `f` fetches the chosen model (or, on the Selection screen, the selected
candidate when none is chosen yet). A hub source starts the detached `download` job, which the
Jobs screen (and the Verification screen's lock panel) follow; a local directory or GGUF is
hashed and locked right away.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from textual.css.query import NoMatches
from textual.message import Message

from weightgate.core.engine.errors import InputError, WeightgateError
from weightgate.core.weights.candidates import chosen_model, start_fetch
from weightgate.tui.widgets.units import human_bytes

if TYPE_CHECKING:
    from weightgate.core.engine.workspace import Workspace


class EngineDone(Message):
    """A call made by `run_engine` finished: its result, or the error to show."""

    def __init__(self, action: str, subject: str, result: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.action = action
        self.subject = subject
        self.result = result
        self.error = error


def error_text(exc: BaseException) -> str:
    """message + hint for an engine error; the type and text for anything unexpected."""

    if isinstance(exc, InputError):
        where = exc.location()
        text = f"{where}: {exc.message}" if where and where not in exc.message else exc.message
        return text + (f"\nhint: {exc.hint}" if exc.hint else "")
    if isinstance(exc, WeightgateError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def fetch_model(ws: Workspace, spec: str | None) -> dict:
    """start_fetch for `spec`, or for the chosen model when spec is None."""

    spec = spec or chosen_model(ws)
    outcome = dict(start_fetch(ws, spec))
    outcome.setdefault("source", spec)
    return outcome


class WeightsActions:
    """Mixin for a Screen: one engine call at a time, off the UI thread."""

    busy_action: str | None = None

    def update_bindings(self) -> None:
        """As the screen's, but quiet while the screen is being taken down (its tables are gone)."""
        try:
            super().update_bindings()
        except NoMatches:
            pass

    def show_busy(self, text: str | None) -> None:
        """Show (text) or hide (None) the screen's loading indicator."""

    def engine_done(self, message: EngineDone) -> None:
        """Called on the UI thread after a successful call (errors are already notified)."""

    def run_engine(self, action: str, subject: str, busy_text: str, call: Callable[[Workspace], Any]) -> bool:
        workspace = getattr(self.app, "workspace", None)
        if workspace is None:
            self.notify("The workspace is not open yet (see the banner above).", title="Not yet", severity="warning")
            return False
        if self.busy_action is not None:
            self.notify(f"Still busy: {self.busy_action}. Try again when it is done.", title="Busy",
                        severity="warning")
            return False
        self.busy_action = busy_text
        self.show_busy(busy_text)
        self.run_worker(lambda: self._engine_call(action, subject, workspace, call), thread=True,
                        group="weights-engine", exit_on_error=False)
        return True

    def _engine_call(self, action: str, subject: str, workspace: Workspace, call: Callable[[Workspace], Any]) -> None:
        try:
            result = call(workspace)
        except Exception as exc:  # noqa: BLE001 - every failure is shown, none takes the UI down
            self.post_message(EngineDone(action, subject, error=error_text(exc)))
        else:
            self.post_message(EngineDone(action, subject, result=result))

    def on_engine_done(self, message: EngineDone) -> None:
        message.stop()
        self.busy_action = None
        self.show_busy(None)
        if message.error is not None:
            titles = {"add": "Could not add", "choose": "Could not choose", "fetch": "Could not fetch",
                      "inspect": "Could not read the metadata", "verify": "Could not start verify",
                      "convert": "Could not convert"}
            self.notify(message.error, title=f"{titles.get(message.action, 'Failed')} {message.subject}".strip(),
                        severity="error", timeout=10)
        else:
            if message.action == "fetch":
                self.fetch_done(message.result)
            self.engine_done(message)
        refresh = getattr(self.app, "refresh_report", None)
        if refresh is not None:
            refresh()

    # --- fetch ----------------------------------------------------------------------------------

    def start_fetch(self, spec: str | None, label: str) -> bool:
        running = [row for row in getattr(self.app, "job_rows", None) or []
                   if row.status.kind in ("download", "lock_gguf") and not row.status.is_terminal]
        if running:
            self.notify(f"Download job {running[0].job_id} is still running: wait for it, or cancel it on the "
                        "Jobs screen (j).", title="Already downloading", severity="warning")
            return False
        what = spec or "the chosen model"
        return self.run_engine("fetch", label, f"Fetching {what}: a local model is hashed and locked now, "
                               "a hub model starts a download job…", lambda ws: fetch_model(ws, spec))

    def fetch_done(self, outcome: dict) -> None:
        job = outcome.get("job")
        if job:
            self.app.follow_job_id = job  # the Jobs screen selects it when opened
            what = ("hash, convert (once) and lock job" if outcome.get("kind") == "lock_gguf" else "download job")
            self.notify(f"{outcome['source']}: {what} {job} started; it runs on after you quit.\n"
                        "j shows it in Jobs; 2 shows the lock panel.",
                        title="Fetch started" if outcome.get("kind") == "lock_gguf" else "Download started")
            poll = getattr(self.app, "poll_jobs", None)
            if poll is not None:
                poll()
            return

        self.notify(f"{outcome['source']}: {outcome.get('files', '?')} files, {human_bytes(outcome.get('bytes'))} "
                    f"hashed and written to {Path(outcome.get('lock', 'weightgate.lock')).name}.",
                    title="Model locked")
