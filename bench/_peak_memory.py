"""The peak memory a call adds above what the process holds before it (Linux), for the memory benchmarks.

Freed memory is handed back first (`release_free_memory`: otherwise the call could grow into memory that earlier work
freed but kept, and its peak would hide), then the kernel's high-water mark is reset to the current RSS
(``/proc/self/clear_refs``), the call runs, and VmHWM minus the RSS before is what it added at its peak.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from loan_default.common.memory import release_free_memory


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def added_peak(call: Callable[[], Any]) -> tuple[Any, int, float]:
    """``call()``'s result, the bytes its peak added above the memory held before it, and its seconds."""
    release_free_memory()
    before = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    return result, (status_kib("VmHWM") - before) * 1024, seconds
