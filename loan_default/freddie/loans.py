"""From Freddie Mac files to the labelled loan table: find pairs, read, label, join the synthetic truth, concatenate."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.extensions import take

from loan_default.common.progress import progress
from loan_default.freddie.errors import FreddieDataWarning, FreddieFileError, SkipLog, check_policy
from loan_default.freddie.files import FilePair, find_file_pairs
from loan_default.freddie.labels import LabelConfig, LabelReport, OutcomeAggregator, label_loans
from loan_default.freddie.reader import read_origination, read_performance

DEFAULT_LABEL = LabelConfig()
TRUTH_FILE = "truth.csv"
TRUTH_COLUMNS = ("loan_id", "true_pd", "corrupted")  # "corruption" (what was done) stays out: never a feature


def load_loan_table(
    origination: str | os.PathLike | None = None,
    performance: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    label: LabelConfig | Mapping = DEFAULT_LABEL,
    on_bad_row: str = "raise",
    truth: str | os.PathLike | None = None,
) -> tuple[pd.DataFrame, LabelReport]:
    """The labelled loan table (one row per loan) and a report of what was read, labelled, dropped and skipped.

    Give an (origination, performance) pair or a folder (searched recursively, zips included). `truth` is a
    truth.csv to join (`true_pd`, `corrupted`); by default the folder's own truth.csv files are used when present.
    """
    check_policy(on_bad_row)
    config = label if isinstance(label, LabelConfig) else LabelConfig(**label)
    pairs = find_file_pairs(origination, performance, folder)
    results = [load_pair(pair, config, on_bad_row) for pair in progress(pairs, desc="vintages", unit="vintage")]
    frames = [frame for frame, _ in results]
    table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    report = LabelReport.combine(r for _, r in results)
    _check_unique_across(table, pairs, results)
    truth_files = [Path(truth)] if truth is not None else _truth_files(folder)
    if truth_files:
        table = join_truth(table, read_truth(truth_files))
    return table, report


def load_pair(
    pair: FilePair, label: LabelConfig = DEFAULT_LABEL, on_bad_row: str = "raise"
) -> tuple[pd.DataFrame, LabelReport]:
    """Read and label one vintage. Self-contained, so vintages can be processed in parallel."""
    skipped = SkipLog()
    origination = read_origination(pair.origination, on_bad_row=on_bad_row, skipped=skipped)
    outcomes = OutcomeAggregator(label)
    for batch in read_performance(pair.performance, on_bad_row=on_bad_row, skipped=skipped):
        outcomes.add(batch)
    # Blocks freed while streaming stay with arrow's allocator unless handed back; the loan table is built next.
    pa.default_memory_pool().release_unused()
    table, report = label_loans(origination, outcomes.result(), label)
    report.vintages = [pair.vintage_label]
    for reason, n in skipped.counts.items():
        report.skipped_rows[reason] = report.skipped_rows.get(reason, 0) + n
    skipped.warn(f"vintage {pair.vintage_label}")
    return table, report


def _check_unique_across(
    table: pd.DataFrame, pairs: list[FilePair], results: list[tuple[pd.DataFrame, LabelReport]]
) -> None:
    """A loan in two vintages means the same data was given twice (a sample file beside the full one, say)."""
    duplicated = table["loan_id"].duplicated(keep=False).to_numpy()
    if not duplicated.any():
        return
    loan_id = table["loan_id"].to_numpy()[np.flatnonzero(duplicated)[0]]
    holders = [
        pair.vintage_label
        for pair, (frame, _) in zip(pairs, results, strict=True)
        if (frame["loan_id"] == loan_id).any()
    ]
    raise FreddieFileError(
        f"{int(duplicated.sum()):,} loans appear in more than one vintage (e.g. {loan_id!r} in {', '.join(holders)}); "
        "is the same data there twice?"
    )


def _truth_files(folder: str | os.PathLike | None) -> list[Path]:
    if folder is None or not Path(folder).is_dir():
        return []
    return sorted(Path(folder).rglob(TRUTH_FILE))


def read_truth(paths: list[Path]) -> pd.DataFrame:
    """`loan_id`, `true_pd` (float64), `corrupted` (int8) from one or more truth.csv files."""
    frames = []
    for path in paths:
        frame = pd.read_csv(
            path,
            dtype={"loan_id": "string", "corruption": "string"},
            keep_default_na=False,
            na_values={"true_pd": [""], "corrupted": [""]},
        )
        missing = sorted(set(TRUTH_COLUMNS) - set(frame.columns))
        if missing:
            raise FreddieFileError(f"{path}: truth file lacks columns {missing} (header: {list(frame.columns)})")
        frames.append(frame[list(TRUTH_COLUMNS)])
    truth = pd.concat(frames, ignore_index=True)
    if truth["loan_id"].duplicated().any():
        raise FreddieFileError(
            f"{', '.join(map(str, paths))}: loan {truth['loan_id'][truth['loan_id'].duplicated()].iloc[0]!r} twice"
        )
    return truth.astype({"true_pd": "float64", "corrupted": "int8"})


def join_truth(table: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """`table` with `true_pd` and `corrupted` added by loan id (the table itself is not copied).

    Loans the truth does not cover get NaN and <NA> (`corrupted` then becomes a nullable Int8), with a warning.
    """
    at = pd.Index(truth["loan_id"].astype(table["loan_id"].dtype)).get_indexer(table["loan_id"])
    true_pd = take(truth["true_pd"].to_numpy(), at, allow_fill=True, fill_value=np.nan)
    corrupted = take(pd.array(truth["corrupted"], dtype="Int8"), at, allow_fill=True)
    uncovered = int((at < 0).sum())
    if uncovered:
        warnings.warn(f"{uncovered:,} loans have no row in the truth file", FreddieDataWarning, stacklevel=3)
    return table.assign(true_pd=true_pd, corrupted=corrupted if uncovered else corrupted.astype("int8"))
