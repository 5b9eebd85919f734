"""The one-line header on every screen: workspace, live device memory, running jobs.

The meter never polls by itself: the App polls core.memory.devices.DevicePoller from a thread worker
(at most twice a second) and stores the snapshot in `app.devices`; the header watches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Static

if TYPE_CHECKING:
    from weightgate.core.engine.views import JobRow
    from weightgate.core.memory.devices import DeviceSnapshot, GpuInfo

GIB = 1024**3
BAR_CELLS = 8


def usage_bar(used: int | None, total: int | None, cells: int = BAR_CELLS) -> Content:
    """▕███░░░░░▏ coloured by how full it is (green, then yellow from 70%, red from 90%)."""
    if not used or not total:
        return Content.styled("▕" + "·" * cells + "▏", "$text-muted")
    fraction = max(0.0, min(1.0, used / total))
    filled = round(fraction * cells)
    color = "$success" if fraction < 0.7 else "$warning" if fraction < 0.9 else "$error"
    return Content.assemble(
        ("▕", "$text-muted"), ("█" * filled, color), ("░" * (cells - filled), "$text-muted"), ("▏", "$text-muted")
    )


def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / GIB:.1f}"


def _shown_gpus(gpus: Iterable[GpuInfo]) -> list[GpuInfo]:
    """Like DeviceSnapshot.summary(): a GPU split into MIG devices is shown as its MIG devices."""
    gpus = list(gpus)
    split = {gpu.index for gpu in gpus if gpu.is_mig}
    return [gpu for gpu in gpus if not (gpu.mig_enabled and gpu.index in split)]


def device_meter(snapshot: DeviceSnapshot | None) -> Content:
    """Per GPU: bar, used/total GiB, utilization; otherwise host RAM and "no GPU"."""
    if snapshot is None:
        return Content.styled("reading devices…", "$text-muted")
    parts: list[Content] = []
    for gpu in _shown_gpus(snapshot.gpus):
        if gpu.error and gpu.memory_total is None:
            parts.append(Content.assemble((gpu.label, "bold"), " ", (gpu.error, "$error")))
            continue
        util = f" {gpu.utilization_gpu}%" if gpu.utilization_gpu is not None else ""
        parts.append(Content.assemble(
            (gpu.label, "bold"), " ", usage_bar(gpu.memory_used, gpu.memory_total),
            f" {_gib(gpu.memory_used)}/{_gib(gpu.memory_total)} GiB", (util, "bold"),
        ))
    host = snapshot.host
    ram = Content.assemble(("RAM", "bold"), " ", usage_bar(host.used, host.total),
                           f" {_gib(host.used)}/{_gib(host.total)} GiB")
    parts.append(ram)
    if not snapshot.gpus:
        reason = snapshot.reason or ""
        why = f" ({reason})" if reason and reason != "no GPU found" else ""
        parts.append(Content.styled(f"no GPU{why}", "$text-muted"))
    return Content(" · ").join(parts)


def jobs_badge(rows: list[JobRow] | None) -> Content:
    running = sum(1 for row in rows or [] if row.status.state in ("running", "queued"))
    if not running:
        return Content("")
    noun = "job" if running == 1 else "jobs"
    return Content.styled(f"▶ {running} {noun} running", "bold $primary")


class AppHeader(Horizontal):
    """weightgate · <workspace>            GPU0 ▕██░░▏ 12.3/80.0 GiB 45% · RAM …   ▶ 1 job running"""

    DEFAULT_CSS = """
    AppHeader { height: 1; dock: top; background: $panel; }
    AppHeader #brand { width: auto; padding: 0 1; }
    AppHeader #meter { width: 1fr; content-align: right middle; padding: 0 1; }
    AppHeader #jobs-badge { width: auto; padding: 0 1 0 0; }
    """

    def compose(self) -> ComposeResult:
        yield Static(self._brand(), id="brand")
        yield Static(device_meter(getattr(self.app, "devices", None)), id="meter")
        yield Static("", id="jobs-badge")

    def _brand(self) -> Content:
        where = getattr(self.app, "workspace_label", "")
        return Content.assemble(("weightgate", "bold $primary"), ("  " + where if where else "", "$text-muted"))

    def on_mount(self) -> None:
        self.watch(self.app, "devices", self._show_devices)
        self.watch(self.app, "job_rows", self._show_jobs)

    def _show_devices(self, snapshot: DeviceSnapshot | None) -> None:
        self._update("#meter", device_meter(snapshot))

    def _show_jobs(self, rows: list[JobRow] | None) -> None:
        self._update("#jobs-badge", jobs_badge(rows))

    def _update(self, selector: str, content: Content) -> None:
        # The app-level watch can fire while this header's screen is being torn down (its
        # children already gone); there is nothing to update then.
        found = self.query(selector).results(Static)
        static = next(found, None)
        if static is None:
            return
        if static.content != content:
            static.update(content)

    @property
    def meter_text(self) -> str:
        return device_meter(getattr(self.app, "devices", None)).plain
