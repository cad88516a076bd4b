"""Batch scoring: `python -m loan_default.score <origination file or folder> --bundle <path> --out scores.csv`.

Every loan of a Freddie Mac origination file (or of every origination file under a folder, zips included) goes through
the code path of the REST API: the same request model validates it (`schemas.Loan`) and the same `Scorer` scores
it, in chunks, with a progress bar. Nothing is dropped silently: a line the file reader cannot convert, a duplicate
loan id, or a value outside the valid ranges lands in the rejects file with its file, line, loan id and reason.
Outputs are written to temporary files and renamed at the end, so an interrupted run leaves no half-written CSV.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from loan_default.common.progress import progress_bar
from loan_default.core.bundle import BundleError
from loan_default.core.loading import open_scorer, resolve_bundle
from loan_default.core.loan import FEATURE_FIELDS, LoanText, validate_loan
from loan_default.core.scorer import Scorer
from loan_default.freddie import reader
from loan_default.freddie.errors import FreddieFileError, FreddieFormatError, SkipLog
from loan_default.freddie.files import ORIGINATION, Source, classify

SCORE_COLUMNS = ("loan_id", "default_probability", "decision", "risk_band", "outlier_score", "is_outlier")
REJECT_COLUMNS = ("file", "line", "loan_id", "reason")
DEFAULT_CHUNK_ROWS = 20_000
_INPUT_COLUMNS = ["loan_id", *FEATURE_FIELDS]


@dataclass
class Summary:
    """What happened to each file: loans scored, rows rejected, files that could not be read at all."""

    scored: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    failed_files: list[str] = field(default_factory=list)


def origination_sources(path: Path) -> list[Source]:
    """The origination files to score: `path` itself, or every origination file under the folder `path`
    (plain or inside zip archives), in name order."""
    if path.is_file() and path.suffix.lower() != ".zip":
        return [Source(path)]
    if not path.exists():
        raise FreddieFileError(f"{path}: no such file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    sources = []
    for file in files:
        if file.suffix.lower() == ".zip":
            with zipfile.ZipFile(file) as archive:
                members = sorted(i.filename for i in archive.infolist() if not i.is_dir())
            sources += [Source(file, m) for m in members if (classify(m) or ("", ""))[1] == ORIGINATION]
        elif (classify(file.name) or ("", ""))[1] == ORIGINATION:
            sources.append(Source(file))
    if not sources:
        raise FreddieFileError(f"{path}: no origination files found (sample_orig_YYYY.txt, historical_data_YYYYQn.txt)")
    return sources


def validate(records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """(valid loans as records, reason per invalid position): the API's request model, row by row."""
    loans, reasons = [], {}
    for i, record in enumerate(records):
        try:
            loans.append(validate_loan(record))
        except ValidationError as err:
            reasons[i] = describe(err)
    return loans, reasons


def describe(err: ValidationError) -> str:
    """One line naming every bad field, e.g. ``dti: expected an integer from 0 to 65 ..., got 70``."""
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"])
        parts.append(e["msg"] if e["msg"].startswith(f"{where}:") else f"{where}: {e['msg']}")
    return "; ".join(parts)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Loan-table rows as dicts with None for missing (the API's representation)."""
    columns = frame[[c for c in _INPUT_COLUMNS if c in frame.columns]].astype(object)
    return columns.where(columns.notna(), None).to_dict("records")


def _scan_lines(source: Source, kept_lines: np.ndarray, skipped: SkipLog) -> list[tuple]:
    """Second pass over a file whose reader dropped rows: each dropped line with its reason (wrong field count,
    duplicate loan id, or the request model's complaint about its fields). `kept_lines[n]` is True for kept line n."""
    layout = reader.detect_layout(source, "origination", on_bad_row="skip")
    line_of: dict[str, int] = {}
    dropped = []
    with source.open() as stream:
        for number, raw in enumerate(io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=""), 1):
            text = raw.rstrip("\r\n")
            if not text.strip():
                continue  # an empty line holds no loan
            fields = text.split("|")
            if len(fields) != layout.n_fields:
                dropped.append((number, None, f"{len(fields)} fields, but this file's layout has {layout.n_fields}"))
                continue
            loan = {name: value.strip() or None for name, value in zip(layout.columns, fields, strict=True)}
            loan_id = loan["loan_id"]
            if number < len(kept_lines) and kept_lines[number]:
                line_of[loan_id] = number  # the occurrence the reader kept: later ones are its duplicates
            elif loan_id in line_of:
                dropped.append((number, loan_id, f"duplicate loan id (first on line {line_of[loan_id]})"))
            else:
                if loan_id is not None:
                    line_of[loan_id] = number
                dropped.append((number, loan_id, _line_reason(loan, skipped)))
    return dropped


def _line_reason(loan: dict[str, Any], skipped: SkipLog) -> str:
    if loan["loan_id"] is None:
        return "loan_id: blank, but every row needs one"
    try:
        LoanText.model_validate({k: v for k, v in loan.items() if k in LoanText.model_fields})
    except ValidationError as err:
        return describe(err)
    return "rejected by the file reader: " + "; ".join(f"{n} {r}" for r, n in sorted(skipped.counts.items()))


def score_source(scorer: Scorer, source: Source, scores: Any, rejects: Any, chunk_rows: int, summary: Summary) -> None:
    """Score one origination file, writing score rows and reject rows as it goes.

    The file is read, validated and scored `chunk_rows` loans at a time (`reader.iter_origination`), so memory stays
    flat however large the file; only the ids seen (for duplicates) and one bit per line (for rejects) grow with it.
    """
    skipped = SkipLog()
    kept_lines = np.zeros(0, dtype=bool)
    n_scored = n_rejected = 0
    bar = progress_bar(unit="loan", unit_scale=True, desc=Path(source.member or source.path).name)
    try:
        for chunk, lines in reader.iter_origination(source, on_bad_row="skip", skipped=skipped, chunk_rows=chunk_rows):
            if len(lines) and lines[-1] >= len(kept_lines):  # grow by doubling: amortised O(1) per line
                grown = np.zeros(max(2 * len(kept_lines), int(lines[-1]) + 1), dtype=bool)
                grown[: len(kept_lines)] = kept_lines
                kept_lines = grown
            kept_lines[lines] = True
            loans, reasons = validate(frame_records(chunk))
            for i, reason in reasons.items():
                rejects.writerow((source.name, int(lines[i]), chunk["loan_id"].iloc[i], reason))
            for record in scorer.predict(loans):
                scores.writerow([record[c] for c in SCORE_COLUMNS])
            n_scored += len(loans)
            n_rejected += len(reasons)
            bar.update(len(chunk))
    finally:
        bar.close()
    if skipped.counts:
        dropped = _scan_lines(source, kept_lines, skipped)
        for number, loan_id, reason in dropped:
            rejects.writerow((source.name, number, loan_id, reason))
        n_rejected += len(dropped)
    summary.scored[source.name] = n_scored
    summary.rejected[source.name] = n_rejected


def score_files(
    path: Path, bundle: Path | None, out: Path, rejects_path: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Summary:
    """Score every origination file at `path` into `out` (CSV), rejected rows into `rejects_path`."""
    scorer = open_scorer(resolve_bundle(bundle, Path("logs"), option="--bundle <path>"))
    sources = origination_sources(path)
    summary = Summary()
    with AtomicCsv(out, SCORE_COLUMNS) as scores, AtomicCsv(rejects_path, REJECT_COLUMNS) as rejects:
        for source in sources:
            try:
                score_source(scorer, source, scores, rejects, chunk_rows, summary)
            except (FreddieFormatError, FreddieFileError, OSError) as err:
                rejects.writerow((source.name, "", "", f"file not read: {err}"))
                summary.failed_files.append(source.name)
    return summary


class AtomicCsv:
    """A csv.writer on ``<path>.tmp``, renamed to `path` only when the block completes."""

    def __init__(self, path: Path, header: Sequence[str]) -> None:
        self.path, self.header = path, header
        self.tmp = path.with_name(path.name + ".tmp")

    def __enter__(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.tmp, "w", newline="", encoding="utf-8")
        writer = csv.writer(self.file)
        writer.writerow(self.header)
        return writer

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        self.file.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 if a file could not be read at all)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="an origination file, or a folder searched for them (zips too)")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: newest under logs/)")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"), help="scores CSV (default scores.csv)")
    parser.add_argument("--rejects", type=Path, default=None, help="rejected rows (default <out>.rejects.csv)")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="loans validated+scored at once")
    args = parser.parse_args(argv)
    rejects = args.rejects or args.out.with_name(args.out.stem + ".rejects.csv")
    try:
        summary = score_files(args.path, args.bundle, args.out, rejects, max(1, args.chunk_rows))
    except (BundleError, FreddieFileError) as err:
        print(f"score: {err}", file=sys.stderr)
        return 1
    for name in summary.scored:
        print(f"{name}: {summary.scored[name]:,} scored, {summary.rejected[name]:,} rejected")
    for name in summary.failed_files:
        print(f"{name}: not read (see {rejects})", file=sys.stderr)
    total, bad = sum(summary.scored.values()), sum(summary.rejected.values())
    print(f"{total:,} loans scored -> {args.out}; {bad:,} rows rejected -> {rejects}")
    return 1 if summary.failed_files else 0


if __name__ == "__main__":
    sys.exit(main())
