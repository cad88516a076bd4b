"""From Freddie Mac files to the labelled loan table: find pairs, read, label, join the synthetic truth, concatenate."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.extensions import take

from loan_default.common.memory import release_free_memory
from loan_default.common.parallel import ordered_map, resolve_workers
from loan_default.common.progress import progress_bar
from loan_default.freddie import schema
from loan_default.freddie.errors import FreddieDataWarning, FreddieFileError, SkipLog, check_policy
from loan_default.freddie.files import FilePair, find_file_pairs
from loan_default.freddie.labels import LabelConfig, LabelReport, OutcomeAggregator, label_loans
from loan_default.freddie.reader import read_origination, read_performance

log = logging.getLogger(__name__)

DEFAULT_LABEL = LabelConfig()
TRUTH_FILE = "truth.csv"
TRUTH_COLUMNS = ("loan_id", "true_pd", "corrupted")  # "corruption" (what was done) stays out: never a feature
# Below this much performance data (~40k synthetic loans) one process is faster than starting workers (workers=None).
PARALLEL_MIN_BYTES = 160 * 2**20


def load_loan_table(
    origination: str | os.PathLike | None = None,
    performance: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    label: LabelConfig | Mapping = DEFAULT_LABEL,
    on_bad_row: str = "raise",
    truth: str | os.PathLike | None = None,
    compact: bool = False,
    workers: int | None = None,
) -> tuple[pd.DataFrame, LabelReport]:
    """The labelled loan table (one row per loan) and a report of what was read, labelled, dropped and skipped.

    Give an (origination, performance) pair or a folder (searched recursively, zips included). `truth` is a
    truth.csv to join (`true_pd`, `corrupted`); by default the folder's own truth.csv files are used when present.
    `compact=True` gives the same values in `compact_loan_table`'s dtypes, each vintage compacted as soon as it is
    read, so the full-width table never exists (training's in-memory form; the Parquet table keeps the wide dtypes).
    `workers` processes read file pairs at once (None: one per CPU, at most 8, unless the files are small); the
    vintages are concatenated in the same order, so the table is the same for any number of workers. Each vintage
    is joined to the truth and compacted where it was read: what this process holds at most is the vintages' compact
    tables and their concatenation.
    """
    check_policy(on_bad_row)
    config = label if isinstance(label, LabelConfig) else LabelConfig(**label)
    pairs = find_file_pairs(origination, performance, folder)
    started = time.perf_counter()
    small = sum(pair.performance.size() for pair in pairs) < PARALLEL_MIN_BYTES
    rows = 0
    with progress_bar(total=len(pairs), desc="read+label", unit="vintage") as bar:

        def done(result: tuple[pd.DataFrame, LabelReport]) -> None:
            nonlocal rows
            rows += result[1].performance_rows
            release_free_memory()  # the vintage's read buffers (retained by arrow's pool and the C heap otherwise)
            bar.set_postfix_str(f"{rows / (time.perf_counter() - started):,.0f} rows/s", refresh=False)
            bar.update()

        truth_files = tuple([Path(truth)] if truth is not None else _truth_files(folder))
        task = partial(_load_vintage, label=config, on_bad_row=on_bad_row, compact=compact, truth_files=truth_files)
        try:
            results = ordered_map(task, pairs, resolve_workers(workers, len(pairs), small), done=done)
        finally:
            _truth_index.cache_clear()  # the truth read for the vintages (in this process when workers=1)
    uncovered = sum(n for _, _, n in results)
    if uncovered:
        warnings.warn(f"{uncovered:,} loans have no row in the truth file", FreddieDataWarning, stacklevel=2)
    frames = [frame for frame, _, _ in results]
    reports = [report for _, report, _ in results]
    del results
    ends = np.cumsum([len(frame) for frame in frames])  # each vintage's rows end here in the table
    table = frames[0] if len(frames) == 1 else concat_tables(frames)
    del frames
    release_free_memory()  # the vintages' own copies, now in `table`
    report = LabelReport.combine(reports)
    _check_unique_across(table, [pair.vintage_label for pair in pairs], ends)
    seconds = time.perf_counter() - started
    log.info(
        "Read and labelled %s performance rows of %s loans in %.1f s (%s rows/s)",
        f"{report.performance_rows:,}", f"{report.loans_read:,}", seconds,
        f"{report.performance_rows / max(seconds, 1e-9):,.0f}",
    )  # fmt: skip
    return table, report


def compact_loan_table(table: pd.DataFrame) -> pd.DataFrame:
    """The same loan table in less memory, values unchanged: origination codes and names as categoricals, float64
    columns as float32 where every value survives the round trip (counts, scores, dates, whole-dollar balances; not
    rates), int64 as int32 where the values fit. The loan id, `vintage` and the other label strings stay strings
    (`vintage.min()` needs an order; ids are unique, a categorical would only add codes).
    """
    columns = {}
    for name in table.columns:
        column = table[name]
        field = schema.ORIGINATION_FIELDS.get(name)
        if field is not None and name != "loan_id" and field.kind in (schema.Kind.CODE, schema.Kind.TEXT):
            column = column if isinstance(column.dtype, pd.CategoricalDtype) else _categorical(column)
        elif column.dtype == np.float64:
            values = column.to_numpy()
            narrow = values.astype(np.float32)
            if np.array_equal(narrow.astype(np.float64), values, equal_nan=True):
                column = pd.Series(narrow, index=column.index, name=name)
        elif column.dtype == np.int64 and len(column):
            info = np.iinfo(np.int32)
            if info.min <= column.min() and column.max() <= info.max:
                column = column.astype(np.int32)
        columns[name] = column
    # Not consolidated (one block per column): `concat_tables` frees each column of a vintage once it is copied.
    return pd.DataFrame(columns, index=table.index, copy=False)


def _categorical(column: pd.Series) -> pd.Series:
    """A string column as a categorical with sorted categories, encoded by arrow (pandas' astype is ~5x slower)."""
    encoded = (
        pa.chunked_array(pa.array(column, type=pa.string(), from_pandas=True)).combine_chunks().dictionary_encode()
    )
    if len(encoded.dictionary) == 0:  # all missing: stays a string column (Parquet reads an empty category as object)
        return column
    categories = _category_index(encoded.dictionary.to_pylist())
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return pd.Series(_recode(codes, categories, categories.sort_values()), index=column.index, name=column.name)


def _category_index(values: list[str]) -> pd.Index:
    """Categories in pandas' default string dtype: what the Parquet cache reads back."""
    return pd.Index(values, dtype="str")


def _recode(codes: np.ndarray, categories: pd.Index, to: pd.Index) -> pd.Categorical:
    """Codes into `categories` as a categorical over `to` (a superset); -1 (missing) stays -1."""
    mapping = np.append(to.get_indexer(categories), -1)  # code -1 takes the last entry
    return pd.Categorical.from_codes(mapping[codes], dtype=pd.CategoricalDtype(to))


def concat_tables(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """`pd.concat` that keeps categorical columns categorical when the frames' categories differ (their union), also
    where one frame holds the column as an all-missing string column. Empties ``frames`` (their columns move)."""
    names = [name for name in frames[0].columns if any(isinstance(f[name].dtype, pd.CategoricalDtype) for f in frames)]
    for name in names:
        categorical = [f[name].array for f in frames if isinstance(f[name].dtype, pd.CategoricalDtype)]
        union = _category_index(sorted(set().union(*(values.categories for values in categorical))))
        for frame in frames:  # column by column, in place: no second copy of every frame at once
            values = frame[name].array
            if isinstance(values, pd.Categorical):
                frame[name] = _recode(values.codes, values.categories, union)
            else:
                frame[name] = pd.Categorical.from_codes(np.full(len(frame), -1), dtype=pd.CategoricalDtype(union))
    # Column by column, each taken out of the frames once copied: the table and every vintage whole at once
    # (pd.concat) were twice the table at the stage's peak; frames of one block per column free as they go.
    if any(list(frame.columns) != list(frames[0].columns) for frame in frames):
        return pd.concat(frames, ignore_index=True)  # columns differ: pandas aligns them (not the case when reading)
    columns = {}
    for name in list(frames[0].columns):
        columns[name] = pd.concat([frame.pop(name) for frame in frames], ignore_index=True)
    return pd.DataFrame(columns, copy=False)


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


def _load_vintage(
    pair: FilePair, label: LabelConfig, on_bad_row: str, compact: bool, truth_files: tuple[Path, ...]
) -> tuple[pd.DataFrame, LabelReport, int]:
    """`load_pair`, joined to the truth files and compacted when asked (in the worker, so only the finished compact
    table travels back); also the number of loans the truth does not cover (warned about once, by the caller)."""
    frame, report = load_pair(pair, label, on_bad_row)
    uncovered = 0
    if truth_files:
        frame, uncovered = _join_truth(frame, *_truth_index(truth_files, frame["loan_id"].dtype))
    return (compact_loan_table(frame) if compact else frame), report, uncovered


@lru_cache(maxsize=1)
def _truth_index(paths: tuple[Path, ...], id_dtype) -> tuple[pd.Index, np.ndarray, pd.api.extensions.ExtensionArray]:
    """The truth files' loan ids (an index in the table's id dtype), `true_pd` and `corrupted`; read once per process
    for all the vintages it joins."""
    return _truth_columns(read_truth(list(paths)), id_dtype)


def _truth_columns(truth: pd.DataFrame, id_dtype) -> tuple[pd.Index, np.ndarray, pd.api.extensions.ExtensionArray]:
    """What `_join_truth` looks up: the truth's loan ids as an index in the table's id dtype, `true_pd`, `corrupted`."""
    return (
        pd.Index(truth["loan_id"].astype(id_dtype)),
        truth["true_pd"].to_numpy(),
        pd.array(truth["corrupted"], dtype="Int8"),
    )


def _check_unique_across(table: pd.DataFrame, vintages: list[str], ends: np.ndarray) -> None:
    """A loan in two vintages means the same data was given twice (a sample file beside the full one, say).
    ``vintages[k]``'s rows end at table row ``ends[k]``."""
    # Arrow hashes the ids in place; pandas' duplicated() made a Python string of each (~540 bytes a loan at peak).
    ids = pa.array(table["loan_id"])
    if pc.count_distinct(ids, mode="all").as_py() == len(ids):
        return
    duplicated = table["loan_id"].duplicated(keep=False).to_numpy()
    loan_id = table["loan_id"].to_numpy()[np.flatnonzero(duplicated)[0]]
    rows = np.flatnonzero((table["loan_id"] == loan_id).to_numpy())
    holders = [vintages[k] for k in np.unique(np.searchsorted(ends, rows, side="right"))]
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
    joined, uncovered = _join_truth(table, *_truth_columns(truth, table["loan_id"].dtype))
    if uncovered:
        warnings.warn(f"{uncovered:,} loans have no row in the truth file", FreddieDataWarning, stacklevel=3)
    return joined


def _join_truth(
    table: pd.DataFrame, ids: pd.Index, true_pd: np.ndarray, corrupted: pd.api.extensions.ExtensionArray
) -> tuple[pd.DataFrame, int]:
    """`join_truth` without the warning: the joined table and how many loans the truth does not cover."""
    at = ids.get_indexer(table["loan_id"])
    joined_pd = take(true_pd, at, allow_fill=True, fill_value=np.nan)
    joined_corrupted = take(corrupted, at, allow_fill=True)
    uncovered = int((at < 0).sum())
    joined = table.assign(
        true_pd=joined_pd, corrupted=joined_corrupted if uncovered else joined_corrupted.astype("int8")
    )
    return joined, uncovered
