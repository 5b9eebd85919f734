"""One Screen per phase, plus the Overview, Jobs, Compare and Review. `SCREENS` maps screen names to classes.

Every phase screen is a `tui.widgets.base_screen.PhaseScreen`: the shared frame, the phase's
gate and items, and the attest / waive / revoke keys. Later work adds its panels by
overriding `compose_panels()` in the phase's module.
"""

from __future__ import annotations

from typing import Callable

from textual.screen import Screen

from screens.deployment import DeploymentScreen
from screens.evaluation import EvaluationScreen
from screens.finetuning import FinetuningScreen
from screens.memory import MemoryScreen
from screens.overview import OverviewScreen
from screens.selection import SelectionScreen
from screens.verification import VerificationScreen

PHASE_SCREENS = (SelectionScreen, VerificationScreen, MemoryScreen, EvaluationScreen, FinetuningScreen,
                 DeploymentScreen)


def _jobs_screen() -> Screen:
    # Imported on first use: the jobs screen pulls in ProgressBar and RichLog.
    from screens.jobs import JobsScreen  # noqa: PLC0415

    return JobsScreen()


def _compare_screen() -> Screen:
    from screens.compare import CompareScreen  # noqa: PLC0415 - Select and the diff panes load on first use

    return CompareScreen()


def _review_screen() -> Screen:
    from screens.review import ReviewScreen  # noqa: PLC0415

    return ReviewScreen()


SCREENS: dict[str, Callable[[], Screen]] = {
    OverviewScreen.TARGET: OverviewScreen,
    **{screen.TARGET: screen for screen in PHASE_SCREENS},
    "jobs": _jobs_screen,
    "compare": _compare_screen,
    "review": _review_screen,
}
