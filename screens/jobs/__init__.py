"""Jobs: every job of the workspace, and a live view of the selected one."""

from weightgate.screens.jobs.screen import JobsScreen

__all__ = ["JobsScreen"]
