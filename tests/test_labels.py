"""The outcome label, rule by rule, on hand-written loan histories; plus a random check against a plain reference."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loan_default.freddie.errors import FreddieDataWarning, FreddieFileError
from loan_default.freddie.labels import LabelConfig, LabelReport, OutcomeAggregator, label_loans
from loan_default.freddie.loans import DEFAULT_LABEL, compact_loan_table, load_loan_table
from loan_default.freddie.reader import read_origination, read_performance
from loan_default.training.cache import cached_table
from tests.test_reader import orig_line, perf_line, write

FIRST_PAYMENT = 201901  # age 1; 201812 is age 0


def period_at(age: int, first_payment: int = FIRST_PAYMENT) -> int:
    """YYYYMM of the month where the loan has `age` (age 1 = the first payment month)."""
    month = (first_payment // 100) * 12 + first_payment % 100 - 1 + age - 1
    return (month // 12) * 100 + month % 12 + 1


def history(loan_id: str, statuses: list[str], code: str = "", first_age: int = 1, **kw) -> list[str]:
    """Monthly rows from `first_age` on; a zero-balance `code` goes on the last row, dated that month."""
    rows = []
    for i, status in enumerate(statuses):
        period = period_at(first_age + i, kw.get("first_payment", FIRST_PAYMENT))
        last = i == len(statuses) - 1
        rows.append(
            perf_line(loan_id, period, status, code=code if last else "", date=str(period) if last and code else "")
        )
    return rows


def label(tmp_path: Path, histories: dict[str, list[str]], config: LabelConfig = DEFAULT_LABEL, first_payment=None):
    """The loan table (indexed by loan id) and report for hand-written histories."""
    first_payment = first_payment or {}
    orig = [orig_line(loan_id=loan, first_payment_date=first_payment.get(loan, FIRST_PAYMENT)) for loan in histories]
    perf = [row for rows in histories.values() for row in rows]
    table, report = load_loan_table(write(tmp_path / "o.txt", orig), write(tmp_path / "p.txt", perf), label=config)
    return table.set_index("loan_id"), report


def months(n: int, status: str = "0") -> list[str]:
    return [status] * n


# ---------------------------------------------------------------------------------------------------------------------
# One rule at a time
# ---------------------------------------------------------------------------------------------------------------------
def test_90_days_within_horizon_defaults_and_records_first_default_age(tmp_path):
    table, report = label(tmp_path, {"L": history("L", ["0", "0", "1", "2", "3", "4", "3", *months(20)])})
    row = table.loc["L"]
    assert row["default"] == 1 and row["first_default_age"] == 5 and not row["censored"]
    assert report.defaults == 1 and report.labelled == 1 and report.default_rate == 1.0


def test_90_days_after_horizon_is_not_a_default(tmp_path):
    table, _ = label(tmp_path, {"L": history("L", [*months(24), "3", "4"])})
    row = table.loc["L"]
    assert row["default"] == 0 and not row["censored"]
    assert row["first_default_age"] == 25  # recorded over the whole history, beyond the horizon too


def test_horizon_boundary_is_age_24(tmp_path):
    table, _ = label(
        tmp_path,
        {"AT24": history("AT24", [*months(23), "3"]), "AT25": history("AT25", [*months(24), "3"])},
    )
    assert table.loc["AT24", "default"] == 1 and table.loc["AT25", "default"] == 0


def test_age_comes_from_dates_not_row_count(tmp_path):
    # Rows start at age 0 (the month before the first payment, as in Freddie's files) and months are missing.
    rows = history("L", ["0", "0"], first_age=0) + history("L", ["3"], first_age=24)
    table, _ = label(tmp_path, {"L": rows})
    assert table.loc["L", "default"] == 1 and table.loc["L", "first_default_age"] == 24


def test_reo_acquired_defaults(tmp_path):
    table, _ = label(tmp_path, {"L": history("L", [*months(9), "RA", *months(20)])})
    assert table.loc["L", "default"] == 1 and table.loc["L", "first_default_age"] == 10


@pytest.mark.parametrize("code", ["02", "03", "09", "15"])
def test_credit_event_zero_balance_defaults(tmp_path, code):
    table, _ = label(tmp_path, {"L": history("L", [*months(11), "1"], code=code)})
    row = table.loc["L"]
    assert row["default"] == 1 and row["first_default_age"] == 12 and row["final_zero_balance_code"] == code


@pytest.mark.parametrize("code", ["96", "16"])
def test_repurchase_and_reperforming_sale_count_only_when_configured(tmp_path, code):
    histories = {"L": history("L", [*months(11), "1"], code=code)}
    table, _ = label(tmp_path, histories)
    assert table.loc["L", "default"] == 0 and not table.loc["L", "censored"]  # ended: observed, not censored
    config = LabelConfig(credit_event_codes=("02", "03", "09", "15", code))
    (tmp_path / "again").mkdir()
    table, _ = label(tmp_path / "again", histories, config)
    assert table.loc["L", "default"] == 1


def test_credit_event_after_the_horizon_is_not_a_default(tmp_path):
    table, _ = label(tmp_path, {"L": history("L", months(30), code="09")})
    assert table.loc["L", "default"] == 0 and table.loc["L", "first_default_age"] == 30


def test_payoff_before_horizon_is_zero_not_censored(tmp_path):
    table, report = label(tmp_path, {"L": history("L", months(6), code="01")})
    row = table.loc["L"]
    assert row["default"] == 0 and not row["censored"] and row["final_zero_balance_code"] == "01"
    assert np.isnan(row["first_default_age"]) and row["months_observed"] == 6
    assert report.dropped == {}


def test_active_loan_observed_less_than_horizon_is_censored_and_dropped(tmp_path):
    table, report = label(tmp_path, {"SHORT": history("SHORT", months(10)), "LONG": history("LONG", months(24))})
    assert list(table.index) == ["LONG"] and table.loc["LONG", "default"] == 0
    assert report.dropped == {"censored": 1} and report.loans_read == 2 and report.labelled == 1


def test_censored_loans_can_be_kept(tmp_path):
    table, report = label(tmp_path, {"SHORT": history("SHORT", months(10))}, LabelConfig(keep_censored=True))
    row = table.loc["SHORT"]
    assert row["censored"] and row["default"] == 0 and row["months_observed"] == 10
    assert report.censored_kept == 1 and report.dropped == {}


def test_a_short_history_that_defaults_is_not_censored(tmp_path):
    table, _ = label(tmp_path, {"L": history("L", ["0", "1", "2", "3"])})
    assert table.loc["L", "default"] == 1 and not table.loc["L", "censored"]


@pytest.mark.parametrize("unknown", ["XX", ""])
def test_unknown_statuses_are_not_current(tmp_path, unknown):
    # 30 months, the last 10 unknown: last known status at age 20 < 24, so censored.
    # 34 months, the last 10 unknown: last known status at age 24, so observed for the horizon.
    histories = {
        "SHORT": history("SHORT", [*months(20), *months(10, unknown)]),
        "LONG": history("LONG", [*months(24), *months(10, unknown)]),
    }
    table, report = label(tmp_path, histories, LabelConfig(keep_censored=True))
    assert table.loc["SHORT", "censored"] and table.loc["SHORT", "months_observed"] == 20
    assert not table.loc["LONG", "censored"] and table.loc["LONG", "default"] == 0
    assert report.censored_kept == 1


def test_horizon_none_uses_the_whole_history(tmp_path):
    histories = {"LATE": history("LATE", [*months(49), "3"]), "YOUNG": history("YOUNG", months(5))}
    table, report = label(tmp_path, histories, LabelConfig(horizon_months=None))
    assert table.loc["LATE", "default"] == 1 and table.loc["LATE", "first_default_age"] == 50
    assert table.loc["YOUNG", "default"] == 0 and not table.loc["YOUNG", "censored"]
    assert report.dropped == {}


def test_min_dpd_months_two(tmp_path):
    histories = {"L": history("L", ["0", "1", "2", "1", *months(30)])}
    table, _ = label(tmp_path, histories, LabelConfig(min_dpd_months=2))
    assert table.loc["L", "default"] == 1 and table.loc["L", "first_default_age"] == 3
    (tmp_path / "three").mkdir()
    table, _ = label(tmp_path / "three", histories)
    assert table.loc["L", "default"] == 0


def test_loan_without_performance_rows_is_dropped_and_counted(tmp_path):
    orig = [orig_line(loan_id=loan, first_payment_date=FIRST_PAYMENT) for loan in ["HAS", "NONE"]]
    perf = history("HAS", months(24))
    table, report = load_loan_table(write(tmp_path / "o.txt", orig), write(tmp_path / "p.txt", perf))
    assert table["loan_id"].tolist() == ["HAS"] and report.dropped == {"no performance rows": 1}


def test_orphan_performance_rows_are_skipped_counted_and_warned(tmp_path):
    orig = [orig_line(loan_id="KNOWN", first_payment_date=FIRST_PAYMENT)]
    perf = history("KNOWN", months(24)) + history("STRAY", months(7))
    with pytest.warns(FreddieDataWarning, match="7 performance rows of 1 loans"):
        table, report = load_loan_table(write(tmp_path / "o.txt", orig), write(tmp_path / "p.txt", perf))
    assert table["loan_id"].tolist() == ["KNOWN"]
    assert report.dropped == {"orphan performance loans": 1}
    assert report.skipped_rows == {"orphan performance row": 7} and report.performance_rows == 31


def test_vintage_from_loan_id_else_first_payment_date(tmp_path):
    histories = {
        "F07Q3000001": history("F07Q3000001", months(24)),
        "X1": history("X1", months(24), first_payment=201905),
    }
    table, _ = label(tmp_path, histories, first_payment={"X1": 201905})
    assert table.loc["F07Q3000001", ["vintage_year", "vintage_quarter", "vintage"]].tolist() == [2007, 3, "2007Q3"]
    assert table.loc["X1", "vintage"] == "2019Q1"  # first payment 2019-05: note date about two months earlier


def test_loan_table_columns_and_dtypes(tmp_path):
    table, _ = label(tmp_path, {"L": history("L", months(24), code="01")})
    dtypes = table.dtypes
    assert dtypes["default"] == np.int8 and dtypes["vintage_year"] == np.int64 and dtypes["censored"] == np.bool_
    assert dtypes["months_observed"] == np.int64 and dtypes["first_default_age"] == np.float64
    assert isinstance(dtypes["vintage"], pd.StringDtype) and isinstance(
        dtypes["final_zero_balance_code"], pd.StringDtype
    )


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation in any order, config, report
# ---------------------------------------------------------------------------------------------------------------------
def _batch(rows: list[tuple[str, int, int]]) -> pa.RecordBatch:
    ids, periods, statuses = zip(*rows, strict=True)
    return pa.RecordBatch.from_pydict(
        {
            "loan_id": list(ids),
            "period": pa.array(periods, pa.int32()),
            "delinquency_status": pa.array(statuses, pa.int16()),
            "zero_balance_code": pa.nulls(len(rows), pa.string()),
            "zero_balance_date": pa.nulls(len(rows), pa.int32()),
        }
    )


def test_aggregator_merges_a_loan_split_across_batches_in_any_order():
    a = [("A", 201901, 0), ("B", 201901, 3), ("A", 201902, 4)]
    b = [("A", 201905, -1), ("A", 201903, 5), ("B", 201812, 0)]
    results = []
    for order in ([a, b], [b, a], [a[::-1] + b[::-1]]):
        agg = OutcomeAggregator(LabelConfig())
        for rows in order:
            agg.add(_batch(rows))
        results.append(agg.result().sort_index())
    for result in results[1:]:
        pd.testing.assert_frame_equal(result, results[0])
    first = results[0]
    assert first.loc["A", "rows"] == 4 and first.loc["B", "rows"] == 2
    assert first.loc["A", "first_event"] == 2019 * 12 + 1  # 201902, status 4
    assert first.loc["A", "last_known"] == 2019 * 12 + 2  # 201903 (201905 is unknown)


def test_aggregator_compacts_unsorted_partials():
    agg = OutcomeAggregator(LabelConfig())
    agg._compact_at = 4  # force merging of partial results
    rng = np.random.default_rng(0)
    rows = [(f"L{rng.integers(0, 5)}", 201901 + int(rng.integers(0, 12)), int(rng.integers(0, 4))) for _ in range(60)]
    for start in range(0, 60, 6):
        agg.add(_batch(rows[start : start + 6]))
    result = agg.result()
    reference = pd.DataFrame(rows, columns=["loan_id", "period", "status"]).groupby("loan_id")
    assert result["rows"].sort_index().tolist() == reference.size().sort_index().tolist()


def test_label_config_normalises_and_validates():
    assert LabelConfig(credit_event_codes=[2, "3", 9, "15"]).credit_event_codes == ("02", "03", "09", "15")
    with pytest.raises(ValueError, match="not zero-balance codes"):
        LabelConfig(credit_event_codes=("99",))
    with pytest.raises(ValueError, match="horizon_months"):
        LabelConfig(horizon_months=0)
    with pytest.raises(ValueError, match="min_dpd_months"):
        LabelConfig(min_dpd_months=0)


def test_load_loan_table_accepts_a_mapping(tmp_path):
    histories = {"L": history("L", ["0", "1", "2", *months(30)])}
    orig = write(tmp_path / "o.txt", [orig_line(loan_id="L", first_payment_date=FIRST_PAYMENT)])
    perf = write(tmp_path / "p.txt", histories["L"])
    table, _ = load_loan_table(orig, perf, label={"min_dpd_months": 2, "horizon_months": 24})
    assert table["default"].tolist() == [1]


def test_report_combines_prints_and_converts():
    a = LabelReport(["2019"], 10, 100, 8, 2, 0, {"censored": 2}, {"empty line": 1})
    b = LabelReport(["2020"], 5, 50, 4, 0, 1, {"censored": 1, "no performance rows": 1}, {})
    total = LabelReport.combine([a, b])
    assert total.vintages == ["2019", "2020"] and total.loans_read == 15 and total.labelled == 12
    assert total.dropped == {"censored": 3, "no performance rows": 1} and total.skipped_rows == {"empty line": 1}
    assert total.to_dict()["default_rate"] == pytest.approx(2 / 12)
    text = str(total)
    assert "loans dropped: censored" in text and "16.67%" in text


# ---------------------------------------------------------------------------------------------------------------------
# Random histories, shuffled across blocks, against a plain per-loan reference
# ---------------------------------------------------------------------------------------------------------------------
def reference_label(first_payment: int, rows: list[tuple[int, str, str]], config: LabelConfig) -> dict:
    """The label definition written out loan by loan, row by row."""

    def age(yyyymm: int) -> int:
        return (yyyymm // 100 - first_payment // 100) * 12 + yyyymm % 100 - first_payment % 100 + 1

    def in_horizon(a: int) -> bool:
        return config.horizon_months is None or a <= config.horizon_months

    events = [age(p) for p, s, _ in rows if s == "RA" or (s.isdigit() and int(s) >= config.min_dpd_months)]
    events += [age(p) for p, _, c in rows if c in config.credit_event_codes]
    default = any(in_horizon(a) for a in events)
    terminated = any(c for _, _, c in rows)
    known = [age(p) for p, s, _ in rows if s not in ("XX", "")]
    censored = (
        config.horizon_months is not None
        and not default
        and not terminated
        and (not known or max(known) < config.horizon_months)
    )
    return {"default": int(default), "censored": censored, "first_default_age": min(events, default=np.nan)}


@pytest.mark.parametrize(
    "config",
    [LabelConfig(), LabelConfig(12, 2, keep_censored=True), LabelConfig(None, 3, ("03", "09", "96"))],
)
def test_random_histories_match_the_reference(tmp_path, config):
    rng = np.random.default_rng(7)
    histories, first_payments, lines = {}, {}, []
    for i in range(150):
        loan = f"F20Q1{i:07d}"
        fp = 201901 + int(rng.integers(0, 12))
        n = int(rng.integers(1, 40))
        start = int(rng.integers(0, 3))
        statuses = rng.choice(
            ["0", "0", "0", "1", "2", "3", "4", "RA", "XX", ""],
            n,
            p=[0.5, 0.1, 0.1, 0.08, 0.06, 0.05, 0.04, 0.02, 0.03, 0.02],
        )
        code = rng.choice(["", "", "01", "03", "09", "96", "16"])
        rows = []
        for k, status in enumerate(statuses):
            period = period_at(start + k, fp)
            rows.append((period, str(status), str(code) if k == n - 1 else ""))
        histories[loan], first_payments[loan] = rows, fp
        lines += [perf_line(loan, p, s, code=c, date=str(p) if c else "") for p, s, c in rows]
    order = rng.permutation(len(lines))  # rows of a loan scattered over many blocks
    orig = write(
        tmp_path / "o.txt", [orig_line(loan_id=loan, first_payment_date=fp) for loan, fp in first_payments.items()]
    )
    perf = write(tmp_path / "p.txt", [lines[k] for k in order])

    agg = OutcomeAggregator(config)
    for batch in read_performance(perf, block_size=2048):
        agg.add(batch)
    table, report = label_loans(read_origination(orig), agg.result(), config)
    table = table.set_index("loan_id")

    expected = {loan: reference_label(first_payments[loan], rows, config) for loan, rows in histories.items()}
    kept = {loan for loan, e in expected.items() if config.keep_censored or not e["censored"]}
    assert set(table.index) == kept
    assert report.dropped.get("censored", 0) == (0 if config.keep_censored else len(expected) - len(kept))
    for loan in kept:
        got = table.loc[loan]
        assert got["default"] == expected[loan]["default"], loan
        assert got["censored"] == expected[loan]["censored"], loan
        np.testing.assert_equal(got["first_default_age"], expected[loan]["first_default_age"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is skipped, so nothing may warn
        label_loans(read_origination(orig), agg.result(), config)


# ---------------------------------------------------------------------------------------------------------------------
# The loan table from a folder: several vintages, truth.csv
# ---------------------------------------------------------------------------------------------------------------------
def _vintage(folder: Path, year: int, loans: list[str], layout_fields: int = 32) -> None:
    fp = year * 100 + 1
    folder.mkdir(exist_ok=True)
    orig = [orig_line(loan_id=loan, first_payment_date=fp) for loan in loans]
    orig = ["|".join(line.split("|")[:layout_fields]) for line in orig]
    perf = [row for loan in loans for row in history(loan, months(24), code="01", first_payment=fp)]
    write(folder / f"sample_orig_{year}.txt", orig)
    write(folder / f"sample_svcg_{year}.txt", perf)


def test_folder_with_vintages_of_different_layouts_and_truth(tmp_path):
    _vintage(tmp_path, 2019, ["F19Q1000001", "F19Q1000002"])
    _vintage(tmp_path / "older", 2009, ["F09Q1000001"], layout_fields=31)  # the pre-2023 layout
    (tmp_path / "truth.csv").write_text(
        "loan_id,true_pd,corrupted,corruption\nF19Q1000001,0.02,0,\nF19Q1000002,0.5,1,swapped ltv\nF09Q1000001,0.1,0,\n"
    )
    table, report = load_loan_table(folder=tmp_path)
    assert table["loan_id"].tolist() == ["F09Q1000001", "F19Q1000001", "F19Q1000002"]  # vintages in order
    assert report.vintages == ["2009", "2019"] and report.loans_read == 3 and report.labelled == 3
    assert table["true_pd"].tolist() == [0.1, 0.02, 0.5] and table["corrupted"].tolist() == [0, 0, 1]
    assert table["true_pd"].dtype == np.float64 and table["corrupted"].dtype == np.int8
    assert "corruption" not in table.columns
    assert pd.isna(table.loc[0, "mi_cancellation"]) and table.loc[1, "mi_cancellation"] == "7"


def test_truth_given_explicitly_and_partial_truth_warns(tmp_path):
    _vintage(tmp_path, 2019, ["F19Q1000001", "F19Q1000002"])
    truth = tmp_path / "elsewhere.csv"
    truth.write_text("loan_id,true_pd,corrupted,corruption\nF19Q1000001,0.25,1,x\n")
    with pytest.warns(FreddieDataWarning, match="1 loans have no row in the truth file"):
        table, _ = load_loan_table(tmp_path / "sample_orig_2019.txt", tmp_path / "sample_svcg_2019.txt", truth=truth)
    assert table["true_pd"].iloc[0] == 0.25 and np.isnan(table["true_pd"].iloc[1])
    assert table["corrupted"].iloc[0] == 1 and pd.isna(table["corrupted"].iloc[1])


def test_truth_without_its_columns_is_an_error(tmp_path):
    _vintage(tmp_path, 2019, ["F19Q1000001"])
    (tmp_path / "truth.csv").write_text("loan_id,pd\nF19Q1000001,0.1\n")
    with pytest.raises(FreddieFileError, match=r"truth file lacks columns \['corrupted', 'true_pd'\]"):
        load_loan_table(folder=tmp_path)


def test_the_same_loan_in_two_vintages_is_an_error(tmp_path):
    _vintage(tmp_path, 2019, ["F19Q1000001"])
    _vintage(tmp_path, 2020, ["F19Q1000001"])
    with pytest.raises(FreddieFileError, match="appear in more than one vintage.*2019, 2020"):
        load_loan_table(folder=tmp_path)


def test_compact_table_holds_the_same_values_in_narrower_dtypes(tmp_path):
    """Codes become categoricals whose categories are the union over vintages, floats narrow only where exact."""
    _vintage(tmp_path, 2019, ["F19Q1000001", "F19Q1000002"])
    _vintage(tmp_path / "older", 2009, ["F09Q1000001"], layout_fields=31)  # mi_cancellation only in 2019
    (tmp_path / "truth.csv").write_text("loan_id,true_pd,corrupted,corruption\nF19Q1000001,0.02,0,\n")
    with pytest.warns(FreddieDataWarning):
        wide, report = load_loan_table(folder=tmp_path)
    with pytest.warns(FreddieDataWarning):
        compact, compact_report = load_loan_table(folder=tmp_path, compact=True)
    assert compact_report == report and list(compact.columns) == list(wide.columns)
    odd_rate = wide["orig_rate"].to_numpy().copy()
    odd_rate[0] = 3.99  # not a float32: must stay float64
    assert compact_loan_table(wide.assign(orig_rate=odd_rate))["orig_rate"].dtype == np.float64
    dtypes = compact.dtypes
    assert isinstance(dtypes["mi_cancellation"], pd.CategoricalDtype) and isinstance(
        dtypes["seller_name"], pd.CategoricalDtype
    )
    assert dtypes["credit_score"] == np.float32 and dtypes["vintage_year"] == np.int32
    assert isinstance(dtypes["loan_id"], pd.StringDtype) and isinstance(dtypes["vintage"], pd.StringDtype)
    assert dtypes["true_pd"] == np.float64  # 0.02 is not exact in float32
    for name in wide.columns:  # every value unchanged: back to the wide dtype, the columns are equal
        pd.testing.assert_series_equal(compact[name].astype(wide[name].dtype), wide[name], check_exact=True)
    assert compact.memory_usage(deep=True).sum() < wide.memory_usage(deep=True).sum()
    cache = tmp_path / "cache"  # training's cache gives back exactly the table it stored, dtypes included
    cached_table(cache, "key", lambda: (compact, {}))
    again, _ = cached_table(cache, "key", lambda: pytest.fail("the cached table was rebuilt"))
    pd.testing.assert_frame_equal(again, compact, check_exact=True)
