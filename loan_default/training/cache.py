"""Cache of the labelled loan table, so a second run does not re-read gigabytes of performance history.

The key covers everything the table depends on: each input file's path, size and modification time, the label
settings, the bad-row policy and the cache format. Change any of them and the table is rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def fingerprint(files: Iterable[Path], settings: dict) -> str:
    """A short hash of the input files' identity (path, size, mtime) and the settings that shape the table."""
    h = hashlib.sha256()
    for f in sorted(Path(p).resolve() for p in files):
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps({"settings": settings, "format": CACHE_FORMAT}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def cached_table(
    cache_dir: Path | None, key: str, build: Callable[[], tuple[pd.DataFrame, dict]]
) -> tuple[pd.DataFrame, dict]:
    """Return (table, report) from `cache_dir/<key>.parquet` or build and store them (atomically)."""
    if cache_dir is None:
        return build()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir / f"loans_{key}.lock"):  # DDP ranks on one node: one builds, the others then read
        return _cached_table(cache_dir, key, build)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the duration of the block (released if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_table(
    cache_dir: Path, key: str, build: Callable[[], tuple[pd.DataFrame, dict]]
) -> tuple[pd.DataFrame, dict]:
    table_path, report_path = cache_dir / f"loans_{key}.parquet", cache_dir / f"loans_{key}.json"
    if table_path.exists() and report_path.exists():
        log.info("Loan table from cache %s", table_path)
        return pd.read_parquet(table_path), json.loads(report_path.read_text())
    table, report = build()
    # Write to temporary names (unique per process) and rename: an interrupted run never leaves a half-written entry.
    tag = f".{os.getpid()}.tmp"
    tmp_table, tmp_report = table_path.with_suffix(".parquet" + tag), report_path.with_suffix(".json" + tag)
    table.to_parquet(tmp_table, index=False)
    tmp_report.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp_table, table_path)
    os.replace(tmp_report, report_path)
    log.info("Cached the loan table at %s", table_path)
    return table, report
