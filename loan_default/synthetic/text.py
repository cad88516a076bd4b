"""Turn synthetic loans and histories into Freddie Mac's text: pipe-delimited, no header, field order of a layout.

Columns become Arrow arrays that print exactly as Freddie Mac writes them (decimals with a fixed scale for amounts and
rates, dictionary arrays for ids, statuses and zero-padded numbers, nulls for blanks), and pyarrow's CSV writer joins
them, so millions of performance rows never pass through a Python loop. Files are written under a temporary name and
renamed, so an interrupted run leaves no half-written file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from loan_default.common.months import yyyymm
from loan_default.freddie.schema import ORIGINATION_FIELDS, Kind, Layout
from loan_default.synthetic.loans import Loans
from loan_default.synthetic.paths import LIQUIDATIONS, Histories

_PIPES = pcsv.WriteOptions(include_header=False, delimiter="|", quoting_style="none")
_COMMAS = pcsv.WriteOptions(include_header=False, delimiter=",", quoting_style="none")
_PADDED = {"mi_pct": (3, "pad_mi"), "num_borrowers": (2, "pad_borrowers")}  # zero-padded in some rows ("000", "02")
_AGE_TEXT = pa.array([f"{a:03d}" for a in range(1000)] + [str(a) for a in range(1000)])


def decimal(units: np.ndarray, scale: int, valid: np.ndarray | None = None) -> pa.Array:
    """Integers counted in 10**-scale (cents for scale 2) as a decimal array that prints with exactly ``scale`` digits."""
    units = np.asarray(units, dtype=np.int64)
    words = np.empty((units.size, 2), dtype=np.int64)  # little-endian 128-bit: low word, then sign extension
    words[:, 0] = units
    words[:, 1] = units >> 63
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.decimal128(20, scale), units.size, [bitmap, pa.py_buffer(words)])


def coded(
    index: np.ndarray, dictionary: list[str] | np.ndarray | pa.Array, valid: np.ndarray | None = None
) -> pa.Array:
    """Row ``i`` prints ``dictionary[index[i]]`` (blank where not ``valid``)."""
    mask = None if valid is None else ~valid
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32), mask=mask), pa.array(dictionary))


def _dates(yyyymm_values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    return pa.array(yyyymm_values.astype(np.int64), mask=None if valid is None else ~valid)


def _number_text(values: np.ndarray, missing: str, width: int | None = None, pad: np.ndarray | None = None) -> pa.Array:
    """Whole numbers as text, NaN as the field's missing code, zero-padded to ``width`` where ``pad``."""
    known = ~np.isnan(values)
    ints = np.where(known, values, 0).astype(np.int64)
    text = ints.astype(str)
    if width is not None:
        text = np.where(pad & (ints >= 0), np.char.zfill(text, width), text)
    return pa.array(np.where(known, text, missing))


def origination_table(loans: Loans, layout: Layout) -> pa.Table:
    """The origination file's columns, in the layout's order."""
    f = loans.fields
    columns = {}
    for name in layout.columns:
        field = ORIGINATION_FIELDS[name]
        values = f[name]
        if name == "orig_rate":
            columns[name] = decimal(np.rint(values * 1000.0), 3)  # 4.375, and 43.750 for a unit slip
        elif name == "orig_upb":
            columns[name] = pa.array(values.astype(np.int64))  # whole dollars: 248000
        elif field.kind is Kind.DATE:
            columns[name] = _dates(values)
        elif field.kind is Kind.INT:
            width, pad = _PADDED.get(name, (None, None))
            missing = next(iter(field.missing), "")
            columns[name] = _number_text(values, missing, width, None if pad is None else getattr(loans, pad))
        else:
            columns[name] = pa.array(values.astype(str))
    return pa.table(columns)


def performance_table(loans: Loans, hist: Histories, layout: Layout) -> pa.Table:
    """The performance file's columns for these histories, in the layout's order."""
    n_rows, loan, f = len(hist), hist.loan, loans.fields
    code = hist.zero_balance_code
    liquidated = np.isin(code, LIQUIDATIONS)
    end = hist.end
    credit_end = end & liquidated[loan]
    modified_now, modified = hist.modification == 1, hist.modification > 0
    period = yyyymm(hist.period)

    def at_credit_end(name: str) -> pa.Array:
        return decimal(hist.losses[name][loan], 2, credit_end)

    net_sale = decimal(hist.losses["net_sale_proceeds"], 2).cast(pa.string()).to_numpy(zero_copy_only=False)
    net_sale = np.where(hist.net_sale_unknown, "U", net_sale)
    status_words = [f"{s:02d}" if layout.name == "perf35" else str(s) for s in range(int(hist.status.max()) + 1)]
    status_index = np.where(hist.status_kind == 0, hist.status, len(status_words) + hist.status_kind - 1)

    builders: dict[str, Callable[[], pa.Array]] = {
        "loan_id": lambda: coded(loan, f["loan_id"]),
        "period": lambda: _dates(period),
        "current_upb": lambda: decimal(hist.upb_cents, 2),
        "delinquency_status": lambda: coded(status_index, status_words + ["RA", "XX", ""]),
        "loan_age": lambda: coded(np.minimum(hist.age, 999) + np.where(loans.pad_age[loan], 0, 1000), _AGE_TEXT),
        "remaining_months": lambda: pa.array(f["orig_term"][loan].astype(np.int64) - hist.age),
        "defect_settlement_date": lambda: _dates(period, end & (code[loan] == "96")),
        "modification_flag": lambda: coded(hist.modification, ["", "Y", "P"]),
        "zero_balance_code": lambda: coded(loan, code, end),
        "zero_balance_date": lambda: _dates(period, end),
        "current_rate": lambda: decimal(np.rint(f["orig_rate"][loan] * 1000.0), 3),
        "non_interest_upb": lambda: decimal(np.zeros(n_rows, dtype=np.int64), 2),
        "mi_recoveries": lambda: at_credit_end("mi_recoveries"),
        "net_sale_proceeds": lambda: coded(loan, net_sale, credit_end),
        "non_mi_recoveries": lambda: at_credit_end("non_mi_recoveries"),
        "expenses": lambda: at_credit_end("expenses"),
        "legal_costs": lambda: at_credit_end("legal_costs"),
        "maintenance_costs": lambda: at_credit_end("maintenance_costs"),
        "taxes_insurance": lambda: at_credit_end("taxes_insurance"),
        "misc_expenses": lambda: at_credit_end("misc_expenses"),
        "actual_loss": lambda: decimal(hist.losses["actual_loss"][loan], 2, credit_end & ~hist.net_sale_unknown[loan]),
        "modification_cost": lambda: decimal(hist.modification_cost_cents[loan], 2, modified),
        "step_modification_flag": lambda: coded(np.zeros(n_rows), ["N"], modified_now),
        "eltv": lambda: pa.array(np.nan_to_num(hist.eltv).astype(np.int64), mask=np.isnan(hist.eltv)),
        "zero_balance_removal_upb": lambda: decimal(hist.removal_cents[loan], 2, end),
        "delinquent_accrued_interest": lambda: at_credit_end("delinquent_accrued_interest"),
        "borrower_assistance": lambda: coded(np.zeros(n_rows), ["T"], hist.trial),
        "current_month_modification_cost": lambda: decimal(hist.modification_cost_cents[loan], 2, modified_now),
        "interest_bearing_upb": lambda: decimal(hist.upb_cents, 2),
        "mi_cancellation": lambda: coded(loan, np.where(np.nan_to_num(f["mi_pct"]) > 0, "N", "7")),
        "servicer_name": lambda: coded(loan, f["servicer_name"]),
    }
    blank = pa.nulls(n_rows, pa.string())
    return pa.table({name: builders[name]() if name in builders else blank for name in layout.columns})


class AtomicWriter:
    """Append tables to ``path`` through a temporary file that replaces ``path`` only on ``commit``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._file = open(self.tmp, "wb")  # closed by commit() or abort()

    def write(self, table: pa.Table, delimiter: str = "|") -> None:
        """Append rows without a header, fields joined by ``delimiter`` ("|" for Freddie Mac files, "," for CSV)."""
        pcsv.write_csv(table, self._file, _PIPES if delimiter == "|" else _COMMAS)

    def write_text(self, text: str) -> None:
        self._file.write(text.encode())

    def commit(self) -> None:
        self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
