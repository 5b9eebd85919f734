"""Command-palette entries (ctrl+p): go to a phase, attest / waive / revoke the selected item,
start a selftest job, jobs, compare runs, blind review, help, toggle the theme; and, by name,
every key of every screen ("Smooth loss", "Fit"), every checklist item ("select.task"), every
eval run and every job.

Commands call the App's public methods (goto, start_selftest, toggle_theme, show_help) and the
item actions of the screen the palette was opened on. A key of another screen first opens that
screen, then runs its action there. The runs are read once per palette opening, in a thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator

from textual.command import DiscoveryHit, Hit, Hits, Provider

from weightgate.core.engine.checklist import PHASES
from weightgate.tui.widgets.sidebar import JOBS, OVERVIEW, phase_target


@dataclass(frozen=True)
class PaletteCommand:
    name: str
    help: str
    run: Callable[[], object]


class WeightgateCommands(Provider):
    async def startup(self) -> None:
        """Read what the palette lists by name (the runs on disk, every screen's keys), off the UI thread."""
        workspace = getattr(self.app, "workspace", None)
        self._runs = await asyncio.to_thread(self._read_runs, workspace)
        self._screen_keys = await asyncio.to_thread(self.app.screen_keys)

    @staticmethod
    def _read_runs(workspace) -> list:
        if workspace is None:
            return []
        from weightgate.core.evaluation.runs import list_runs  # lazy: core's eval module loads when asked

        try:
            return list_runs(workspace)
        except Exception:  # noqa: BLE001 - an unreadable run lists nothing; the Evaluation screen says why
            return []

    def _run_elsewhere(self, target: str, action: str) -> None:
        """Open `target`, then run `action` there (as if its key had been pressed on it)."""
        app = self.app
        app.goto(target)

        def run() -> None:
            screen = app.screen
            if getattr(screen, "TARGET", "") == target and screen.check_action(action.split("(")[0], ()) is not False:
                app.call_later(screen.run_action, action)
        app.call_after_refresh(run)

    def _open_item(self, phase: int, item_id: str) -> None:
        app = self.app
        app.goto(phase_target(phase))
        app.call_after_refresh(lambda: getattr(app.screen, "select_item", lambda _id: False)(item_id))

    def _open_run(self, run_id: str) -> None:
        app = self.app
        app.goto(phase_target(4))

        def select() -> None:
            runs = app.screen.query("#runs")
            if runs:
                runs.first().select_key(run_id)
        app.set_timer(0.3, select)   # the screen lists its runs from a thread worker first

    def _open_job(self, job_id: str) -> None:
        app = self.app
        app.follow_job_id = job_id   # the Jobs screen follows it with the next jobs listing (within 1 s)
        app.goto(JOBS)

    def named_things(self) -> Iterator[PaletteCommand]:
        """Keys of every screen, items, runs and jobs, by name."""
        app = self.app
        for target, title, binding in getattr(self, "_screen_keys", []):
            key = binding.key.split(",")[0]
            yield PaletteCommand(f"{binding.description} ({key}, {title})",
                                 binding.tooltip or title, partial(self._run_elsewhere, target, binding.action))
        report = getattr(app, "report", None)
        for phase in (report.phases if report is not None else ()):
            number = phase.phase.number
            for status in phase.items:
                yield PaletteCommand(f"{status.item.id}: {status.item.title}",
                                     f"phase {number} item, {status.status}: {status.detail}",
                                     partial(self._open_item, number, status.item.id))
        for run in getattr(self, "_runs", []):
            yield PaletteCommand(f"Run {run.name} ({run.id})", f"{run.set} set, {run.status}; opens it in Evaluation",
                                 partial(self._open_run, run.id))
        for row in getattr(app, "job_rows", None) or []:
            yield PaletteCommand(f"Job {row.job_id} ({row.status.kind}, {row.status.state})",
                                 "Follow it on the Jobs screen", partial(self._open_job, row.job_id))

    def commands(self) -> Iterator[PaletteCommand]:
        app = self.app
        goto = getattr(app, "goto", None)
        if goto is not None:
            yield PaletteCommand("Go to overview", "The current phase and what holds its gate", partial(goto, OVERVIEW))
            for phase in PHASES:
                yield PaletteCommand(f"Go to phase {phase.number}: {phase.title}", phase.why,
                                     partial(goto, phase_target(phase.number)))
            yield PaletteCommand("Jobs", "Running and finished jobs; attach to one to follow it live",
                                 partial(goto, JOBS))
            yield PaletteCommand("Compare runs (C)", "Two eval runs side by side: regressions first, word diff, "
                                 "significance", partial(goto, "compare"))
            yield PaletteCommand("Blind A/B review (R)", "Judge two runs' outputs without their names; resumes "
                                 "where you stopped", partial(goto, "review"))
        screen = self.screen
        for action, name, about in (
            ("attest", "Attest selected item", "Confirm an attest item with a note"),
            ("waive", "Waive selected item", "Waive a recommended item with a reason"),
            ("revoke", "Revoke selected item's attestation or waiver", "The item goes back to its checks"),
        ):
            method = getattr(screen, f"action_{action}", None)
            if method is not None and getattr(screen, "selected", None) is not None:
                yield PaletteCommand(name, about, method)
        if hasattr(app, "start_selftest"):
            yield PaletteCommand("Start selftest job", "A short fake training run that exercises the jobs panel",
                                 app.start_selftest)
        if hasattr(app, "toggle_theme"):
            yield PaletteCommand("Toggle dark / light theme", "Switch between weightgate-dark and weightgate-light",
                                 app.toggle_theme)
        if hasattr(app, "show_help"):
            yield PaletteCommand("Help: keys", "Every key on every screen", app.show_help)

    async def discover(self) -> Hits:
        for command in self.commands():
            yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in (*self.commands(), *self.named_things()):
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, text=command.name, help=command.help)
