"""The preprocessor and the outlier filter, fitted on the training rows once and shared by DDP ranks.

`fit_filters` is the fit itself (what a single process runs). `fit_once` runs it under a file lock beside the table
cache: the first rank to take the lock fits and saves the result (preprocessor JSON, exported outlier detector,
keep-mask, report); the others, waiting on the lock, load it. The key covers everything the fit reads: the training
rows' content, a given (cross-validation) preprocessor, the outlier settings and the seed, so a changed table or setting
never reuses a stale fit (and a later DDP run on the same rows and settings loads the same, deterministic, fit). Ranks
on one machine (or on a shared cache folder) fit once; with a cache folder per machine each machine fits once, with
the same seeded result. Nothing here is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loan_default.common.atomic import atomic_write, atomic_write_text, make_tree_readable
from loan_default.common.memory import release_free_memory
from loan_default.core.outlier_scorer import NPZ_NAME, OutlierScorer, write_outlier_state
from loan_default.core.preprocess import CHUNK_ROWS, Preprocessor
from loan_default.training.cache import file_lock
from loan_default.training.outliers import OutlierFilter, RowSource

log = logging.getLogger(__name__)

FORMAT = 2  # bump when what is saved, or how the fit works, changes (2: outlier max_fit_rows, report fit_rows)


@dataclass
class Fitted:
    """What setup needs from the fit: the preprocessor, the outlier filter (for the bundle), its report and keep-mask
    over the training rows it saw."""

    preprocessor: Preprocessor
    outlier_filter: Any  # OutlierFilter, or SavedOutlierFilter when another rank fitted it
    report: dict
    keep: np.ndarray


def fit_filters(
    table: pd.DataFrame,
    preprocessor: Preprocessor | None,
    outlier: Mapping[str, Any],
    seed: int,
    rows: np.ndarray | None = None,
) -> Fitted:
    """Fit the preprocessor (unless given) and the outlier filter on the training rows, ``table``'s rows at positions
    ``rows`` (default: all), read by chunks (no copy of them is held); keep-mask (over ``rows``) and report."""
    rows = np.arange(len(table)) if rows is None else np.asarray(rows)
    preprocessor = preprocessor or Preprocessor().fit(table, rows=rows)
    release_free_memory()  # the preprocessor fit's columns, before the outlier fit's own temporaries
    outlier_filter = OutlierFilter(seed=seed, **outlier)
    keep = outlier_filter.fit(OutlierRows(preprocessor, table, rows), table["default"].to_numpy()[rows])
    report = dict(outlier_filter.report)
    if "corrupted" in table:  # synthetic data: how many of the generator's corrupted records were caught
        corrupted = table["corrupted"].to_numpy()[rows].astype(bool)
        if corrupted.any():
            report["corrupted_recall"] = float((~keep[corrupted]).mean())
    return Fitted(preprocessor, outlier_filter, report, keep)


class OutlierRows(RowSource):
    """`Preprocessor.outlier_matrix` of the training rows, built for the rows the filter asks for (its fit subsample,
    then chunks): the whole float32 matrix (28 bytes a training row) is never held. Each row's values depend on that
    row alone, so the rows equal those of the whole matrix."""

    def __init__(self, preprocessor: Preprocessor, table: pd.DataFrame, positions: np.ndarray) -> None:
        self._preprocessor, self._table, self._positions = preprocessor, table, positions
        self.shape = (len(positions), len(preprocessor.outlier_names))

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        # The fit subsample (up to outlier.max_fit_rows) too: the table's rows are copied a chunk at a time, not all.
        return self._preprocessor.outlier_matrix(self._table, rows=self._positions[rows])


def fit_key(
    table: pd.DataFrame,
    rows: np.ndarray,
    columns: list[str],
    preprocessor: Preprocessor | None,
    outlier: Mapping[str, Any],
    seed: int,
) -> str:
    """A short hash of everything the fit depends on: the ``columns`` of ``table``'s rows ``rows`` (hashed by
    chunks), the given preprocessor, the outlier settings and the seed."""
    h = hashlib.sha256()
    for start in range(0, len(rows), CHUNK_ROWS):
        part = table.iloc[rows[start : start + CHUNK_ROWS]][columns]
        h.update(np.ascontiguousarray(pd.util.hash_pandas_object(part, index=False).to_numpy()).tobytes())
    h.update(",".join(map(str, columns)).encode())
    settings = {"outlier": dict(outlier), "seed": int(seed), "format": FORMAT}
    settings["preprocessor"] = preprocessor.state() if preprocessor is not None else None
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def fit_once(
    folder: Path | None,
    world_size: int,
    table: pd.DataFrame,
    preprocessor: Preprocessor | None,
    outlier: Mapping[str, Any],
    seed: int,
    rows: np.ndarray | None = None,
    columns: list[str] | None = None,
) -> Fitted:
    """`fit_filters` on ``table``'s rows ``rows``, run once per machine for ``world_size`` > 1 ranks: the first rank
    to take the lock fits and saves into ``folder``, later ranks load (the key hashes ``columns``, default all, of
    those rows). A single process fits as always, saving nothing."""
    if world_size == 1:
        return fit_filters(table, preprocessor, outlier, seed, rows)
    if folder is None:
        raise ValueError("DDP ranks share the fitted preprocessing through data.cache_dir: set it (a local folder)")
    folder = Path(folder)
    rows = np.arange(len(table)) if rows is None else np.asarray(rows)
    key = fit_key(table, rows, list(table.columns) if columns is None else list(columns), preprocessor, outlier, seed)
    entry = folder / f"fitted_{key}"
    with file_lock(folder / f"fitted_{key}.lock"):
        if entry.is_dir():
            log.info(
                "Fit once: loaded the preprocessor and outlier filter fitted by another rank (or an earlier run "
                "on the same rows and settings) from %s",
                entry,
            )
            return load_fitted(entry)
        fitted = fit_filters(table, preprocessor, outlier, seed, rows)
        save_fitted(fitted, entry)
        log.info("Fit once: fitted the preprocessor and outlier filter, saved for the other ranks at %s", entry)
        return fitted


def save_fitted(fitted: Fitted, entry: Path) -> None:
    """Write into a temporary folder beside ``entry``, then rename: an interrupted save leaves no entry."""
    tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fitted.preprocessor.save(tmp)
    fitted.outlier_filter.export(tmp / "outlier")
    atomic_write(tmp / "keep.npy", lambda f: np.save(f, np.asarray(fitted.keep, dtype=bool), allow_pickle=False))
    atomic_write_text(tmp / "report.json", json.dumps(fitted.report, indent=2, allow_nan=False))
    make_tree_readable(tmp)
    os.replace(tmp, entry)


def load_fitted(entry: Path) -> Fitted:
    report = json.loads((entry / "report.json").read_text())
    keep = np.load(entry / "keep.npy", allow_pickle=False)
    outlier_filter = SavedOutlierFilter(entry / "outlier", report, keep)
    return Fitted(Preprocessor.load(entry), outlier_filter, report, keep)


class SavedOutlierFilter:
    """An `OutlierFilter` fitted by another rank, read back: what the bundle and the evaluation use of one."""

    def __init__(self, directory: Path, report: dict, keep: np.ndarray) -> None:
        scorer = OutlierScorer.load(directory)  # checks the npz against the JSON's checksum
        self._meta = {k: v for k, v in scorer.meta.items() if k != "npz_sha256"}
        self._arrays: dict[str, np.ndarray] = {}
        if (directory / NPZ_NAME).exists() and self._meta.get("method") != "none":
            with np.load(directory / NPZ_NAME, allow_pickle=False) as npz:
                self._arrays = {k: npz[k] for k in npz.files}
        self.method = str(self._meta.get("method"))
        self.keep_mask_ = keep
        self._report = dict(report)

    @property
    def report(self) -> dict:
        return dict(self._report)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return dict(self._meta), dict(self._arrays)

    def scorer(self) -> OutlierScorer:
        return OutlierScorer(*self.state())

    def export(self, directory: str | os.PathLike[str]) -> Path:
        return write_outlier_state(directory, *self.state())
