"""The loan table as a reusable dataset: Parquet files partitioned by source vintage plus a JSON manifest.

Layout of a table folder (the local engine and the Spark job write the same):

    manifest.json                       label settings, source files, columns with their pandas dtypes, partitions
    source_vintage=2004/part-0.parquet  one file pair's loans (hive-style name, so Spark and pyarrow see a partition)
    source_vintage=2005/...

Every column of the loan table is inside the files (`vintage`, the origination quarter, included): the folder name
only groups them. Rows are ordered by source vintage (in the manifest's order), then loan id: the order the local
engine gives for Freddie Mac's files, whose loans are listed by sequence number.

Reading goes through fsspec, so a local folder, a mounted Azure ML data asset or an `abfss://` URI (with adlfs
installed) all work. Writing is local (an Azure ML job writes to its mounted output): into a temporary sibling folder
that is renamed into place when complete, so readers never see half a table.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loan_default.common.atomic import make_tree_readable, replace_folder

MANIFEST = "manifest.json"
FORMAT = "loan-default-table"
VERSION = 1
PARTITION_KEY = "source_vintage"
SORT_KEY = "loan_id"
_STRING = pd.StringDtype("pyarrow")


class TableError(ValueError):
    """A table folder that is missing, incomplete or of another format: the message names the path."""


@dataclass
class Partition:
    vintage: str  # the file pair's vintage label ("2004", "2019Q1")
    files: list[str]  # relative to the table folder, in read order
    rows: int


def dtype_name(dtype: Any) -> str:
    """A dtype as a string pandas reads back exactly (`string[pyarrow]`, not the ambiguous `string`)."""
    return f"string[{dtype.storage}]" if isinstance(dtype, pd.StringDtype) else str(dtype)


def manifest_dict(
    *,
    engine: str,
    label: Mapping[str, Any],
    on_bad_row: str,
    sources: Iterable[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    partitions: Sequence[Partition],
    report: Mapping[str, Any],
) -> dict[str, Any]:
    """The manifest: what the table was built from and how, and what it holds."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "engine": engine,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "label": dict(label),
        "on_bad_row": on_bad_row,
        "sources": list(sources),
        "rows": sum(p.rows for p in partitions),
        "columns": [list(c) for c in columns],
        "partition_key": PARTITION_KEY,
        "sort_key": SORT_KEY,
        "partitions": [asdict(p) for p in partitions],
        "report": dict(report),
    }


def write_loan_table(
    out: str | os.PathLike,
    frames: Sequence[tuple[str, pd.DataFrame]],
    *,
    label: Mapping[str, Any],
    on_bad_row: str,
    sources: Iterable[Mapping[str, Any]],
    report: Mapping[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write `(source vintage, loans)` frames as a table folder at `out`; returns `out`.

    Each frame is sorted by loan id and written as one file. The folder appears complete or not at all; with
    `overwrite` an existing table is replaced only once the new one is complete.
    """
    if not frames:
        raise TableError(f"{out}: no loans to write")
    columns = [(name, dtype_name(dtype)) for name, dtype in frames[0][1].dtypes.items()]
    partitions = []

    def write(tmp: Path) -> dict[str, Any]:
        for vintage, frame in frames:
            if [(n, dtype_name(d)) for n, d in frame.dtypes.items()] != columns:
                raise TableError(f"{out}: vintage {vintage} has other columns or dtypes than {frames[0][0]}")
            relative = f"{PARTITION_KEY}={vintage}/part-0.parquet"
            (tmp / relative).parent.mkdir(parents=True)
            ordered = frame.sort_values(SORT_KEY, kind="stable", ignore_index=True)
            pq.write_table(pa.Table.from_pandas(ordered, preserve_index=False), tmp / relative)
            partitions.append(Partition(vintage, [relative], len(frame)))
        return manifest_dict(engine="local", label=label, on_bad_row=on_bad_row, sources=sources,
                             columns=columns, partitions=partitions, report=report)  # fmt: skip

    return publish(out, write, overwrite=overwrite)


def publish(out: str | os.PathLike, fill, *, overwrite: bool = False) -> Path:
    """Run `fill(tmp_folder) -> manifest` in a temporary sibling of `out`, write the manifest last, then rename the
    folder into place (replacing an old table only after the new one is complete)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise TableError(f"{out} exists: choose another folder or replace it with --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = fill(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        make_tree_readable(tmp)  # a training job or a teammate reads it as another user
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the half-written table, or the replaced one
    return out


def read_manifest(path: str) -> dict[str, Any]:
    """The manifest of the table at `path` (a folder or URI)."""
    fs, root = _filesystem(path)
    where = f"{root.rstrip('/')}/{MANIFEST}"
    if not fs.exists(where):
        raise TableError(f"{path}: no {MANIFEST}: not a loan table written by python -m loan_default.prep")
    with fs.open(where, "r") as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise TableError(f"{path}: {MANIFEST} is not a {FORMAT} version {VERSION} manifest")
    return manifest


def read_loan_table(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(loan table, manifest) from a table folder or URI: the manifest's columns, dtypes and row order."""
    path = os.fspath(path)
    manifest = read_manifest(path)
    fs, root = _filesystem(path)
    names = [name for name, _ in manifest["columns"]]
    pieces = []
    for partition in manifest["partitions"]:
        for relative in partition["files"]:
            where = f"{root.rstrip('/')}/{relative}"
            try:
                pieces.append(pq.read_table(where, filesystem=fs, columns=names, partitioning=None))
            except (FileNotFoundError, pa.ArrowInvalid, KeyError) as error:
                raise TableError(f"{path}: cannot read {relative}: {error}") from error
    table = pa.concat_tables(pieces, promote_options="permissive") if len(pieces) > 1 else pieces[0]
    if table.num_rows != manifest["rows"]:
        raise TableError(f"{path}: {table.num_rows:,} rows, but {MANIFEST} says {manifest['rows']:,}")
    frame = table.to_pandas(types_mapper=lambda t: _STRING if t in (pa.string(), pa.large_string()) else None)
    return frame.astype(dict(manifest["columns"]), copy=False), manifest


def _filesystem(path: str):
    """(fsspec filesystem, path inside it); a clear message when the URI's filesystem package is missing."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as error:
        raise TableError(f"{path}: {error} (abfss:// and az:// URIs need `pip install adlfs`)") from error
