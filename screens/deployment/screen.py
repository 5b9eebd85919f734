"""Phase 6 · Deployment: shipped versions, their aliases and checksums, health, rollback.

Above the items: the registry (tui.widgets.versions_panel): every version with its aliases
(current, previous, custom), relation (adapter / merged / quantized / base), precision, scores
and checksum state (size and mtime against the last full verification), and for the selected
version its manifest facts, health / latency / canary results, the vLLM / SGLang / transformers
serve commands and the endpoints serving it.
Keys: s ships the workspace's model as the next candidate (a job; identical content makes no
new version; while phase 6 is locked a modal names what holds it and asks for the override's
reason, or cancels), v re-hashes the selected version against SHA256SUMS, h runs the cold health
check on it, k runs the canary (a job), p promotes it to current once phase 6 passes on it (else
the same modal), a audits it (does its manifest still hold), b rolls `current` back to it after
you confirm. One flow: s, then h and k on the candidate, then p.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Static

from weightgate.core.registry.store import VersionRef, rollback
from weightgate.core.registry.verify import verify_version, write_stamp
from weightgate.core.release.audit import audit
from weightgate.core.release.gate import GatesClosed
from weightgate.core.release.health import health
from weightgate.core.release.promote import promote
from weightgate.core.release.views import VersionsView, read_versions
from weightgate.screens.deployment.versions_panel import VersionsTable, detail_text
from weightgate.tui.widgets.base_screen import PhaseScreen
from weightgate.tui.widgets.modals import ConfirmModal, NoteModal
from weightgate.tui.widgets.phase_view import held_list
from weightgate.tui.widgets.weights_actions import error_text

VERSIONS_INTERVAL_S = 3.0


class VersionsRead(Message):
    def __init__(self, view) -> None:
        super().__init__()
        self.view = view


class DeploymentScreen(PhaseScreen):
    TARGET = "phase-6"
    PHASE = 6
    HELP = ("Deployment: version, gates, checksums, manifest, merge check, health, latency, licence, rollback, "
            "canary. s ships a candidate, v verifies the selected one's checksums, h health-checks it, k runs the "
            "canary, p promotes it to current once phase 6 passes, a audits its manifest, b rolls back to it.")

    BINDINGS = [
        Binding("s", "ship", "Ship", tooltip="Build and register a new version (a job)"),
        Binding("v", "verify_release", "Verify", tooltip="Re-hash the selected version against SHA256SUMS"),
        Binding("h", "health", "Health", tooltip="Load the selected version cold and ask it a ping"),
        Binding("k", "canary", "Canary", tooltip="Re-run the eval set on the selected version (a job)"),
        Binding("p", "promote", "Promote", tooltip="Make the selected version current once phase 6 passes on it"),
        Binding("a", "audit", "Audit", tooltip="Does the selected version's manifest still hold?"),
        Binding("b", "rollback", "Rollback", tooltip="Move `current` to the selected version (asks first)"),
    ]
    STATEFUL_ACTIONS = (*PhaseScreen.STATEFUL_ACTIONS, "verify_release", "health", "canary", "promote", "audit",
                        "rollback")

    DEFAULT_CSS = """
    DeploymentScreen #release-detail { height: auto; border: round $panel; padding: 0 1; margin-bottom: 1; }
    """

    def compose_panels(self) -> ComposeResult:
        yield VersionsTable(id="versions")
        yield Static("", id="release-detail")

    @property
    def table(self):
        return self.query_one("#versions")

    def on_mount(self) -> None:
        super().on_mount()
        self.view = None
        self._reading = False
        self._busy: str | None = None
        self.watch(self.app, "report", lambda _: self.reload())
        self.set_interval(VERSIONS_INTERVAL_S, self.reload)
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    # --- reading --------------------------------------------------------------------------------

    def reload(self) -> None:
        workspace = getattr(self.app, "workspace", None)
        if workspace is None or self._reading or not self.is_current:
            return
        self._reading = True

        def read() -> None:
            try:
                view = read_versions(workspace)
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                view = VersionsView(error=f"{type(exc).__name__}: {exc}")
            self.post_message(VersionsRead(view))
        self.run_worker(read, thread=True, group="versions", exit_on_error=False)

    def on_versions_read(self, message: VersionsRead) -> None:
        self._reading = False
        self.view = message.view
        try:
            table = self.table
        except NoMatches:
            return
        table.border_title = f"registry/{self.view.name}" if self.view.name else "registry"
        table.show([(row["version"], row) for row in reversed(self.view.versions)])   # newest first
        self._show_detail()
        self.update_bindings()

    def _show_detail(self) -> None:
        from textual.content import Content  # lazy: textual's widget loads when first shown


        try:
            detail = self.query_one("#release-detail", Static)
        except NoMatches:
            return
        if self.view is not None and self.view.error:
            detail.update(Content.assemble(("Cannot read the registry: ", "bold $error"), self.view.error))
            return
        detail.update(detail_text(self.selected_version(), self.report))

    def on_data_table_row_highlighted(self, event) -> None:
        self._show_detail()
        self.update_bindings()

    def selected_version(self) -> dict | None:
        try:
            key = self.table.selected_key
        except NoMatches:
            return None
        return self.table.data_of(key) if key else None

    # --- keys -----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("verify_release", "health", "canary", "promote", "audit", "rollback"):
            row = self.selected_version()
            if row is None or "error" in row or getattr(self, "_busy", None):
                return None
            if "current" in (row.get("aliases") or []) and action in ("rollback", "promote"):
                return None
            if action == "rollback":   # only back to a version that was current; a candidate is promoted
                return True if row.get("was_current") else None
            return True
        return super().check_action(action, parameters)

    def _ask_override(self, title: str, held: str, go) -> None:
        """The closed gate's modal: what holds it, and a reason to go ahead anyway (or cancel)."""
        self.app.push_screen(NoteModal(
            title, f"Held by {held}. Going ahead anyway is recorded as an override: in the manifest, the model "
                   "card and every later status. Give the reason, or cancel and make the items pass.",
            placeholder="why this goes ahead with closed gates", submit_label="Override the gates"),
            lambda reason: go(reason) if reason else None)

    def action_ship(self) -> None:
        report = self.report
        phase = report.phase(6) if report is not None else None
        if phase is None or not phase.locked:
            self.app.start_job("ship", {})
            return
        self._ask_override("Phase 6 is locked: ship anyway?", held_list(phase.held_by),
                           lambda reason: self.app.start_job("ship", {"override": reason}))

    def action_promote(self, override: str | None = None) -> None:
        row = self.selected_version()
        if row is None:
            return

        def call(ws, ref):
            try:
                return promote(ws, ref.version, ref.name, override=override)
            except GatesClosed as exc:
                return exc

        def done(outcome) -> None:
            if isinstance(outcome, GatesClosed):
                held = ", ".join(f"{h['id']} ({h['status']})" for h in outcome.held)
                self._ask_override(f"Promote {row['label']}? Phase 6 has not passed on it", held,
                                   lambda reason: self.action_promote(reason))
                return
            closed = "" if outcome["gates_open"] else " with closed gates (recorded)"
            self.notify(f"current is now {outcome['release']}{closed}"
                        + (f"; previous is {outcome['previous']}" if outcome.get("previous") else ""),
                        title="Promoted", severity="information" if outcome["gates_open"] else "warning")
        self._in_worker("promoting", call, done)

    def action_audit(self) -> None:
        def done(report) -> None:
            lines = [f"{f.area} {f.subject}: {f.detail}" for f in report.findings[:6]]
            self.notify("\n".join([report.summary(), *lines]), title="Audit",
                        severity="information" if report.holds else "error", timeout=8 if report.holds else 20)
        self._in_worker("auditing", audit, done)

    def action_canary(self) -> None:
        row = self.selected_version()
        if row is not None and self.view is not None:
            self.app.start_job("canary", {"version": row["version"], "name": self.view.name})

    def _in_worker(self, busy: str, call, done) -> None:
        """Run `call(ws, ref)` off the UI thread; `done(result)` on it; errors are notified."""
        row, view, workspace = self.selected_version(), self.view, self.app.workspace
        if row is None or view is None or workspace is None:
            return
        self._busy = busy
        self.update_bindings()
        self.notify(f"{busy} {row['label']}…", title=busy.capitalize())

        def work() -> None:
            ref = VersionRef(view.name, row["version"], Path(row["path"]))
            try:
                result = call(workspace, ref)
            except Exception as exc:  # noqa: BLE001 - notified
                self.app.call_from_thread(self._finished, None, error_text(exc), done)
                return
            self.app.call_from_thread(self._finished, result, None, done)
        self.run_worker(work, thread=True, group="release-action", exit_on_error=False)

    def _finished(self, result, error: str | None, done) -> None:
        busy, self._busy = self._busy, None
        if error is not None:
            self.notify(error, title=f"{(busy or 'action').capitalize()} failed", severity="error", timeout=12)
        else:
            done(result)
        self.app.refresh_report()
        self.reload()
        self.update_bindings()

    def action_verify_release(self) -> None:
        def call(ws, ref):
            report = verify_version(ref)
            write_stamp(ws, ref, report)
            return report

        def done(report) -> None:
            if report.ok:
                self.notify(report.summary(), title="Checksums match")
            else:
                problems = "\n".join(f"{status}: {path}" for path, status in list(report.problems().items())[:8])
                self.notify(f"{report.summary()}\n{problems}", title="Checksums differ", severity="error",
                            timeout=15)
        self._in_worker("verifying", call, done)

    def action_health(self) -> None:
        def call(ws, ref):
            return health(ws, ref, timeout=120.0, sizes_only=True)

        def done(result) -> None:
            if result.ready:
                self.notify(f"cold start {result.cold_start_s:.1f} s, first request {result.first_request_ms:.0f} ms, "
                            f"answer {result.answer!r}", title=f"{result.version} ready")
            else:
                self.notify(f"{result.status}: {result.detail}", title=f"{result.version} not ready",
                            severity="error", timeout=15)
        self._in_worker("health-checking", call, done)

    def action_rollback(self) -> None:
        row = self.selected_version()
        if row is None:
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._in_worker("rolling back to", lambda ws, ref: _rollback(ws, ref),
                                lambda outcome: self.notify(f"current is now {outcome['current']} (was "
                                                            f"{outcome['from']}); the history keeps every move",
                                                            title="Rolled back"))
        self.app.push_screen(ConfirmModal(f"Move `current` to {row['label']}? The current version becomes "
                                          "`previous`; the move is recorded in the registry's history and "
                                          "[decisions] release follows.", yes="Roll back", no="Cancel"), answered)


def _rollback(ws, ref) -> dict:
    return rollback(ws, ref.version, ref.name)
