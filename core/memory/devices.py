"""GPU (NVML) and host-memory telemetry that never raises, built on nvml.py's `nvml_query`:

- :func:`snapshot` -> :class:`DeviceSnapshot`: every GPU (and every MIG device of a GPU in
  MIG mode) with its memory, utilization and per-process memory, plus host RAM from psutil.
- :class:`DevicePoller`: a cached, rate-limited ``poll()`` for the TUI header meter
  (at most one query per 0.5 s, whatever the caller asks for).
- :func:`budget_bytes`: the memory a new model could use (GPU free memory, or host RAM).

Importing this module is cheap: only the standard library is imported at module level;
``pynvml`` and ``psutil`` are imported on first use, and torch / textual / rich never.

GPU indices are NVML indices (the order of ``nvidia-smi``, i.e. PCI bus order). CUDA's
default order can differ unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from weightgate.core.memory.nvml import (
    ERR_NO_PERMISSION,
    ERR_NOT_SUPPORTED,
    FATAL_DEVICE_CODES,
    NOT_AVAILABLE_THRESHOLD,
    NVML_DEVICE_MIG_ENABLE,
    REASON_NO_GPU,
    ensure_init,
    init_failure,
    nvml_call,
    nvml_query,
)

GiB = 1024**3


# --------------------------------------------------------------------------------------------
# The NVML layer
# --------------------------------------------------------------------------------------------




# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class GpuInfo:
    """One GPU, or one MIG device of a GPU in MIG mode (``is_mig``).

    Memory is in bytes and utilization in percent; a field is None when the device does not
    report it (NotSupported, no permission, GPU lost). ``processes`` holds
    ``(pid, used_memory_bytes or None)``. A GPU in MIG mode (``mig_enabled``) is listed too,
    followed by its MIG devices, which carry the GPU's ``index`` and their own ``mig_index``.
    ``error`` is the first unexpected NVML error met while reading the device (e.g.
    "GPU is lost").
    """

    index: int
    name: str
    uuid: str | None = None
    memory_total: int | None = None
    memory_used: int | None = None
    memory_free: int | None = None
    utilization_gpu: int | None = None
    is_mig: bool = False
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    mig_enabled: bool = False
    mig_index: int | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        """``GPU0``, or ``GPU0/MIG1`` for a MIG device."""
        if self.is_mig:
            return f"GPU{self.index}/MIG{self.mig_index}"
        return f"GPU{self.index}"

    @property
    def usable(self) -> bool:
        """Can one process allocate this device's memory? (Not a GPU split into MIG devices.)"""
        return not self.mig_enabled


@dataclass
class HostMemory:
    """Host RAM in bytes (psutil ``virtual_memory``); None only if psutil is unavailable."""

    total: int | None
    used: int | None
    available: int | None


@dataclass
class DeviceSnapshot:
    """Everything the header meter and the memory phase need, taken at ``time`` (epoch s)."""

    gpus: list[GpuInfo]
    host: HostMemory
    driver: str | None = None
    reason: str | None = None  # why there are no GPUs; None when there are
    time: float = 0.0

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    def summary(self) -> str:
        """One short plain-text line, e.g. ``GPU0 12.3/80.0 GiB 45% · RAM 3.1/23.4 GiB``."""
        ram = f"RAM {_used_of_total(self.host.used, self.host.total)}"
        if not self.gpus:
            why = f" ({self.reason})" if self.reason and self.reason != REASON_NO_GPU else ""
            return f"{ram} · no GPU{why}"
        parts = []
        with_children = {g.index for g in self.gpus if g.is_mig}
        for gpu in self.gpus:
            if gpu.mig_enabled and gpu.index in with_children:
                continue  # its MIG devices are listed instead
            parts.append(_gpu_summary(gpu))
        parts.append(ram)
        return " · ".join(parts)

    def to_dict(self) -> dict:
        """Plain JSON-ready data (for ``weightgate status --json``)."""
        return asdict(self)


def _gib(value: int) -> str:
    return f"{value / GiB:.1f}"


def _used_of_total(used: int | None, total: int | None) -> str:
    if used is None or total is None:
        return "n/a"
    return f"{_gib(used)}/{_gib(total)} GiB"


def _gpu_summary(gpu: GpuInfo) -> str:
    text = gpu.label
    if gpu.error and gpu.memory_total is None:
        return f"{text} {gpu.error}"
    if gpu.mig_enabled:
        text += " MIG"
    text += f" {_used_of_total(gpu.memory_used, gpu.memory_total)}"
    if gpu.utilization_gpu is not None:
        text += f" {gpu.utilization_gpu}%"
    return text


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


class _DeviceReader:
    """Queries one device, remembers its first unexpected error, stops once it is lost."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.dead = False

    def __call__(self, func_name: str, *args: Any, default: Any = None) -> Any:
        if self.dead:
            return default
        value, failure = nvml_call(func_name, *args)
        if failure is None:
            return value
        if not failure.benign and self.error is None:
            self.error = failure.text
        if failure.code in FATAL_DEVICE_CODES:
            self.dead = True
        return default


def _as_bytes(value: Any) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= NOT_AVAILABLE_THRESHOLD:
        return None
    return value


def _memory(read: _DeviceReader, handle: Any) -> tuple[int | None, int | None, int | None]:
    info = read("nvmlDeviceGetMemoryInfo", handle)
    if info is None:
        return None, None, None
    total = _as_bytes(getattr(info, "total", None))
    used = _as_bytes(getattr(info, "used", None))
    free = _as_bytes(getattr(info, "free", None))
    return total, used, free


def _utilization(read: _DeviceReader, handle: Any) -> int | None:
    rates = read("nvmlDeviceGetUtilizationRates", handle)
    gpu = getattr(rates, "gpu", None)
    if not isinstance(gpu, int) or isinstance(gpu, bool) or not 0 <= gpu <= 100:
        return None
    return gpu


def _process_list(read: _DeviceReader, handle: Any, kind: str) -> list:
    # The unversioned name follows the newest NVML ABI; an older driver lacks it (and the
    # binding then raises a non-NVMLError mismatch error), so fall back to older versions.
    for suffix in ("", "_v3", "_v2"):
        value, failure = nvml_call(f"nvmlDeviceGet{kind}RunningProcesses{suffix}", handle)
        if failure is None:
            return list(value or [])
        if failure.code in FATAL_DEVICE_CODES:
            read.dead = True
            read.error = read.error or failure.text
            return []
        if failure.code in (ERR_NOT_SUPPORTED, ERR_NO_PERMISSION):
            return []
    return []


def _processes(read: _DeviceReader, handle: Any) -> list[tuple[int, int | None]]:
    if read.dead:
        return []
    found: dict[int, int | None] = {}
    for kind in ("Compute", "Graphics"):
        for proc in _process_list(read, handle, kind):
            pid = getattr(proc, "pid", None)
            if not isinstance(pid, int):
                continue
            used = _as_bytes(getattr(proc, "usedGpuMemory", None))
            if pid not in found or (used is not None and (found[pid] or 0) < used):
                found[pid] = used
    return sorted(found.items())


def _mig_enabled(read: _DeviceReader, handle: Any) -> bool:
    mode = read("nvmlDeviceGetMigMode", handle)  # [current, pending]; NotSupported off A100/H100
    try:
        return mode is not None and int(mode[0]) == NVML_DEVICE_MIG_ENABLE
    except (TypeError, ValueError, IndexError):
        return False


def _mig_devices(read: _DeviceReader, parent: Any, index: int) -> list[GpuInfo]:
    count = read("nvmlDeviceGetMaxMigDeviceCount", parent, default=0)
    if not isinstance(count, int):
        return []
    devices = []
    for mig_index in range(max(0, count)):
        if read.dead:
            break
        handle, failure = nvml_call("nvmlDeviceGetMigDeviceHandleByIndex", parent, mig_index)
        if failure is not None:
            if failure.code in FATAL_DEVICE_CODES:
                read.dead = True
                read.error = read.error or failure.text
            continue  # NotFound: an empty slot
        mig = _DeviceReader()
        total, used, free = _memory(mig, handle)
        devices.append(
            GpuInfo(
                index=index,
                name=mig("nvmlDeviceGetName", handle) or "MIG device",
                uuid=mig("nvmlDeviceGetUUID", handle),
                memory_total=total,
                memory_used=used,
                memory_free=free,
                utilization_gpu=_utilization(mig, handle),  # NotSupported on MIG: None
                is_mig=True,
                processes=_processes(mig, handle),
                mig_index=mig_index,
                error=mig.error,
            )
        )
    return devices


def _read_gpu(index: int) -> list[GpuInfo]:
    """The GPU at NVML ``index`` (and its MIG devices, if it is in MIG mode)."""
    handle, failure = nvml_call("nvmlDeviceGetHandleByIndex", index)
    if failure is not None:
        return [GpuInfo(index=index, name="unknown GPU", error=failure.text)]
    read = _DeviceReader()
    name = read("nvmlDeviceGetName", handle) or "unknown GPU"
    uuid = read("nvmlDeviceGetUUID", handle)
    total, used, free = _memory(read, handle)
    utilization = _utilization(read, handle)
    mig_enabled = not read.dead and _mig_enabled(read, handle)
    # In MIG mode processes belong to MIG devices; list them there, not twice.
    processes = [] if mig_enabled else _processes(read, handle)
    migs = _mig_devices(read, handle, index) if mig_enabled else []
    gpu = GpuInfo(
        index=index,
        name=str(name),
        uuid=uuid,
        memory_total=total,
        memory_used=used,
        memory_free=free,
        utilization_gpu=utilization,
        processes=processes,
        mig_enabled=mig_enabled,
        error=read.error,
    )
    return [gpu, *migs]


def host_memory() -> HostMemory:
    """Host RAM from psutil; all None if psutil is missing or fails. Never raises."""
    try:
        import psutil  # lazy: importing this module stays cheap (the TUI's header meter)

        vm = psutil.virtual_memory()
        return HostMemory(total=int(vm.total), used=int(vm.used), available=int(vm.available))
    except Exception:  # noqa: BLE001
        return HostMemory(total=None, used=None, available=None)


def _snapshot() -> DeviceSnapshot:
    now = time.time()
    host = host_memory()
    if ensure_init() is None:
        return DeviceSnapshot(gpus=[], host=host, driver=None, reason=init_failure(), time=now)
    driver = nvml_query("nvmlSystemGetDriverVersion", default=None)
    count, failure = nvml_call("nvmlDeviceGetCount")
    if failure is not None:
        return DeviceSnapshot(gpus=[], host=host, driver=driver, reason=f"NVML error: {failure.text}", time=now)
    if not isinstance(count, int) or count <= 0:
        return DeviceSnapshot(gpus=[], host=host, driver=driver, reason=REASON_NO_GPU, time=now)
    gpus: list[GpuInfo] = []
    for index in range(count):
        gpus.extend(_read_gpu(index))
    return DeviceSnapshot(gpus=gpus, host=host, driver=driver, reason=None, time=now)


def snapshot() -> DeviceSnapshot:
    """GPUs (with MIG devices), host RAM and driver version, now. Never raises."""
    try:
        return _snapshot()
    except Exception as exc:  # noqa: BLE001  (a bug here must not take the TUI down)
        return DeviceSnapshot(
            gpus=[], host=host_memory(), driver=None, reason=f"device query failed: {exc}", time=time.time()
        )


# --------------------------------------------------------------------------------------------
# Polling and budgets
# --------------------------------------------------------------------------------------------


class DevicePoller:
    """Rate-limited :func:`snapshot` for a UI that may call :meth:`poll` as often as it likes.

    ``interval_s`` below :data:`MIN_POLL_INTERVAL_S` (0.5 s), or not a finite number, is
    clamped to 0.5 s: NVML is queried at most twice a second. :meth:`poll` returns the cached
    snapshot while it is younger than the interval. No thread is started here; :meth:`poll`
    is thread-safe (concurrent callers share one query) and meant for a Textual thread
    worker. ``clock`` and ``query`` are injectable for tests.
    """

    def __init__(
        self,
        interval_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        query: Callable[[], DeviceSnapshot] = snapshot,
    ) -> None:
        try:
            interval = float(interval_s)
        except (TypeError, ValueError):
            interval = MIN_POLL_INTERVAL_S
        if not math.isfinite(interval) or interval < MIN_POLL_INTERVAL_S:
            interval = MIN_POLL_INTERVAL_S
        self._interval = interval
        self._clock = clock
        self._query = query
        self._lock = threading.Lock()
        self._latest: DeviceSnapshot | None = None
        self._taken_at: float | None = None

    @property
    def interval_s(self) -> float:
        return self._interval

    @property
    def latest(self) -> DeviceSnapshot | None:
        """The last snapshot taken, without querying (None before the first poll)."""
        return self._latest

    def poll(self) -> DeviceSnapshot:
        with self._lock:
            now = self._clock()
            if self._latest is not None and self._taken_at is not None and 0 <= now - self._taken_at < self._interval:
                return self._latest
            self._latest = self._query()
            self._taken_at = now
            return self._latest


def budget_bytes(snap: DeviceSnapshot, device: str | int = "auto") -> int | None:
    """Free memory a new model could use, in bytes, or None when unknown.

    ``device``: ``"auto"`` (free memory of the biggest usable GPU, or host available RAM
    when there is no GPU reporting memory, e.g. none at all or unified-memory boards),
    ``"cuda"`` (the biggest GPU only), ``"cuda:N"`` or ``N`` (GPU N, NVML index), ``"cpu"``
    (host available RAM). A GPU split into MIG devices is not usable as a whole; its MIG
    devices are. Raises ValueError for an unknown ``device`` string.
    """
    gpus = [g for g in snap.gpus if g.usable and g.memory_free is not None]
    if isinstance(device, bool):
        raise ValueError(f"unknown device {device!r}")
    if isinstance(device, int):
        return next((g.memory_free for g in gpus if not g.is_mig and g.index == device), None)
    spec = device.strip().lower()
    if spec == "cpu":
        return snap.host.available
    if spec.startswith("cuda:"):
        try:
            return budget_bytes(snap, int(spec[5:]))
        except ValueError:
            raise ValueError(f"unknown device {device!r}: expected cuda:N") from None
    if spec in ("auto", "cuda", "gpu"):
        if gpus:
            biggest = max(gpus, key=lambda g: (g.memory_total or 0, g.memory_free or 0))
            return biggest.memory_free
        return snap.host.available if spec == "auto" else None
    raise ValueError(f"unknown device {device!r}: expected auto, cpu, cuda or cuda:N")


#: Shortest interval :class:`DevicePoller` accepts: NVML is polled at most twice a second.
MIN_POLL_INTERVAL_S = 0.5
