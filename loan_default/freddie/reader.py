"""Stream Freddie Mac origination and performance files with pyarrow, converting and checking every field.

The file is cut into chunks of whole lines (a few MiB), and a small thread pool parses each chunk with pyarrow's CSV
engine (only the columns asked for) and converts it with vectorised operations; the chunks are then settled in file
order. Memory stays flat: only a few chunks are in flight at a time. Parsing runs in parallel (pyarrow releases the
GIL) while line numbers stay exact: chunks hold whole lines and are numbered in order as they are settled.

Why not `pyarrow.csv.open_csv`: it gives line numbers only when it parses on one thread (with `use_threads=True` an
invalid row's number is None), so it cannot use a second core; and it reads up to 32 blocks ahead whatever
`use_threads` says (at 16 MiB blocks it buffered a 500 MiB file whole).

Within a chunk, pyarrow's row numbers are line numbers when it parses on one thread and keeps empty lines as rows, so
it does both; lines its invalid-row handler drops (wrong field count) are remembered so a kept row maps to its line.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from loan_default.common.progress import progress_bar
from loan_default.freddie import schema
from loan_default.freddie.errors import FreddieFormatError, SkipLog, check_policy
from loan_default.freddie.files import Source

DEFAULT_BLOCK_SIZE = 4 << 20  # bytes per chunk (~50k performance rows): each conversion call has a fixed cost
ORIGINATION_BLOCK_SIZE = 1 << 20  # ~7k origination rows: every column is read, so smaller chunks keep memory low
_MAX_WORKERS = 4  # threads parsing and converting chunks; more cores than this rarely help one file
PERFORMANCE_COLUMNS = ("loan_id", "period", "delinquency_status", "zero_balance_code", "zero_balance_date")
STATUS_UNKNOWN = -1  # delinquency status "XX" or blank: not known, and not current either
STATUS_REO = 1000  # "RA" (REO acquired): above any count of months, so "status >= n" includes it
PERFORMANCE_SCHEMA = pa.schema(
    [
        ("loan_id", pa.string()),
        ("period", pa.int32()),  # YYYYMM
        ("delinquency_status", pa.int16()),  # months delinquent, STATUS_REO or STATUS_UNKNOWN
        ("zero_balance_code", pa.string()),  # null until the loan terminates
        ("zero_balance_date", pa.int32()),  # YYYYMM, or null
    ]
)

# Reasons under which skipped rows are counted (keys of SkipLog.counts and of LabelReport.skipped_rows).
WRONG_FIELD_COUNT = "wrong field count"
TRUNCATED = "truncated last line"
EMPTY_LINE = "empty line"
NOT_A_NUMBER = "non-numeric value"
BAD_DATE = "bad date"
UNKNOWN_CODE = "unknown code"
BLANK_KEY = "blank required field"
DUPLICATE_ID = "duplicate loan id"

_PROGRESS_MIN_BYTES = 64 << 20
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$"
_STRING_DTYPE = pd.StringDtype("pyarrow")


@dataclass
class _Bad:
    """Rows of one column that failed conversion."""

    field: str
    mask: np.ndarray
    problem: str
    reason: str


# ---------------------------------------------------------------------------------------------------------------------
# Field converters: raw strings in; a typed arrow array (null = missing) and the bad rows, if any, out
# ---------------------------------------------------------------------------------------------------------------------
def _per_value(raw: pa.Array, convert: Callable[[str], tuple[object, bool]]) -> tuple[np.ndarray, list, np.ndarray]:
    """Run a plain-Python converter once per distinct raw value and spread the results by index.

    Dates, codes and statuses take few distinct values per block, so each rule is written once, readably, and
    costs one hash pass over the column. Mostly-blank columns (zero-balance fields) hash only their filled rows.
    Returns (row -> index into the converted values, converted values, ok per converted value).
    """
    filled = pc.not_equal(raw, "")
    n_filled = pc.sum(filled).as_py() or 0
    if n_filled < len(raw) // 4:
        rows = np.flatnonzero(filled.to_numpy(zero_copy_only=False))
        encoded = pc.dictionary_encode(raw.take(rows))
        index = np.full(len(raw), len(encoded.dictionary), dtype=np.int32)  # blank rows: the extra last slot
        index[rows] = encoded.indices.to_numpy()
    else:
        encoded = pc.dictionary_encode(raw)
        index = encoded.indices.to_numpy()
    results = [convert(value) for value in encoded.dictionary.to_pylist()] + [convert("")]
    ok = np.fromiter((good for _, good in results), dtype=bool, count=len(results))
    return index, [value for value, _ in results], ok


def _bad_rows(index: np.ndarray, ok: np.ndarray, f: schema.Field, problem: str, reason: str) -> _Bad | None:
    if ok.all():
        return None
    return _Bad(f.name, ~ok[index], problem, reason)


def _date(raw: pa.Array, f: schema.Field, required: bool = False) -> tuple[pa.Array, _Bad | None]:
    """DATE -> int32 YYYYMM: six digits with a month 01-12; blank -> null (bad when required)."""
    if required:  # fast path for the reporting period: one cast, checked with numpy
        try:
            values = pc.cast(raw, pa.int32())
        except pa.ArrowInvalid:
            values = None
        if values is not None and pc.all(pc.equal(pc.binary_length(raw), 6)).as_py():
            month = values.to_numpy() % 100
            if ((month >= 1) & (month <= 12)).all():
                return values, None

    def convert(value: str) -> tuple[int | None, bool]:
        s = value.strip()
        if not s:
            return None, not required
        if len(s) != 6 or not (s.isascii() and s.isdigit()):  # the files write dates as six ASCII digits
            return None, False
        try:
            return f.check(s), True  # the schema's date rule: a month 01-12
        except schema.FieldError:
            return None, False

    index, values, ok = _per_value(raw, convert)
    present = np.array([v is not None for v in values])[index]
    dates = np.array([v or 0 for v in values], np.int32)[index]
    bad = _bad_rows(index, ok, f, "blank or not a date YYYYMM (month 01-12)", BAD_DATE)
    return pa.array(dates, mask=~present), bad


def _code(raw: pa.Array, f: schema.Field) -> tuple[pa.Array, _Bad | None]:
    """CODE -> the schema's canonical code (`Field.code`: "1" reads as zero-balance code "01"); blank -> `blank_means`
    or null; sentinel codes -> null."""

    def convert(value: str) -> tuple[str | None, bool]:
        code = f.code(value)
        if code is None or code in f.missing:
            return None, True
        good = f.codes is None or code in f.allowed
        return (code if good else None), good

    index, values, ok = _per_value(raw, convert)
    listed = ", ".join(sorted(f.allowed))
    bad = _bad_rows(index, ok, f, f"unknown code (allowed: {listed}, or blank)", UNKNOWN_CODE)
    return pa.array(values, pa.string()).take(index), bad


def _status(raw: pa.Array, f: schema.Field) -> tuple[pa.Array, _Bad | None]:
    """Delinquency status -> int16: months delinquent, STATUS_REO for RA, STATUS_UNKNOWN for XX or blank."""

    def convert(value: str) -> tuple[int, bool]:
        s = value.strip()
        if s in ("", "XX"):
            return STATUS_UNKNOWN, True
        if s == "RA":
            return STATUS_REO, True
        good = s.isascii() and s.isdigit() and len(s) <= 3
        return (int(s) if good else STATUS_UNKNOWN), good

    index, values, ok = _per_value(raw, convert)
    bad = _bad_rows(index, ok, f, "not a delinquency status (0-999, RA, XX or blank)", UNKNOWN_CODE)
    return pa.array(np.asarray(values, np.int16)[index]), bad


def _number(raw: pa.Array, f: schema.Field) -> tuple[pa.Array, _Bad | None]:
    """INT and FLOAT -> float64, zero padding or not; blank and sentinel codes -> null.

    Numbers can have many distinct values, so these use arrow kernels: a fast cast, and a regular expression only
    when the cast fails, to find the rows at fault.
    """
    s = pc.ascii_trim_whitespace(raw)
    missing = pc.equal(s, "")
    if f.missing:
        missing = pc.or_(missing, pc.is_in(s, value_set=pa.array(sorted(f.missing))))
    s = _null_where(missing, s)
    try:
        values = pc.cast(s, pa.float64())
        bad = pc.invert(pc.is_finite(values))  # "nan" and "inf" parse as floats but are not Freddie numbers
    except pa.ArrowInvalid:
        ok = pc.match_substring_regex(s, _NUMBER)
        values = pc.cast(_null_where(pc.invert(ok), s), pa.float64())
        bad = pc.invert(ok)
    if f.kind is schema.Kind.INT:
        bad = pc.or_kleene(bad, pc.not_equal(values, pc.floor(values)))  # true or null (a bad value) is true
    mask = pc.fill_null(bad, False).to_numpy(zero_copy_only=False)
    if not mask.any():
        return values, None
    problem = "not an integer" if f.kind is schema.Kind.INT else "not a number"
    return _null_where(pa.array(mask), values), _Bad(f.name, mask, problem, NOT_A_NUMBER)


def _null_where(mask: pa.Array, values: pa.Array) -> pa.Array:
    return pc.if_else(mask, pa.scalar(None, values.type), values)


def _text(raw: pa.Array, f: schema.Field, required: bool = False) -> tuple[pa.Array, _Bad | None]:
    """TEXT -> string, blank -> null (bad when required, as for the loan id)."""
    s = pc.ascii_trim_whitespace(raw)
    blank = pc.equal(s, "")
    if not pc.any(blank).as_py():
        return s, None
    values = _null_where(blank, s)
    if not required:
        return values, None
    return values, _Bad(f.name, blank.to_numpy(zero_copy_only=False), "blank, but every row needs one", BLANK_KEY)


def _convert(raw: pa.Array, f: schema.Field, required: bool = False) -> tuple[pa.Array, _Bad | None]:
    if f.name == "delinquency_status":
        return _status(raw, f)
    if f.kind in (schema.Kind.INT, schema.Kind.FLOAT):
        return _number(raw, f)
    if f.kind is schema.Kind.DATE:
        return _date(raw, f, required)
    if f.kind is schema.Kind.CODE:
        return _code(raw, f)
    return _text(raw, f, required)


# ---------------------------------------------------------------------------------------------------------------------
# Layout detection
# ---------------------------------------------------------------------------------------------------------------------
def _first_lines(source: Source, limit: int) -> list[str]:
    """Up to `limit` lines from the top of the file, without line endings."""
    lines: list[str] = []
    with source.open() as stream:
        while len(lines) < limit:
            line = stream.readline(1 << 20)
            if not line:
                break
            lines.append(line.decode("latin-1").rstrip("\r\n"))
    return lines


def detect_layout(source: Source, file: str, on_bad_row: str = "raise") -> schema.Layout:
    """The layout of an "origination" or "performance" `file`, from its first line's field count.

    Under `on_bad_row="skip"` a first line that fits no layout is skipped (and later counted): the next lines are tried.
    """
    detect = schema.detect_origination_layout if file == "origination" else schema.detect_performance_layout
    lines = _first_lines(source, 1 if on_bad_row == "raise" else 1000)
    if not lines:
        raise FreddieFormatError(source.name, None, None, None, f"the {file} file is empty")
    first_error = None
    for line in lines:
        try:
            return detect(line.split("|"))
        except schema.LayoutError as err:
            first_error = first_error or err
    assert first_error is not None
    raise FreddieFormatError(source.name, 1, None, lines[0], str(first_error).removeprefix(": ")) from first_error


# ---------------------------------------------------------------------------------------------------------------------
# Streaming one file: whole-line chunks, parsed and converted on worker threads, settled in file order
# ---------------------------------------------------------------------------------------------------------------------
def _chunks(stream: BinaryIO, size: int, seekable: bool) -> Iterator[memoryview]:
    """Cut a stream into chunks of about `size` bytes that end at a line end.

    The partial line at the end of a read is read again with the next chunk (seeking back: no copy), or, on a stream
    that cannot seek cheaply (a zip member), carried over and joined to it.
    """
    rest = b""
    while True:
        data = stream.read(size)
        if not data:
            if rest:  # a last line without a line end
                yield memoryview(rest)
            return
        if rest:
            data, rest = rest + data, b""
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # no line end yet: a line longer than the chunk, or the last line
            rest = data
            continue
        if cut < len(data):
            if seekable:
                stream.seek(cut - len(data), io.SEEK_CUR)
            else:
                rest = data[cut:]
        yield memoryview(data)[:cut]


@dataclass
class _Parsed:
    """One chunk after parsing and conversion (on a worker thread); nothing decided yet about bad rows.

    Its lines are numbered when it is settled, in file order: they follow the previous chunk's, and pyarrow's rows plus
    the lines its invalid-row handler dropped are all the chunk's lines (empty lines are rows), so nothing is counted
    twice.
    """

    data: memoryview
    raw: pa.Table | None = None  # kept only when there are bad values, to quote them
    values: dict[str, pa.Array] | None = None
    bads: list[_Bad] | None = None
    empty: np.ndarray | None = None
    dropped: list[tuple[int, int, str]] | None = None  # (line in chunk, fields, text) of wrong-field-count lines
    error: pa.ArrowInvalid | None = None
    first_line: int = 0  # set when settled

    @property
    def n_lines(self) -> int:
        if self.values is None:  # unparsed: count (error path only)
            return bytes(self.data).count(b"\n") + (not bytes(self.data).endswith(b"\n"))
        return len(next(iter(self.values.values()))) + len(self.dropped or ())

    def lines(self, rows: np.ndarray) -> np.ndarray:
        """File line numbers of rows (0-based, among the rows the parser kept)."""
        dropped = np.array([line for line, _, _ in self.dropped or []], dtype=np.int64)
        kept_before = dropped - np.arange(len(dropped)) - 1  # kept rows that precede each dropped line
        return self.first_line + rows + np.searchsorted(kept_before, rows, side="right")


def _parse(data: memoryview, layout: schema.Layout, fields: list[schema.Field], required: set[str]) -> _Parsed:
    """Parse and convert one chunk. Runs on a worker thread: pyarrow releases the GIL while it works."""
    dropped: list[tuple[int, int, str]] = []

    def on_invalid(row: pv.InvalidRow) -> str:
        dropped.append((row.number, row.actual_columns, row.text[:200]))  # numbered within the chunk, from 1
        return "skip"

    columns = [f.name for f in fields]
    try:
        raw = pv.read_csv(
            pa.py_buffer(data),
            # One thread and empty lines kept as rows: then pyarrow's row numbers are line numbers.
            read_options=pv.ReadOptions(column_names=list(layout.columns), use_threads=False, block_size=len(data)),
            parse_options=pv.ParseOptions(
                delimiter="|", quote_char=False, ignore_empty_lines=False, invalid_row_handler=on_invalid
            ),
            convert_options=pv.ConvertOptions(
                include_columns=columns, column_types={c: pa.string() for c in columns}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as err:
        return _Parsed(data, error=err)
    values: dict[str, pa.Array] = {}
    bads: list[_Bad] = []
    for f in fields:
        values[f.name], bad = _convert(raw.column(f.name).combine_chunks(), f, required=f.name in required)
        if bad is not None:
            bads.append(bad)
    empty = _empty_rows(raw)
    return _Parsed(data, raw if bads else None, values, bads, empty, dropped)


def _empty_rows(raw: pa.Table) -> np.ndarray | None:
    """Rows whose every column read is blank: empty lines, which are skipped (and counted) under either policy."""
    blank = pc.equal(raw.column("loan_id"), "")
    if not pc.any(blank).as_py():  # the loan id is never blank in a good row: one cheap test covers most chunks
        return None
    for column in raw.columns:
        blank = pc.and_(blank, pc.equal(column, ""))
    mask = blank.to_numpy()
    return mask if mask.any() else None


class _FileScan:
    """Streams one file: chunks are parsed and converted on a small thread pool, then settled in file order.

    Settling raises the file's first problem (under `on_bad_row="raise"`) or drops and counts bad rows.
    """

    def __init__(self, source: Source, layout: schema.Layout, on_bad_row: str, skipped: SkipLog):
        self.source, self.layout, self.on_bad_row, self.skipped = source, layout, on_bad_row, skipped
        self._next_line = 1  # the first line of the next chunk to settle

    def batches(
        self, fields: list[schema.Field], required: set[str], block_size: int
    ) -> Iterator[tuple[dict[str, pa.Array], np.ndarray]]:
        """(name -> typed array, line numbers) for the good rows of each chunk, in file order."""
        workers = max(1, min(_MAX_WORKERS, os.cpu_count() or 1))
        size = self.source.size()
        bar = None
        if size >= _PROGRESS_MIN_BYTES:
            bar = progress_bar(total=size, unit="B", unit_scale=True, desc=self.source.name)
        with self.source.open() as stream, ThreadPoolExecutor(workers, thread_name_prefix="freddie-csv") as pool:
            pending: deque[Future[_Parsed]] = deque()
            chunks = _chunks(stream, block_size, seekable=self.source.member is None)
            parsed = None  # the latest chunk, settled once we know whether another follows
            try:
                while True:
                    while len(pending) <= workers and (chunk := next(chunks, None)) is not None:
                        pending.append(pool.submit(_parse, chunk, self.layout, fields, required))
                    if not pending:
                        break
                    following = pending.popleft().result()
                    if parsed is not None:
                        yield from self._settle(parsed, last=False)
                    parsed = following
                    if bar is not None:
                        bar.update(len(parsed.data))
                if parsed is not None:
                    yield from self._settle(parsed, last=True)
            finally:
                for future in pending:
                    future.cancel()
                if bar is not None:
                    bar.close()

    def _settle(self, parsed: _Parsed, last: bool) -> Iterator[tuple[dict[str, pa.Array], np.ndarray]]:
        """Raise for, or count and drop, the bad rows of one chunk; yield its good rows."""
        parsed.first_line = self._next_line
        self._next_line += parsed.n_lines
        if parsed.error is not None:
            raise self._unreadable(parsed)
        assert parsed.values is not None and parsed.bads is not None and parsed.dropped is not None
        n_rows = len(next(iter(parsed.values.values())))
        skip = np.zeros(n_rows, dtype=bool) if parsed.empty is None else parsed.empty.copy()
        bads = parsed.bads
        if parsed.empty is not None:  # an empty line is blank everywhere: count it once, as an empty line
            first_empty = int(parsed.lines(np.array([np.argmax(parsed.empty)]))[0])
            self.skipped.add(EMPTY_LINE, int(parsed.empty.sum()), f"{self.source.name}, line {first_empty}")
            for bad in bads:
                bad.mask = bad.mask & ~parsed.empty
            bads = [bad for bad in bads if bad.mask.any()]
        masks = np.column_stack([bad.mask for bad in bads]) if bads else np.zeros((n_rows, 1), dtype=bool)
        any_bad = masks.any(axis=1)
        owner = masks.argmax(axis=1)  # a row with several bad fields is counted once, under its first one
        if self.on_bad_row == "raise":
            self._raise_first(parsed, bads, any_bad, owner, last)
        else:
            self._count(parsed, bads, any_bad, owner, last)
        skip |= any_bad
        values = parsed.values
        if skip.any():
            keep = pa.array(~skip)
            values = {name: array.filter(keep) for name, array in values.items()}
        rows = np.flatnonzero(~skip)
        if len(rows):
            yield values, parsed.lines(rows)

    def _raise_first(self, parsed: _Parsed, bads: list[_Bad], any_bad: np.ndarray, owner: np.ndarray, last: bool):
        """Raise for the chunk's first problem in file order: a bad value, or a line with the wrong field count."""
        bad_line = dropped_line = None
        if any_bad.any():
            row = int(np.flatnonzero(any_bad)[0])
            bad_line = int(parsed.lines(np.array([row]))[0])
        if parsed.dropped:
            dropped_line = parsed.first_line - 1 + parsed.dropped[0][0]
        if dropped_line is not None and (bad_line is None or dropped_line < bad_line):
            local, fields, text = parsed.dropped[0]  # type: ignore[index]
            truncated = last and local == parsed.n_lines and fields < self.layout.n_fields
            raise self._field_count_error(dropped_line, fields, text, truncated)
        if bad_line is not None:
            bad = bads[owner[row]]
            value = parsed.raw.column(bad.field)[row].as_py()  # type: ignore[union-attr]
            raise FreddieFormatError(self.source.name, bad_line, bad.field, value, bad.problem)

    def _count(self, parsed: _Parsed, bads: list[_Bad], any_bad: np.ndarray, owner: np.ndarray, last: bool) -> None:
        for k, bad in enumerate(bads):
            rows = np.flatnonzero(any_bad & (owner == k))
            if len(rows):
                where = f"{self.source.name}, line {int(parsed.lines(rows[:1])[0])}, field {bad.field!r}"
                self.skipped.add(bad.reason, len(rows), where)
        for local, fields, _ in parsed.dropped or []:
            truncated = last and local == parsed.n_lines and fields < self.layout.n_fields
            where = f"{self.source.name}, line {parsed.first_line - 1 + local}"
            self.skipped.add(TRUNCATED if truncated else WRONG_FIELD_COUNT, 1, where)

    def _field_count_error(self, line: int, fields: int, text: str, truncated: bool) -> FreddieFormatError:
        n = self.layout.n_fields
        if truncated:
            problem = f"the last line has {fields} of {n} fields: the file looks truncated"
        else:
            problem = f"{fields} fields, but this file's layout ({self.layout.name}) has {n}"
        field = self.layout.columns[fields] if fields < n else None
        if field is not None:
            problem += f"; {field!r} and the fields after it are missing"
        return FreddieFormatError(self.source.name, line, field, text, problem)

    def _unreadable(self, parsed: _Parsed) -> FreddieFormatError:
        """A chunk pyarrow could not parse. Text that is not UTF-8 is looked for line by line to name line and field."""
        lines = bytes(parsed.data).split(b"\n")
        for number, line in enumerate(lines, start=parsed.first_line):
            for column, value in zip(self.layout.columns, line.rstrip(b"\r").split(b"|"), strict=False):
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    shown = value.decode("latin-1")
                    return FreddieFormatError(self.source.name, number, column, shown, "not UTF-8 text")
        problem = f"unreadable in lines {parsed.first_line}-{parsed.first_line + parsed.n_lines - 1}"
        return FreddieFormatError(self.source.name, None, None, None, f"{problem}: {parsed.error}")


def _as_source(source: Source | str | os.PathLike) -> Source:
    return source if isinstance(source, Source) else Source(Path(source))


# ---------------------------------------------------------------------------------------------------------------------
# Public readers
# ---------------------------------------------------------------------------------------------------------------------
def read_origination(
    source: Source | str | os.PathLike,
    *,
    on_bad_row: str = "raise",
    skipped: SkipLog | None = None,
    block_size: int = ORIGINATION_BLOCK_SIZE,
) -> pd.DataFrame:
    """One row per loan, with every field of `schema.ORIGINATION_FIELDS` (the loan-table contract).

    Numbers and dates are float64 (dates as YYYYMM) with NaN for blanks and sentinel codes; codes and text are
    strings with <NA> for missing; flags whose blank means "N" hold "N". Fields the file's layout lacks are all missing.
    Out-of-range values (a credit score of 7580) are kept: later stages clean them.
    Bad rows raise `FreddieFormatError` or, under `on_bad_row="skip"`, are dropped and counted in `skipped` (a warning
    when no `skipped` is given). A duplicate loan id is a bad row; skipping keeps its first occurrence.
    """
    check_policy(on_bad_row)
    source = _as_source(source)
    log = SkipLog() if skipped is None else skipped
    layout = detect_layout(source, "origination", on_bad_row)
    scan = _FileScan(source, layout, on_bad_row, log)
    fields = [layout.fields[c] for c in layout.columns]
    tables, lines = [], []
    for values, line_numbers in scan.batches(fields, {"loan_id"}, block_size):
        tables.append(pa.table(values))
        lines.append(line_numbers)
    if not tables:
        raise FreddieFormatError(source.name, None, None, None, "no loan could be read from the origination file")
    frame = _drop_duplicates(_origination_frame(pa.concat_tables(tables)), np.concatenate(lines), scan)
    if skipped is None:
        log.warn(source.name)
    return frame


def iter_origination(
    source: Source | str | os.PathLike,
    *,
    on_bad_row: str = "raise",
    skipped: SkipLog | None = None,
    chunk_rows: int = 20_000,
    block_size: int = ORIGINATION_BLOCK_SIZE,
) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """`read_origination` in pieces: (frame of about `chunk_rows` loans, their file line numbers), in file order, so
    a file of any size is read in flat memory. Same columns, dtypes, checks and policy; a duplicate loan id is found
    across the whole file (the ids seen so far are kept: ~100 bytes a loan, the one thing that grows with the file).
    """
    check_policy(on_bad_row)
    source = _as_source(source)
    log = SkipLog() if skipped is None else skipped
    layout = detect_layout(source, "origination", on_bad_row)
    scan = _FileScan(source, layout, on_bad_row, log)
    fields = [layout.fields[c] for c in layout.columns]
    first_line: dict[str, int] = {}
    rest, rest_lines = pa.table({}), np.zeros(0, dtype=np.int64)  # parsed rows not yet handed out
    any_rows = 0
    for values, line_numbers in scan.batches(fields, {"loan_id"}, block_size):
        block = pa.table(values)
        rest = block if rest.num_columns == 0 else pa.concat_tables([rest, block])  # zero-copy: chunks are kept
        rest_lines = np.concatenate([rest_lines, line_numbers])
        while rest.num_rows >= chunk_rows:
            head, at = rest.slice(0, chunk_rows), rest_lines[:chunk_rows]
            rest, rest_lines = rest.slice(chunk_rows), rest_lines[chunk_rows:]
            frame, at = _drop_seen(_origination_frame(head), at, scan, first_line)
            any_rows += len(frame)
            yield frame, at
    if rest.num_rows:
        frame, at = _drop_seen(_origination_frame(rest), rest_lines, scan, first_line)
        any_rows += len(frame)
        yield frame, at
    if not any_rows:
        raise FreddieFormatError(source.name, None, None, None, "no loan could be read from the origination file")
    if skipped is None:
        log.warn(source.name)


def _drop_seen(
    frame: pd.DataFrame, lines: np.ndarray, scan: _FileScan, first_line: dict[str, int]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose loan id came earlier (in this chunk or an earlier one) are bad rows; `first_line` learns the rest."""
    ids = frame["loan_id"].to_numpy(dtype=object)
    duplicated = frame["loan_id"].duplicated(keep="first").to_numpy() | np.fromiter(
        (i in first_line for i in ids), dtype=bool, count=len(ids)
    )
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        loan_id, line = ids[row], int(lines[row])
        first_seen = first_line.get(loan_id) or int(lines[np.flatnonzero(ids == loan_id)[0]])
        if scan.on_bad_row == "raise":
            raise FreddieFormatError(
                scan.source.name, line, "loan_id", loan_id, f"duplicate loan id (first on line {first_seen})"
            )
        scan.skipped.add(DUPLICATE_ID, int(duplicated.sum()), f"{scan.source.name}, line {line}, field 'loan_id'")
        frame, lines, ids = frame.loc[~duplicated].reset_index(drop=True), lines[~duplicated], ids[~duplicated]
    first_line.update(zip(ids.tolist(), lines.tolist(), strict=True))
    return frame, lines


def _origination_frame(table: pa.Table) -> pd.DataFrame:
    columns: dict[str, pd.Series] = {}
    n = table.num_rows
    for name, f in schema.ORIGINATION_FIELDS.items():
        numeric = f.kind in (schema.Kind.INT, schema.Kind.FLOAT, schema.Kind.DATE)
        if name not in table.column_names:
            columns[name] = pd.Series(np.full(n, np.nan)) if numeric else pd.Series([None] * n, dtype=_STRING_DTYPE)
        elif numeric:
            columns[name] = pd.Series(table[name].cast(pa.float64()).to_numpy())
        else:
            columns[name] = pd.Series(pd.arrays.ArrowStringArray(table[name]), dtype=_STRING_DTYPE)
    return pd.DataFrame(columns)


def _drop_duplicates(frame: pd.DataFrame, lines: np.ndarray, scan: _FileScan) -> pd.DataFrame:
    duplicated = frame["loan_id"].duplicated(keep="first").to_numpy()
    if not duplicated.any():
        return frame
    at = np.flatnonzero(duplicated)
    loan_id = frame["loan_id"].iloc[at[0]]
    line = int(lines[at[0]])
    if scan.on_bad_row == "raise":
        first_seen = int(lines[np.flatnonzero((frame["loan_id"] == loan_id).to_numpy())[0]])
        raise FreddieFormatError(
            scan.source.name, line, "loan_id", loan_id, f"duplicate loan id (first on line {first_seen})"
        )
    scan.skipped.add(DUPLICATE_ID, len(at), f"{scan.source.name}, line {line}, field 'loan_id'")
    return frame.loc[~duplicated].reset_index(drop=True)


def read_performance(
    source: Source | str | os.PathLike,
    *,
    on_bad_row: str = "raise",
    skipped: SkipLog | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    loan_age: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Batches (`PERFORMANCE_SCHEMA`, plus a float64 `loan_age` when asked) of the columns the labeller needs,
    in file order, one per `block_size` bytes of the file.

    Bad rows raise `FreddieFormatError` or, under `on_bad_row="skip"`, are dropped and counted in `skipped` (a warning
    at the end when no `skipped` is given).
    """
    check_policy(on_bad_row)
    source = _as_source(source)
    log = SkipLog() if skipped is None else skipped
    layout = detect_layout(source, "performance", on_bad_row)
    scan = _FileScan(source, layout, on_bad_row, log)
    columns = list(PERFORMANCE_COLUMNS) + (["loan_age"] if loan_age else [])
    out_schema = PERFORMANCE_SCHEMA.append(pa.field("loan_age", pa.float64())) if loan_age else PERFORMANCE_SCHEMA
    for values, _ in scan.batches([layout.fields[c] for c in columns], {"loan_id", "period"}, block_size):
        yield pa.RecordBatch.from_pydict(values, schema=out_schema)
    if skipped is None:
        log.warn(source.name)
