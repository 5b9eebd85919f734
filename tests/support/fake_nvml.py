"""A fake ``pynvml`` (nvidia-ml-py) module for tests.

It mirrors the real binding where core.memory.devices touches it: the same function names and
signatures, the ``NVML_ERROR_*`` codes, and an ``NVMLError`` whose constructor maps a code to
the matching ``NVMLError_<Name>`` subclass (``NVMLError(15)`` is an ``NVMLError_GpuIsLost``),
generated with the same naming rule as the real ``_extractNVMLErrorsAsClasses``. Like the real
library, every device function raises Uninitialized before ``nvmlInit``, and the unversioned
process queries raise ``NVMLLibraryMismatchError`` (not an NVMLError) when the "driver" lacks
the newest ABI.

Usage::

    fake = FakeNVML(gpus=[FakeGpu(name="NVIDIA A100-SXM4-80GB", total=80 * GiB, used=GiB)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
"""

from __future__ import annotations

import string
import sys
import types
from dataclasses import dataclass, field
from typing import Any

GiB = 1024**3

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_UNKNOWN = 999

NVML_DEVICE_MIG_DISABLE = 0x0
NVML_DEVICE_MIG_ENABLE = 0x1
NVML_VALUE_NOT_AVAILABLE_ULONGLONG = 2**64 - 1

_ERROR_STRINGS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLLibraryMismatchError(Exception):
    pass


class NVMLError(Exception):
    _valClassMapping: dict[int, type] = {}

    def __new__(typ, value):
        if typ == NVMLError:
            typ = NVMLError._valClassMapping.get(value, typ)
        obj = Exception.__new__(typ)
        obj.value = value
        return obj

    def __str__(self):
        return _ERROR_STRINGS.get(self.value, "NVML Error with code %d" % self.value)

    def __eq__(self, other):
        return self.value == other.value

    __hash__ = Exception.__hash__


def _make_error_classes() -> dict[str, type]:
    classes = {}
    this = sys.modules[__name__]
    for err_name in [x for x in dir(this) if x.startswith("NVML_ERROR_")]:
        class_name = "NVMLError_" + string.capwords(err_name.replace("NVML_ERROR_", ""), "_").replace("_", "")
        err_val = getattr(this, err_name)

        def gen_new(val):
            def new(typ, *args):
                return NVMLError.__new__(typ, val)

            return new

        cls = type(class_name, (NVMLError,), {"__new__": gen_new(err_val)})
        cls.__module__ = __name__
        NVMLError._valClassMapping[err_val] = cls
        classes[class_name] = cls
    return classes


_ERROR_CLASSES = _make_error_classes()
globals().update(_ERROR_CLASSES)


# ----- the fake hardware -------------------------------------------------------------------


@dataclass
class FakeGpu:
    """A GPU or a MIG device. ``None`` for ``total`` / ``util`` / ``mig_mode`` = NotSupported."""

    name: str = "NVIDIA A100-SXM4-80GB"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    total: int | None = 80 * GiB
    used: int = 0
    util: int | None = 0
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # compute
    graphics_processes: list[tuple[int, int | None]] = field(default_factory=list)
    mig_mode: int | None = None  # None: NotSupported; else NVML_DEVICE_MIG_ENABLE/DISABLE
    mig_devices: list[FakeGpu | None] = field(default_factory=list)  # None = empty slot
    max_mig: int = 7
    compute_capability: tuple[int, int] = (8, 0)   # an A100's
    # error injection: function name -> NVML error code raised by that function
    errors: dict[str, int] = field(default_factory=dict)
    # after this many successful queries on the device, everything raises GPU_IS_LOST
    lose_after: int | None = None
    calls: int = 0


class _Struct:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


class c_nvmlMemory_t(_Struct):
    pass


class c_nvmlUtilization_t(_Struct):
    pass


class nvmlFriendlyObject(_Struct):
    pass


class FakeHandle:
    def __init__(self, gpu: FakeGpu, is_mig: bool = False) -> None:
        self.gpu = gpu
        self.is_mig = is_mig


class FakeNVML(types.ModuleType):
    """Install as ``sys.modules["pynvml"]``. Public attributes follow pynvml's names."""

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        driver: str = "550.54.15",
        init_error: int | None = None,
        count_error: int | None = None,
        versioned_processes_only: bool = False,
    ) -> None:
        super().__init__("pynvml")
        self.__file__ = __file__
        for name, value in vars(sys.modules[__name__]).items():
            if name.startswith(("NVML_", "NVMLError", "NVMLLibraryMismatchError", "c_nvml")):
                setattr(self, name, value)
        self.gpus = list(gpus or [])
        self.driver = driver
        self.init_error = init_error
        self.count_error = count_error
        self.versioned_processes_only = versioned_processes_only
        self.init_calls = 0
        self.shutdown_calls = 0
        self.initialized = False
        self.log: list[str] = []

    # ----- helpers
    def _check_init(self, name: str) -> None:
        self.log.append(name)
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _device(self, name: str, handle: FakeHandle) -> FakeGpu:
        self._check_init(name)
        if not isinstance(handle, FakeHandle):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = handle.gpu
        if gpu.lose_after is not None and gpu.calls >= gpu.lose_after:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if name in gpu.errors:
            raise NVMLError(gpu.errors[name])
        gpu.calls += 1
        return gpu

    # ----- init
    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized = True

    def nvmlInitWithFlags(self, flags: int) -> None:
        self.nvmlInit()

    def nvmlShutdown(self) -> None:
        self._check_init("nvmlShutdown")
        self.shutdown_calls += 1
        self.initialized = False

    def nvmlErrorString(self, result: int) -> str:
        return _ERROR_STRINGS.get(result, "Unknown Error")

    # ----- system
    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        self._check_init("nvmlDeviceGetCount")
        if self.count_error is not None:
            raise NVMLError(self.count_error)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._check_init("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        if "nvmlDeviceGetHandleByIndex" in gpu.errors:
            raise NVMLError(gpu.errors["nvmlDeviceGetHandleByIndex"])
        return FakeHandle(gpu)

    # ----- device
    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return self._device("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeHandle) -> tuple[int, int]:
        return self._device("nvmlDeviceGetCudaComputeCapability", handle).compute_capability

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return self._device("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetIndex(self, handle: FakeHandle) -> int:
        gpu = self._device("nvmlDeviceGetIndex", handle)
        if handle.is_mig:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return self.gpus.index(gpu)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> c_nvmlMemory_t:
        gpu = self._device("nvmlDeviceGetMemoryInfo", handle)
        if gpu.total is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return c_nvmlMemory_t(total=gpu.total, free=gpu.total - gpu.used, used=gpu.used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> c_nvmlUtilization_t:
        gpu = self._device("nvmlDeviceGetUtilizationRates", handle)
        if gpu.util is None or handle.is_mig:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return c_nvmlUtilization_t(gpu=gpu.util, memory=0)

    def _procs(self, name: str, handle: FakeHandle, procs: list[tuple[int, int | None]]) -> list:
        self._device(name, handle)
        return [
            nvmlFriendlyObject(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
            for pid, used in procs
        ]

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: FakeHandle) -> list:
        return self._procs("nvmlDeviceGetComputeRunningProcesses_v2", handle, handle.gpu.processes)

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: FakeHandle) -> list:
        if self.versioned_processes_only:
            self._check_init("nvmlDeviceGetComputeRunningProcesses_v3")
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        return self._procs("nvmlDeviceGetComputeRunningProcesses_v3", handle, handle.gpu.processes)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list:
        # The real one is decorated with @throwOnVersionMismatch.
        try:
            return self.nvmlDeviceGetComputeRunningProcesses_v3(handle)
        except NVMLError_FunctionNotFound:  # type: ignore[name-defined]  # noqa: F821
            raise NVMLLibraryMismatchError("Unversioned function called ...") from None

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: FakeHandle) -> list:
        return self._procs("nvmlDeviceGetGraphicsRunningProcesses_v2", handle, handle.gpu.graphics_processes)

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle: FakeHandle) -> list:
        if self.versioned_processes_only:
            self._check_init("nvmlDeviceGetGraphicsRunningProcesses_v3")
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        return self._procs("nvmlDeviceGetGraphicsRunningProcesses_v3", handle, handle.gpu.graphics_processes)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeHandle) -> list:
        try:
            return self.nvmlDeviceGetGraphicsRunningProcesses_v3(handle)
        except NVMLError_FunctionNotFound:  # type: ignore[name-defined]  # noqa: F821
            raise NVMLLibraryMismatchError("Unversioned function called ...") from None

    # ----- MIG
    def nvmlDeviceGetMigMode(self, device: FakeHandle) -> list[int]:
        gpu = self._device("nvmlDeviceGetMigMode", device)
        if gpu.mig_mode is None or device.is_mig:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return [gpu.mig_mode, gpu.mig_mode]

    def nvmlDeviceIsMigDeviceHandle(self, device: FakeHandle) -> int:
        self._check_init("nvmlDeviceIsMigDeviceHandle")
        return int(device.is_mig)

    def nvmlDeviceGetMaxMigDeviceCount(self, device: FakeHandle) -> int:
        gpu = self._device("nvmlDeviceGetMaxMigDeviceCount", device)
        if gpu.mig_mode is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu.max_mig

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: FakeHandle, index: int) -> FakeHandle:
        gpu = self._device("nvmlDeviceGetMigDeviceHandleByIndex", device)
        if gpu.mig_mode != NVML_DEVICE_MIG_ENABLE:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if not 0 <= index < gpu.max_mig:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if index >= len(gpu.mig_devices) or gpu.mig_devices[index] is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return FakeHandle(gpu.mig_devices[index], is_mig=True)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: FakeHandle) -> FakeHandle:
        self._check_init("nvmlDeviceGetDeviceHandleFromMigDeviceHandle")
        for gpu in self.gpus:
            if migDevice.gpu in gpu.mig_devices:
                return FakeHandle(gpu)
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
