"""Build the Parquet loan table with the local engine (the same reader and labeller `load_loan_table` uses)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from loan_default.common.progress import progress
from loan_default.freddie.errors import FreddieFileError
from loan_default.freddie.files import FilePair, Source, find_file_pairs
from loan_default.freddie.labels import LabelConfig, LabelReport
from loan_default.freddie.loans import DEFAULT_LABEL, TRUTH_FILE, join_truth, load_pair, read_truth
from loan_default.prep.table import write_loan_table


def source_record(source: Source, role: str, vintage: str) -> dict:
    """One source file as the manifest records it: enough to tell later whether the raw data changed."""
    stat = os.stat(source.path)
    return {"vintage": vintage, "role": role, "path": source.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def sources_of(pairs: list[FilePair], truth: list[Path]) -> list[dict]:
    records = [
        source_record(s, role, pair.vintage_label)
        for pair in pairs
        for role, s in (("origination", pair.origination), ("performance", pair.performance))
    ]
    return records + [source_record(Source(path), "truth", "") for path in truth]


def prepare_local(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    label: LabelConfig = DEFAULT_LABEL,
    on_bad_row: str = "raise",
    overwrite: bool = False,
) -> Path:
    """Read, label and join every file pair under `folder` (and its truth.csv for synthetic data); write the table."""
    pairs = find_file_pairs(folder=folder)
    results = [(pair, *load_pair(pair, label, on_bad_row)) for pair in progress(pairs, desc="vintages", unit="vintage")]
    ids = pd.concat([frame["loan_id"] for _, frame, _ in results], ignore_index=True)
    twice = ids.duplicated(keep=False)
    if twice.any():  # the same loan in two vintages means the same data was given twice
        loan_id = ids[twice].iloc[0]
        holders = [pair.vintage_label for pair, frame, _ in results if (frame["loan_id"] == loan_id).any()]
        raise FreddieFileError(
            f"{int(twice.sum()):,} loans appear in more than one vintage (e.g. {loan_id!r} in {', '.join(holders)}); "
            "is the same data there twice?"
        )
    truth_files = sorted(Path(folder).rglob(TRUTH_FILE)) if Path(folder).is_dir() else []
    truth = read_truth(truth_files) if truth_files else None
    frames = [(pair.vintage_label, frame if truth is None else join_truth(frame, truth)) for pair, frame, _ in results]
    report = LabelReport.combine(r for _, _, r in results)
    return write_loan_table(
        out,
        frames,
        label=asdict(label),
        on_bad_row=on_bad_row,
        sources=sources_of(pairs, truth_files),
        report=report.to_dict(),
        overwrite=overwrite,
    )
