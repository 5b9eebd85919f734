"""Shows why the workspace cannot be read: file:line:column, what is wrong, and the fix.

Visible on every screen while the problem lasts; the App keeps re-reading the workspace, so
fixing the file in an editor clears it within a couple of seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.content import Content
from textual.widgets import Static

if TYPE_CHECKING:
    from weightgate.core.engine.errors import InputError


def error_text(error: InputError, *, have_report: bool) -> Content:
    where = error.location()
    lines = [Content.assemble(("✗ ", "bold $error"), ("Cannot read the workspace", "bold $error"))]
    lines.append(Content.assemble((f"{where}: " if where else "", "bold"), error.message))
    if error.hint:
        lines.append(Content.assemble(("hint: ", "bold"), error.hint))
    lines.append(Content.styled(
        "Showing the last good reading below; this updates as soon as the file is fixed."
        if have_report else "Fix the file and save: weightgate re-reads it every 2 seconds.", "$text-muted"))
    return Content("\n").join(lines)


class WorkspaceErrorBanner(Static):
    DEFAULT_CSS = """
    WorkspaceErrorBanner {
        display: none; height: auto; margin: 0 1 1 1; padding: 0 1;
        border: round $error; background: $error 8%;
    }
    WorkspaceErrorBanner.-visible { display: block; }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "workspace_error", self._show)

    def _show(self, error: InputError | None) -> None:
        self.set_class(error is not None, "-visible")
        if error is None:
            self._content = Content("")
        else:
            self._content = error_text(error, have_report=getattr(self.app, "report", None) is not None)
        self.update(self._content)

    @property
    def plain(self) -> str:
        content = getattr(self, "_content", None)
        return content.plain if content is not None else ""
