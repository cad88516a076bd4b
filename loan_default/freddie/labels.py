"""The outcome label: did a loan default within the horizon? Built from performance batches, one row per loan.

Per-loan statistics are mergeable (earliest default-event month, latest month with a known status, row count, and the
rare zero-balance rows), so batches may arrive in any order and a loan's rows may straddle batches or files. Ages
come from dates: age = months from the first payment date to the reporting period + 1 (first payment month = age 1).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loan_default.common.months import month_number
from loan_default.freddie import schema
from loan_default.freddie.errors import FreddieDataWarning
from loan_default.freddie.reader import STATUS_UNKNOWN

_NEVER = np.iinfo(np.int32).max  # month index for "no such event" (so min() ignores it)
_NOT_SEEN = np.iinfo(np.int32).min  # month index for "no known status" (so max() ignores it)
_STRING_DTYPE = pd.StringDtype("pyarrow")

# Reasons a loan leaves the table (keys of LabelReport.dropped) and the row count for orphan performance loans.
CENSORED = "censored"
NO_PERFORMANCE = "no performance rows"
NO_FIRST_PAYMENT = "no first payment date"
ORPHAN_LOANS = "orphan performance loans"
ORPHAN_ROWS = "orphan performance row"


@dataclass(frozen=True)
class LabelConfig:
    """The label definition (Hydra: `data.label`).

    `default` = 1 if, within `horizon_months` of the first payment (None: the whole history), the delinquency status
    reaches `min_dpd_months` or is RA, or the loan ends with a zero-balance code in `credit_event_codes`.
    A loan still active when the data ends, whose last known status is younger than the horizon, is censored: dropped
    unless `keep_censored` (then labelled 0 with `censored=True`).
    """

    horizon_months: int | None = 24
    min_dpd_months: int = 3
    credit_event_codes: tuple[str, ...] = ("02", "03", "09", "15")
    keep_censored: bool = False

    def __post_init__(self) -> None:
        # YAML reads an unquoted 02 as the integer 2, and Hydra hands over lists: normalise to two-digit strings.
        codes = tuple(str(code).zfill(2) for code in self.credit_event_codes)
        unknown = sorted(set(codes) - set(schema.ZERO_BALANCE_CODES))
        if unknown:
            raise ValueError(f"credit_event_codes {unknown} are not zero-balance codes {schema.ZERO_BALANCE_CODES}")
        if self.horizon_months is not None and self.horizon_months < 1:
            raise ValueError(f"horizon_months must be >= 1 or None, not {self.horizon_months}")
        if self.min_dpd_months < 1:
            raise ValueError(f"min_dpd_months must be >= 1, not {self.min_dpd_months}")
        object.__setattr__(self, "credit_event_codes", codes)


@dataclass
class LabelReport:
    """What happened to every loan and row: read, labelled, dropped (per reason) and skipped (per reason)."""

    vintages: list[str] = field(default_factory=list)
    loans_read: int = 0
    performance_rows: int = 0
    labelled: int = 0
    defaults: int = 0
    censored_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # loans, per reason
    skipped_rows: dict[str, int] = field(default_factory=dict)  # file rows, per reason

    @property
    def default_rate(self) -> float:
        return self.defaults / self.labelled if self.labelled else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "default_rate": self.default_rate}

    @classmethod
    def combine(cls, reports: Iterable[LabelReport]) -> LabelReport:
        """One report for several vintages: counts add up."""
        total = cls()
        dropped: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        for r in reports:
            total.vintages += r.vintages
            total.loans_read += r.loans_read
            total.performance_rows += r.performance_rows
            total.labelled += r.labelled
            total.defaults += r.defaults
            total.censored_kept += r.censored_kept
            dropped.update(r.dropped)
            skipped.update(r.skipped_rows)
        total.dropped, total.skipped_rows = dict(sorted(dropped.items())), dict(sorted(skipped.items()))
        return total

    def __str__(self) -> str:
        rows = [
            ("vintages", ", ".join(self.vintages) or "-"),
            ("loans read", f"{self.loans_read:,}"),
            ("performance rows", f"{self.performance_rows:,}"),
            ("loans labelled", f"{self.labelled:,}"),
            ("defaults", f"{self.defaults:,} ({self.default_rate:.2%})"),
        ]
        if self.censored_kept:
            rows.append(("censored, kept as 0", f"{self.censored_kept:,}"))
        rows += [(f"loans dropped: {reason}", f"{n:,}") for reason, n in self.dropped.items()]
        rows += [(f"rows skipped: {reason}", f"{n:,}") for reason, n in self.skipped_rows.items()]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


class OutcomeAggregator:
    """Per-loan outcome statistics from performance batches (`reader.PERFORMANCE_SCHEMA`), in any order.

    Each batch is reduced to one row per run of equal loan ids (Freddie lists a loan's months together) with numpy
    `reduceat`; partial results are merged by a group-by (min/max/sum) when they pile up and at the end, so memory
    grows with the number of loans, not rows.
    """

    def __init__(self, config: LabelConfig):
        self.config = config
        self.rows = 0
        self._parts: list[pa.Table] = []
        self._part_rows = 0
        self._compact_at = 1 << 20
        self._zero_balance: list[pa.Table] = []

    def add(self, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        if n == 0:
            return
        self.rows += n
        ids = batch.column("loan_id")
        # Freddie files list each loan's months together, so reduce over runs of equal ids (no hashing). Unsorted
        # input only makes more runs; runs of the same loan are merged like partials from different batches.
        starts = np.flatnonzero(np.r_[True, pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)])
        month = month_number(batch.column("period").to_numpy()).astype(np.int32)
        status = batch.column("delinquency_status").to_numpy()
        event = np.where(status >= self.config.min_dpd_months, month, _NEVER)  # STATUS_REO is above any threshold
        known = np.where(status != STATUS_UNKNOWN, month, _NOT_SEEN)
        part = pa.table(
            {
                "loan_id": ids.take(starts),
                "event": np.minimum.reduceat(event, starts),
                "known": np.maximum.reduceat(known, starts),
                "rows": np.diff(np.r_[starts, n]),
            }
        )
        self._parts.append(part)
        self._part_rows += part.num_rows
        if self._part_rows >= self._compact_at:  # unsorted input: merge partials so they stay ~ one row per loan
            self._parts = [self._merged()]
            self._part_rows = self._parts[0].num_rows
            self._compact_at = max(self._compact_at, 2 * self._part_rows)

        code = batch.column("zero_balance_code")
        if code.null_count < n:
            rows = batch.filter(code.is_valid())
            date = rows.column("zero_balance_date").to_numpy(zero_copy_only=False)
            period = rows.column("period").to_numpy()
            when = month_number(np.where(np.isnan(date), period, date)).astype(np.int32)
            self._zero_balance.append(
                pa.table({"loan_id": rows.column("loan_id"), "code": rows.column("zero_balance_code"), "month": when})
            )

    def _merged(self) -> pa.Table:
        merged = pa.concat_tables(self._parts).group_by("loan_id", use_threads=False)
        merged = merged.aggregate([("event", "min"), ("known", "max"), ("rows", "sum")])
        return merged.rename_columns(["loan_id", "event", "known", "rows"])

    def result(self) -> pd.DataFrame:
        """One row per loan id seen: `rows`, and month indices `first_event` (status at or past `min_dpd_months`,
        or RA), `last_known` (latest known status), `credit_zero_balance` (earliest credit-event zero balance),
        `zero_balance` (latest zero balance) with its `final_zero_balance_code`; NaN where there is none."""
        if not self._parts:
            columns = [
                "rows",
                "first_event",
                "last_known",
                "credit_zero_balance",
                "zero_balance",
                "final_zero_balance_code",
            ]
            return pd.DataFrame(columns=columns, index=pd.Index([], name="loan_id", dtype=_STRING_DTYPE))
        merged = self._merged()
        index = pd.Index(merged.column("loan_id").to_pandas(types_mapper=_string_types), name="loan_id")
        zero_balance = np.full(len(index), np.nan)
        credit_zero_balance = np.full(len(index), np.nan)
        final_code = pd.array(np.full(len(index), None), dtype=_STRING_DTYPE)
        if self._zero_balance:
            zb = pa.concat_tables(self._zero_balance).to_pandas(types_mapper=_string_types)
            last = zb.sort_values("month", kind="stable").groupby("loan_id", sort=False).last()
            at = index.get_indexer(last.index)
            zero_balance[at] = last["month"].to_numpy()
            final_code[at] = last["code"].array
            credit = zb[zb["code"].isin(self.config.credit_event_codes)].groupby("loan_id", sort=False)["month"].min()
            credit_zero_balance[index.get_indexer(credit.index)] = credit.to_numpy()
        return pd.DataFrame(
            {
                "rows": merged.column("rows").to_numpy(),
                "first_event": _float_or_nan(merged.column("event").to_numpy(), _NEVER),
                "last_known": _float_or_nan(merged.column("known").to_numpy(), _NOT_SEEN),
                "credit_zero_balance": credit_zero_balance,
                "zero_balance": zero_balance,
                "final_zero_balance_code": final_code,
            },
            index=index,
        )


def _float_or_nan(values: np.ndarray, none: int) -> np.ndarray:
    out = values.astype(np.float64)
    out[values == none] = np.nan
    return out


def _string_types(t: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    return _STRING_DTYPE if t == pa.string() else None


def label_loans(
    origination: pd.DataFrame, outcomes: pd.DataFrame, config: LabelConfig
) -> tuple[pd.DataFrame, LabelReport]:
    """The loan table: origination rows joined with their outcome and label columns, plus the report.

    Loans without performance rows, without a first payment date, or censored (unless kept) are dropped and counted;
    performance loans missing from the origination file are counted (loans and rows) and a warning is issued.
    """
    report = LabelReport(loans_read=len(origination), performance_rows=int(outcomes["rows"].sum()))
    ids = pd.Index(origination["loan_id"].astype(_STRING_DTYPE))
    orphans = outcomes.index.difference(ids)
    if len(orphans):
        orphan_rows = int(outcomes.loc[orphans, "rows"].sum())
        report.dropped[ORPHAN_LOANS] = len(orphans)
        report.skipped_rows[ORPHAN_ROWS] = orphan_rows
        warnings.warn(
            f"{orphan_rows:,} performance rows of {len(orphans):,} loans not in the origination file were skipped "
            f"(first: {orphans[0]!r})",
            FreddieDataWarning,
            stacklevel=2,
        )
    stats = outcomes.reindex(ids)
    first_payment = month_number(origination["first_payment_date"].to_numpy(dtype=np.float64))

    first_event = np.fmin(stats["first_event"].to_numpy(), stats["credit_zero_balance"].to_numpy())
    first_default_age = first_event - first_payment + 1
    last_known_age = stats["last_known"].to_numpy() - first_payment + 1
    terminated = stats["zero_balance"].notna().to_numpy()
    horizon = config.horizon_months
    if horizon is None:
        default = ~np.isnan(first_event)
        censored = np.zeros(len(ids), dtype=bool)
    else:
        default = first_default_age <= horizon  # NaN compares False
        observed_enough = terminated | (last_known_age >= horizon)
        censored = ~default & ~observed_enough

    no_performance = stats["rows"].isna().to_numpy()
    no_first_payment = ~no_performance & np.isnan(first_payment)
    censored &= ~no_performance & ~no_first_payment
    keep = ~no_performance & ~no_first_payment
    if not config.keep_censored:
        keep &= ~censored
    for reason, mask in [(NO_PERFORMANCE, no_performance), (NO_FIRST_PAYMENT, no_first_payment)]:
        if mask.any():
            report.dropped[reason] = int(mask.sum())
    if censored.any():
        if config.keep_censored:
            report.censored_kept = int(censored.sum())
        else:
            report.dropped[CENSORED] = int(censored.sum())

    # Columns are added to the kept rows one by one: no second copy of the whole table.
    table = origination if keep.all() else origination.loc[keep].reset_index(drop=True)
    year, quarter, vintage = _vintages(table)
    table = table.assign(
        default=default[keep].astype(np.int8),
        vintage_year=year,
        vintage_quarter=quarter,
        vintage=vintage,
        months_observed=np.nan_to_num(np.maximum(last_known_age[keep], 0), nan=0).astype(np.int64),
        first_default_age=first_default_age[keep],
        censored=censored[keep],
        final_zero_balance_code=pd.array(stats["final_zero_balance_code"].to_numpy()[keep], dtype=_STRING_DTYPE),
    )
    report.labelled = len(table)
    report.defaults = int(table["default"].sum())
    return table, report


def _vintages(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.api.extensions.ExtensionArray]:
    """(year, quarter, "YYYYQn") of origination from the loan id, else from the first payment date.

    The id's first six characters fix its vintage, so `schema.vintage_from_loan_id` runs once per distinct prefix.
    Freddie's first payment falls about two months after the note date (F19Q1... loans pay first in 2019-05),
    so the fallback steps two months back before taking the quarter.
    """
    codes, prefixes = pd.factorize(table["loan_id"].str.slice(0, 6))
    found = [schema.vintage_from_loan_id(prefix) for prefix in prefixes]
    year = np.array([v[0] if v else -1 for v in found], dtype=np.int64)[codes]
    quarter = np.array([v[1] if v else -1 for v in found], dtype=np.int64)[codes]
    unknown = year < 0
    if unknown.any():
        month = month_number(table["first_payment_date"].to_numpy(dtype=np.float64)[unknown]) - 2
        year[unknown], quarter[unknown] = month // 12, month % 12 // 3 + 1
    codes, keys = pd.factorize(year * 10 + quarter)
    names = np.array([f"{key // 10}Q{key % 10}" for key in keys], dtype=object)
    return year, quarter, pd.array(names[codes], dtype=_STRING_DTYPE)
