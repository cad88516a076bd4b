"""Cache of the labelled loan table, so a second run does not re-read gigabytes of performance history.

The key covers everything the table depends on: each input file's path, size and modification time, the label
settings, the bad-row policy and the cache format. Change any of them and the table is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from filelock import FileLock

from loan_default.common.atomic import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: the compact table (categoricals, float32 where exact)
CACHE_ROW_GROUP = 65_536


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


def file_lock(path: Path) -> FileLock:
    """An exclusive lock across processes, held for a `with` block (released if the process dies; any platform)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path)


def _cached_table(
    cache_dir: Path, key: str, build: Callable[[], tuple[pd.DataFrame, dict]]
) -> tuple[pd.DataFrame, dict]:
    table_path, report_path = cache_dir / f"loans_{key}.parquet", cache_dir / f"loans_{key}.json"
    if table_path.exists() and report_path.exists():
        log.info("Loan table from cache %s", table_path)
        # Each Arrow column freed as soon as it is converted: not the whole table twice (Arrow's and pandas') at once.
        table = pd.read_parquet(table_path, to_pandas_kwargs={"self_destruct": True, "split_blocks": True})
        return table, json.loads(report_path.read_text())
    table, report = build()
    # Table first, report last: an entry counts only when both exist, so an interrupted run leaves none. Row groups of
    # 65,536 rows: the writer's buffers stay ~30 MB instead of ~80 bytes a loan (one row group of a million rows).
    atomic_write(table_path, lambda f: table.to_parquet(f, index=False, row_group_size=CACHE_ROW_GROUP))
    atomic_write_text(report_path, json.dumps(report, indent=2, default=str))
    log.info("Cached the loan table at %s", table_path)
    return table, report
