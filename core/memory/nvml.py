"""NVML, error-tolerant: the one query function every GPU reading goes through.

Modelled on nvitop's ``libnvml``: :func:`nvml_query` imports ``pynvml`` (package
``nvidia-ml-py``) lazily, calls ``nvmlInit`` once per process and turns every failure (no
library, no driver, no permission, NotSupported, GPU is lost, a function missing from an old
driver, a binding/driver mismatch, ...) into a default value (:data:`NA`, falsy, prints N/A).
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, NamedTuple

# Why a snapshot has no GPUs (DeviceSnapshot.reason).
REASON_NO_LIBRARY = "no NVML library"


REASON_NO_DRIVER = "no NVIDIA driver"


REASON_NO_GPU = "no GPU found"


REASON_NO_PERMISSION = "no permission to use NVML"


REASON_VERSION_MISMATCH = "NVIDIA driver/library version mismatch (reload the driver or reboot)"


# NVML return codes (the values of pynvml's NVML_ERROR_* constants, which are part of the
# NVML ABI). Errors are classified by their ``.value`` code rather than by class so that
# anything shaped like an NVMLError is handled, whatever module defined it.
_ERR_UNINITIALIZED = 1


ERR_NOT_SUPPORTED = 3


ERR_NO_PERMISSION = 4


_ERR_NOT_FOUND = 6


_ERR_DRIVER_NOT_LOADED = 9


_ERR_LIBRARY_NOT_FOUND = 12


_ERR_FUNCTION_NOT_FOUND = 13


_ERR_GPU_IS_LOST = 15


_ERR_RESET_REQUIRED = 16


_ERR_LIB_RM_VERSION_MISMATCH = 18


# Expected "this value does not exist here" answers: not worth reporting on a device.
_BENIGN_CODES = frozenset({ERR_NOT_SUPPORTED, ERR_NO_PERMISSION, _ERR_NOT_FOUND, _ERR_FUNCTION_NOT_FOUND})


# After one of these, every further query of the device fails too: stop asking.
FATAL_DEVICE_CODES = frozenset({_ERR_GPU_IS_LOST, _ERR_RESET_REQUIRED})


NVML_DEVICE_MIG_ENABLE = 1


# NVML reports "value not available" as an all-ones unsigned integer.
NOT_AVAILABLE_THRESHOLD = 2**63


class _NAType:
    """The default of :func:`nvml_query`: a falsy singleton that prints as ``N/A``."""

    _instance: _NAType | None = None

    def __new__(cls) -> _NAType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "N/A"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NA"


NA: Any = _NAType()


class _Failure(NamedTuple):
    code: int | None  # NVML return code, or None for a non-NVML failure
    text: str

    @property
    def benign(self) -> bool:
        return self.code in _BENIGN_CODES


class _InitState:
    """What the one-and-only nvmlInit attempt of this process found."""

    def __init__(self) -> None:
        self.tried = False
        self.module: Any = None  # the pynvml module when nvmlInit succeeded
        self.reason: str | None = None  # why NVML is unusable, when it is


_lock = threading.RLock()


_state = _InitState()
_atexit_registered = False


def _error_text(exc: BaseException) -> str:
    # str() of an NVMLError with an unusual code calls back into the library; never let
    # formatting an error raise another one.
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001
        text = ""
    if not text:
        code = getattr(exc, "value", None)
        text = f"NVML error {code}" if isinstance(code, int) else type(exc).__name__
    return text


def _failure(exc: BaseException) -> _Failure:
    code = getattr(exc, "value", None)
    return _Failure(code if isinstance(code, int) else None, _error_text(exc))


def _init_reason(failure: _Failure) -> str:
    if failure.code == _ERR_LIBRARY_NOT_FOUND:
        return REASON_NO_LIBRARY
    if failure.code == _ERR_DRIVER_NOT_LOADED:
        return REASON_NO_DRIVER
    if failure.code == ERR_NO_PERMISSION:
        return REASON_NO_PERMISSION
    if failure.code == _ERR_LIB_RM_VERSION_MISMATCH:
        return REASON_VERSION_MISMATCH
    return f"NVML error: {failure.text}"


def _shutdown_at_exit() -> None:
    with _lock:
        module = _state.module
        _state.module = None
    if module is not None:
        try:
            module.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def ensure_init() -> Any:
    """The initialised pynvml module, or None (then ``_state.reason`` says why)."""
    global _atexit_registered
    with _lock:
        if _state.tried:
            return _state.module
        _state.tried = True
        try:
            import pynvml  # noqa: PLC0415  (lazy: only when telemetry is asked for)
        except Exception:  # ImportError, or a broken install  # noqa: BLE001
            _state.reason = REASON_NO_LIBRARY
            return None
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001
            _state.reason = _init_reason(_failure(exc))
            return None
        _state.module = pynvml
        if not _atexit_registered:
            atexit.register(_shutdown_at_exit)
            _atexit_registered = True
        return pynvml


def _reinit(module: Any) -> bool:
    """NVML said Uninitialized (someone called nvmlShutdown): initialise it again."""
    with _lock:
        try:
            module.nvmlInit()
            return True
        except Exception:  # noqa: BLE001
            return False


def _decode(value: Any) -> Any:
    # Old nvidia-ml-py releases return bytes for strings.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def nvml_call(func_name: str, *args: Any, **kwargs: Any) -> tuple[Any, _Failure | None]:
    """Call ``pynvml.<func_name>``: (value, None) on success, (None, failure) otherwise."""
    module = ensure_init()
    if module is None:
        return None, _Failure(None, _state.reason or REASON_NO_LIBRARY)
    func = getattr(module, func_name, None)
    if not callable(func):
        return None, _Failure(_ERR_FUNCTION_NOT_FOUND, f"{func_name} is not in this pynvml")
    for attempt in range(2):
        try:
            return _decode(func(*args, **kwargs)), None
        except Exception as exc:  # noqa: BLE001  (NVMLError and anything else: never raise)
            failure = _failure(exc)
            if failure.code == _ERR_UNINITIALIZED and attempt == 0 and _reinit(module):
                continue
            return None, failure
    return None, _Failure(_ERR_UNINITIALIZED, "Uninitialized")  # pragma: no cover


def nvml_query(func_name: str, *args: Any, default: Any = NA, **kwargs: Any) -> Any:
    """``pynvml.<func_name>(*args, **kwargs)``, or ``default`` if it fails for any reason.

    Imports pynvml and calls ``nvmlInit`` on first use (once per process; a failed init is
    remembered, see :func:`nvml_status`). Never raises.
    """
    value, failure = nvml_call(func_name, *args, **kwargs)
    return default if failure is not None else value


def init_failure() -> str | None:
    """Why the one nvmlInit attempt of this process failed (None: it did not fail, or was not made)."""
    return _state.reason


def nvml_status() -> str | None:
    """None when NVML is usable, otherwise why not (one of the ``REASON_*`` strings)."""
    return None if ensure_init() is not None else _state.reason


def _reset_for_tests() -> None:
    """Forget the init attempt so that the next query imports and initialises pynvml anew."""
    global _state
    with _lock:
        _state = _InitState()
