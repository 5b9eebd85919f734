"""Command-palette entries (ctrl+p): go to a phase, attest / waive / revoke the selected item,
start a selftest job, jobs, compare runs, blind review, help, toggle the theme.

Commands call the App's public methods (goto, start_selftest, toggle_theme, show_help) and the
item actions of the screen the palette was opened on.
"""

from __future__ import annotations

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
        for command in self.commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, text=command.name, help=command.help)
