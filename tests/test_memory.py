"""common/memory.py: freed heap and Arrow pool pages go back to the OS when asked.

Each check runs in a fresh interpreter: in a long test process the heap already holds free chunks that new small
blocks reuse, so whether freeing alone returns memory would depend on the tests before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loan_default.common.memory import _malloc_trim

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
import numpy as np, pyarrow as pa, pyarrow.compute as pc
from loan_default.common.memory import release_free_memory

def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))

release_free_memory()
before = rss()
if sys.argv[1] == "heap":  # 200 MiB in 8 KiB arrays: on the heap, whose top a later small block pins
    blocks = [np.ones(1024) for _ in range(25_600)]
    pin = np.ones(16)
else:  # ~300 MiB of small Arrow buffers, which Arrow's pool keeps once freed
    blocks = [pc.add(pa.array(np.arange(20_000)), 1) for _ in range(2_000)]
del blocks
kept = rss() - before
release_free_memory()
print(json.dumps({"kept": kept, "after": rss() - before, "pool": pa.default_memory_pool().backend_name}))
"""


def _probe(kind: str) -> dict:
    run = subprocess.run([sys.executable, "-c", PROBE, kind], capture_output=True, text=True, check=True, cwd=REPO)
    out = run.stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(_malloc_trim() is None, reason="glibc's malloc_trim is not available here")
def test_freed_heap_blocks_are_returned_only_when_released() -> None:
    got = _probe("heap")
    assert got["kept"] > 150, f"the heap should have kept the freed blocks: {got}"
    assert got["kept"] - got["after"] > 0.8 * got["kept"], f"release returned too little: {got}"


def test_arrow_pool_pages_are_returned_when_released() -> None:
    got = _probe("arrow")
    if got["kept"] < 100:
        pytest.skip(f"this Arrow pool ({got['pool']}) returned the pages by itself: {got}")
    assert got["kept"] - got["after"] > 0.7 * got["kept"], f"release returned too little: {got}"
