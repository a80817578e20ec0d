"""Resident memory of this process, from /proc (Linux)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(f"{key} not in {_STATUS}")


def rss_mib() -> float:
    """Resident set size now."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """The highest resident set size since the process started or since `reset_peak_rss`."""
    return _status_kib("VmHWM") / 1024


def reset_peak_rss() -> bool:
    """Restart peak tracking at the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so the next case starts from a clean RSS."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    trim = getattr(libc, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)


def available_bytes() -> int:
    """MemAvailable: what the machine can still give without swapping (other work shares it)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise LookupError("no MemAvailable in /proc/meminfo")
