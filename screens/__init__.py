"""One Screen per phase, plus the Overview, Jobs, Compare and Review. `SCREENS` maps screen names to classes.

Every phase screen is a `tui.widgets.base_screen.PhaseScreen`: the shared frame, the phase's
gate and items, and the attest / waive / revoke keys. Later work adds its panels by
overriding `compose_panels()` in the phase's module.
"""

from __future__ import annotations

from typing import Callable

from textual.screen import Screen

from weightgate.screens.overview import OverviewScreen

# Phase screens are imported when first shown: the first frame needs only the Overview.
PHASE_MODULES = {
    "phase-1": ("weightgate.screens.selection.screen", "SelectionScreen"),
    "phase-2": ("weightgate.screens.verification.screen", "VerificationScreen"),
    "phase-3": ("weightgate.screens.memory.screen", "MemoryScreen"),
    "phase-4": ("weightgate.screens.evaluation.screen", "EvaluationScreen"),
    "phase-5": ("weightgate.screens.finetuning.screen", "FinetuningScreen"),
    "phase-6": ("weightgate.screens.deployment.screen", "DeploymentScreen"),
}


def _lazy(module: str, name: str) -> Callable[[], Screen]:
    def make() -> Screen:
        import importlib  # lazy: the standard library; kept beside its one use

        return getattr(importlib.import_module(module), name)()
    return make


def _jobs_screen() -> Screen:
    # Imported on first use: the jobs screen pulls in ProgressBar and RichLog.
    from weightgate.screens.jobs.screen import JobsScreen  # lazy: a screen's module loads when it is first shown

    return JobsScreen()


def _compare_screen() -> Screen:
    from weightgate.screens.compare import CompareScreen  # lazy: Select and the diff panes load on first use

    return CompareScreen()


def _review_screen() -> Screen:
    from weightgate.screens.review.screen import ReviewScreen  # lazy: a screen's module loads when it is first shown

    return ReviewScreen()


SCREENS: dict[str, Callable[[], Screen]] = {
    OverviewScreen.TARGET: OverviewScreen,
    **{target: _lazy(module, name) for target, (module, name) in PHASE_MODULES.items()},
    "jobs": _jobs_screen,
    "compare": _compare_screen,
    "review": _review_screen,
}
