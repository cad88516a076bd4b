"""common/memory.py: freed heap and Arrow pool pages go back to the OS when asked."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from loan_default.common.memory import _malloc_trim, release_free_memory


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(_malloc_trim() is None, reason="glibc's malloc_trim is not available here")
def test_freed_small_blocks_are_returned_only_when_released() -> None:
    release_free_memory()
    before = _rss_mib()
    # 200 MiB in 8 KiB arrays: below glibc's mmap threshold, so they live on the heap, which keeps them once freed
    # while a small block allocated after them pins the heap's top.
    blocks = [np.ones(1024) for _ in range(25_600)]
    pin = np.ones(16)
    del blocks
    kept = _rss_mib() - before
    release_free_memory()
    returned = kept - (_rss_mib() - before)
    assert kept > 150, f"the heap should have kept the freed blocks ({kept:.0f} MiB)"
    assert returned > 0.8 * kept, f"only {returned:.0f} of {kept:.0f} MiB went back"
    del pin


def test_arrow_pool_pages_are_returned_when_released() -> None:
    release_free_memory()
    before = _rss_mib()
    # ~300 MiB of small Arrow buffers (160 KB each): Arrow's pool (mimalloc here) keeps their pages once freed.
    arrays = [pc.add(pa.array(np.arange(20_000)), 1) for _ in range(2_000)]
    del arrays
    kept = _rss_mib() - before
    release_free_memory()
    returned = kept - (_rss_mib() - before)
    if kept < 100:
        pytest.skip(f"this Arrow pool ({pa.default_memory_pool().backend_name}) returned the pages by itself")
    assert returned > 0.7 * kept, f"only {returned:.0f} of {kept:.0f} MiB went back"
