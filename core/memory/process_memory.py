"""This process's memory as the kernel counts it: RSS (Linux /proc, psutil elsewhere), the peak
over a block (the VmHWM high-water mark, or a 1 ms sampler where it cannot be reset), and a
steady allocator so a measurement is not one of glibc's thresholds moving."""

from __future__ import annotations

import ctypes
import gc
import threading

import psutil


def _proc_status() -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


def rss_bytes() -> int:
    status = _proc_status()
    if "VmRSS" in status:
        return status["VmRSS"]

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int | None:
    return _proc_status().get("VmHWM")


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class PeakWatch:
    """The process's peak RSS over a `with` block: the kernel's high-water mark (VmHWM, reset at
    entry through /proc/self/clear_refs) where that works, else a thread sampling RSS every
    millisecond (which can miss a spike shorter than that). `peak` and `method` after exit."""

    def __init__(self, *, force_sampling: bool = False, interval_s: float = 0.001) -> None:
        self.force_sampling, self.interval_s = force_sampling, interval_s
        self.peak: int | None = None
        self.method = ""
        self._sampled = 0
        self._thread = None
        self._stop = None

    def __enter__(self) -> "PeakWatch":
        if not self.force_sampling and reset_peak_rss() and peak_rss_bytes() is not None:
            self.method = "VmHWM"
            return self

        self.method = "sampled"
        self._sampled = rss_bytes()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._sampled = max(self._sampled, rss_bytes())
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.method == "VmHWM":
            self.peak = peak_rss_bytes()
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self._sampled, rss_bytes())


M_MMAP_THRESHOLD = -3          # glibc mallopt parameter


STEADY_MMAP_THRESHOLD = 64 * 1024


def steady_allocator(threshold: int = STEADY_MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold, so every block from 64 KiB up (every tensor that matters) is
    its own mapping, returned to the OS when freed. By default glibc raises the threshold to the
    size of each freed mapping (up to 32 MiB), after which such blocks come from the heap and
    freed ones linger: RSS peaks of one training step then varied by 0-40% with the order of
    frees in our runs. Call it at the start of a process (measurement, training job) whose RSS
    should track its live tensors. False where glibc is not there."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


def settle() -> None:
    """Collect garbage and hand freed heap back to the OS, so RSS reflects live memory."""

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
