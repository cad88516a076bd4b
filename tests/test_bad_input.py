"""Malformed files: every case raises FreddieFormatError naming file, line, field and value, or is skipped and counted."""

from __future__ import annotations

import warnings

import pandas as pd
import pyarrow as pa
import pytest

from loan_default.freddie.errors import FreddieDataWarning, FreddieFormatError, SkipLog
from loan_default.freddie.loans import load_loan_table
from loan_default.freddie.reader import read_origination, read_performance
from tests.test_reader import ORIG_COLUMNS, REAL_PERF, orig_line, perf_line, write


def loans(n: int, **overrides_at: dict) -> list[str]:
    """`n` origination lines (loan ids L1..Ln); `overrides_at={"3": {...}}` changes fields of line 3."""
    return [orig_line(loan_id=f"L{i}", **overrides_at.get(str(i), {})) for i in range(1, n + 1)]


def period(k: int) -> int:
    """YYYYMM, `k` months after January 2019."""
    return (2019 + k // 12) * 100 + k % 12 + 1


def months(loan: str, n: int) -> list[str]:
    return [perf_line(loan, period(k)) for k in range(n)]


def read_perf(path, **kwargs) -> pd.DataFrame:
    return pa.Table.from_batches(list(read_performance(path, **kwargs))).to_pandas()


def expect_error(call, *, line, field, value=None, match=None) -> FreddieFormatError:
    with pytest.raises(FreddieFormatError) as info:
        call()
    err = info.value
    assert (err.line, err.field) == (line, field), str(err)
    if value is not None:
        assert err.value == value and repr(value) in str(err)
    assert err.file in str(err) and (line is None or f"line {line}" in str(err))
    if match:
        assert match in str(err), str(err)
    return err


# ---------------------------------------------------------------------------------------------------------------------
# Wrong field count, truncation, empty files, layouts
# ---------------------------------------------------------------------------------------------------------------------
def test_wrong_field_count_mid_file(tmp_path):
    lines = loans(5)
    lines[2] = "|".join(lines[2].split("|")[:20])
    path = write(tmp_path / "o.txt", lines)
    expect_error(lambda: read_origination(path), line=3, field=ORIG_COLUMNS[20], match="20 fields")
    log = SkipLog()
    frame = read_origination(path, on_bad_row="skip", skipped=log)
    assert frame["loan_id"].tolist() == ["L1", "L2", "L4", "L5"]
    assert dict(log.counts) == {"wrong field count": 1} and "line 3" in log.examples["wrong field count"]


def test_too_many_fields(tmp_path):
    lines = months("L1", 4)
    lines[1] += "|extra"
    path = write(tmp_path / "p.txt", lines)
    expect_error(lambda: read_perf(path), line=2, field=None, match="33 fields, but this file's layout (perf32) has 32")


def test_wrong_field_count_deep_in_the_file_keeps_its_line_number(tmp_path):
    lines = [perf_line(f"L{k // 50}", period(k % 50)) for k in range(3000)]
    lines[2233] = "|".join(lines[2233].split("|")[:10])
    path = write(tmp_path / "p.txt", lines)
    expect_error(lambda: read_perf(path, block_size=1024), line=2234, field="current_rate")


def test_truncated_last_line(tmp_path):
    lines = months("L1", 6)
    lines[-1] = lines[-1][:25]  # the writer died mid-line
    path = write(tmp_path / "p.txt", lines, end="")
    expect_error(
        lambda: read_perf(path, block_size=512),
        line=6,
        field="remaining_months",
        match="has 5 of 32 fields: the file looks truncated",
    )
    log = SkipLog()
    assert len(read_perf(path, on_bad_row="skip", skipped=log)) == 5
    assert dict(log.counts) == {"truncated last line": 1}


def test_a_short_line_followed_by_more_lines_is_not_called_truncated(tmp_path):
    lines = months("L1", 6)
    lines[4] = lines[4][:25]
    err = expect_error(lambda: read_perf(write(tmp_path / "p.txt", lines)), line=5, field="remaining_months")
    assert "truncated" not in str(err)


@pytest.mark.parametrize("reader", [read_origination, read_perf])
def test_empty_file(tmp_path, reader):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(FreddieFormatError, match=r"empty\.txt: the .* file is empty"):
        reader(path)


def test_unknown_field_count_on_the_first_line(tmp_path):
    path = write(tmp_path / "o.txt", ["|".join(["x"] * 20)] + loans(2))
    expect_error(
        lambda: read_origination(path), line=1, field=None, match="20 fields, but origination files have [31, 32]"
    )
    log = SkipLog()  # skipping: the layout comes from the next line, the first is counted
    assert read_origination(path, on_bad_row="skip", skipped=log)["loan_id"].tolist() == ["L1", "L2"]
    assert dict(log.counts) == {"wrong field count": 1}


# ---------------------------------------------------------------------------------------------------------------------
# Bad values
# ---------------------------------------------------------------------------------------------------------------------
def test_non_numeric_value(tmp_path):
    path = write(tmp_path / "o.txt", loans(4, **{"2": {"credit_score": "7x8"}}))
    expect_error(lambda: read_origination(path), line=2, field="credit_score", value="7x8", match="not an integer")
    log = SkipLog()
    assert read_origination(path, on_bad_row="skip", skipped=log)["loan_id"].tolist() == ["L1", "L3", "L4"]
    assert dict(log.counts) == {"non-numeric value": 1}


@pytest.mark.parametrize("field, value", [("num_units", "1.5"), ("orig_rate", "4,375"), ("orig_upb", "nan")])
def test_numbers_that_are_not_freddie_numbers(tmp_path, field, value):
    path = write(tmp_path / "o.txt", loans(3, **{"3": {field: value}}))
    expect_error(lambda: read_origination(path), line=3, field=field, value=value)


@pytest.mark.parametrize("value", ["201913", "20190", "2019-1", "abcdef"])
def test_bad_date_in_origination(tmp_path, value):
    path = write(tmp_path / "o.txt", loans(3, **{"2": {"first_payment_date": value}}))
    expect_error(lambda: read_origination(path), line=2, field="first_payment_date", value=value, match="YYYYMM")


@pytest.mark.parametrize("value", ["201900", "2019-01", ""])
def test_bad_or_blank_reporting_period(tmp_path, value):
    lines = months("L1", 5)
    lines[3] = perf_line("L1", value)
    path = write(tmp_path / "p.txt", lines)
    expect_error(lambda: read_perf(path), line=4, field="period", value=value)
    log = SkipLog()
    assert len(read_perf(path, on_bad_row="skip", skipped=log)) == 4 and dict(log.counts) == {"bad date": 1}


@pytest.mark.parametrize("field, value", [("occupancy", "Q"), ("property_type", "XX"), ("amortization_type", "BAL")])
def test_unknown_code_in_origination(tmp_path, field, value):
    path = write(tmp_path / "o.txt", loans(3, **{"3": {field: value}}))
    expect_error(lambda: read_origination(path), line=3, field=field, value=value, match="unknown code")


def test_unknown_zero_balance_code_and_status(tmp_path):
    lines = months("L1", 5)
    lines[2] = perf_line("L1", 201903, "0", code="05", date="201903")
    expect_error(lambda: read_perf(write(tmp_path / "a.txt", lines)), line=3, field="zero_balance_code", value="05")
    lines = months("L1", 5)
    lines[4] = perf_line("L1", 201905, "Z")
    path = write(tmp_path / "b.txt", lines)
    expect_error(lambda: read_perf(path), line=5, field="delinquency_status", value="Z")
    log = SkipLog()
    assert len(read_perf(path, on_bad_row="skip", skipped=log)) == 4 and dict(log.counts) == {"unknown code": 1}


def test_blank_loan_id(tmp_path):
    lines = months("L1", 3)
    lines[1] = perf_line("", 201902)
    expect_error(lambda: read_perf(write(tmp_path / "p.txt", lines)), line=2, field="loan_id", value="")


def test_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "o.txt"
    path.write_bytes((orig_line(loan_id="L1") + "\n").encode() + orig_line(seller_name="Caf\xe9").encode("latin-1"))
    expect_error(lambda: read_origination(path), line=2, field="seller_name", value="Caf\xe9", match="not UTF-8")


# ---------------------------------------------------------------------------------------------------------------------
# Duplicates, orphans, policies
# ---------------------------------------------------------------------------------------------------------------------
def test_duplicate_loan_ids(tmp_path):
    lines = loans(3) + [orig_line(loan_id="L2", credit_score=600)]
    path = write(tmp_path / "o.txt", lines)
    expect_error(lambda: read_origination(path), line=4, field="loan_id", value="L2", match="first on line 2")
    log = SkipLog()
    frame = read_origination(path, on_bad_row="skip", skipped=log)
    assert frame["loan_id"].tolist() == ["L1", "L2", "L3"]
    assert frame.loc[frame["loan_id"] == "L2", "credit_score"].item() == 758  # the first occurrence is kept
    assert dict(log.counts) == {"duplicate loan id": 1}


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_orphan_performance_rows_are_always_skipped_counted_and_warned(tmp_path, policy):
    orig = write(tmp_path / "o.txt", [orig_line(loan_id="L1", first_payment_date=201901)])
    perf = write(tmp_path / "p.txt", months("L1", 24) + months("GHOST", 3))
    with pytest.warns(FreddieDataWarning, match="not in the origination file"):
        table, report = load_loan_table(orig, perf, on_bad_row=policy)
    assert table["loan_id"].tolist() == ["L1"] and report.skipped_rows == {"orphan performance row": 3}


def test_empty_lines_are_skipped_and_counted(tmp_path):
    lines = months("L1", 3)
    lines.insert(1, "")
    path = write(tmp_path / "p.txt", lines + [""])
    log = SkipLog()
    assert len(read_perf(path, skipped=log)) == 3
    assert dict(log.counts) == {"empty line": 2} and "line 2" in log.examples["empty line"]


def test_line_numbers_stay_exact_across_blocks_empty_and_dropped_lines(tmp_path):
    lines = [perf_line(f"L{k // 40}", period(k % 40)) for k in range(2000)]
    lines[10] = ""  # line 11
    lines[700] = ""  # line 701
    lines[1200] = "|".join(lines[1200].split("|")[:5])  # line 1201: dropped by the parser
    lines[1799] = perf_line("L44", "2019X1")  # line 1800
    path = write(tmp_path / "p.txt", lines)
    log = SkipLog()
    assert len(read_perf(path, block_size=1000, on_bad_row="skip", skipped=log)) == 1996
    assert dict(log.counts) == {"empty line": 2, "wrong field count": 1, "bad date": 1}
    assert log.examples["empty line"].endswith("line 11")
    assert log.examples["wrong field count"].endswith("line 1201")
    assert log.examples["bad date"].endswith("line 1800, field 'period'")
    lines[1200] = perf_line("L30", 201901)
    path = write(tmp_path / "p2.txt", lines)
    expect_error(lambda: read_perf(path, block_size=1000), line=1800, field="period", value="2019X1")


def test_raise_reports_the_first_problem_in_file_order(tmp_path):
    lines = months("L1", 30)
    lines[4] = perf_line("L1", "201999")  # line 5: bad value
    lines[9] = "short|line"  # line 10: wrong field count
    expect_error(lambda: read_perf(write(tmp_path / "a.txt", lines)), line=5, field="period")
    lines = months("L1", 30)
    lines[4] = "short|line"
    lines[9] = perf_line("L1", "201999")
    expect_error(lambda: read_perf(write(tmp_path / "b.txt", lines)), line=5, field="current_upb")


def test_several_bad_fields_in_one_row_count_once(tmp_path):
    path = write(tmp_path / "o.txt", loans(3, **{"2": {"credit_score": "x", "occupancy": "Q", "maturity_date": "1"}}))
    log = SkipLog()
    assert len(read_origination(path, on_bad_row="skip", skipped=log)) == 2
    assert sum(log.counts.values()) == 1


def test_skipping_without_a_log_warns(tmp_path):
    path = write(tmp_path / "o.txt", loans(3, **{"2": {"credit_score": "x"}}))
    with pytest.warns(FreddieDataWarning, match="1 non-numeric value"):
        read_origination(path, on_bad_row="skip")
    with pytest.warns(FreddieDataWarning, match="1 empty line"):
        read_perf(write(tmp_path / "p.txt", REAL_PERF + [""] + REAL_PERF))


def test_load_loan_table_counts_every_skipped_row(tmp_path):
    orig_lines = [orig_line(loan_id=f"L{i}", first_payment_date=201901) for i in range(4)]
    orig_lines[1] = orig_lines[1].replace("|P|", "|Q|", 1)  # unknown occupancy
    perf_lines = [row for i in range(4) for row in months(f"L{i}", 24)]
    perf_lines[30] = perf_line("L1", "201913")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table, report = load_loan_table(
            write(tmp_path / "o.txt", orig_lines), write(tmp_path / "p.txt", perf_lines), on_bad_row="skip"
        )
    assert table["loan_id"].tolist() == ["L0", "L2", "L3"]
    assert report.skipped_rows == {"unknown code": 1, "bad date": 1, "orphan performance row": 23}
    assert report.dropped == {"orphan performance loans": 1}
    assert any(issubclass(w.category, FreddieDataWarning) for w in caught)


def test_unknown_policy_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="on_bad_row"):
        read_origination(write(tmp_path / "o.txt", loans(1)), on_bad_row="ignore")
