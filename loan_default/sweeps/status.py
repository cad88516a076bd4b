"""The record each sweep job keeps in its folder, `status.json`: what ran, when, and how it ended.

Written by `loan_default.sweeps.callbacks` when a job starts and ends; read by the sweep summary and by the resumable
Optuna sweeper, which uses it to tell a trial that failed from one that a killed sweep cut short.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loan_default.common.atomic import atomic_write_text
from loan_default.training.evaluation.report import to_jsonable

STATUS_FILE = "status.json"
RUNNING, OK, FAILED, INTERRUPTED = "running", "ok", "failed", "interrupted"


def write_status(job_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write the record atomically, so a summary built at the same moment sees the old record or the new one."""
    return atomic_write_text(Path(job_dir) / STATUS_FILE, json.dumps(to_jsonable(record), indent=2) + "\n")


def read_status(job_dir: str | Path) -> dict[str, Any] | None:
    """The job's record, or None when it has none (a folder from before the callback, or not a job folder)."""
    try:
        return json.loads((Path(job_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def job_records(sweep_dir: str | Path) -> dict[int, tuple[Path, dict[str, Any]]]:
    """Every job folder directly under ``sweep_dir`` that holds a record, keyed by Hydra's job number."""
    found = {}
    for path in sorted(Path(sweep_dir).iterdir()) if Path(sweep_dir).is_dir() else []:
        record = read_status(path) if path.is_dir() else None
        if record is not None and isinstance(record.get("num"), int):
            found[record["num"]] = (path, record)
    return found


def mark_interrupted(job_dir: str | Path) -> bool:
    """Turn a `running` record left behind by a killed sweep into `interrupted`; True when it changed."""
    record = read_status(job_dir)
    if record is None or record.get("status") != RUNNING:
        return False
    write_status(job_dir, {**record, "status": INTERRUPTED})
    return True
