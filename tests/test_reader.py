"""Reading Freddie Mac files: real rows, layouts, conversions, streaming across blocks, finding file pairs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loan_default.freddie import schema
from loan_default.freddie.errors import FreddieFileError, FreddieFormatError, SkipLog
from loan_default.freddie.files import FilePair, Source, classify, find_file_pairs
from loan_default.freddie.reader import (
    PERFORMANCE_SCHEMA,
    STATUS_REO,
    STATUS_UNKNOWN,
    detect_layout,
    iter_origination,
    read_origination,
    read_performance,
)

# The real rows quoted in shared/freddie/LAYOUT.md (a 2019Q1 loan, 32-field layouts).
REAL_ORIG = (
    "758|201905|N|203904|43580|000|1|P|55|14|248000|55|4.375|R|N|FRM|IA|SF|51100|F19Q10000001|N|240|02|"
    "Other sellers|Other servicers|||9||2|N|7"
)
REAL_PERF = [
    "F19Q10000001|201904|248000.00|0|000|240|||||4.375|0.00||||||||||||||56||||||248000.00",
    "F19Q10000001|201905|247000.00|0|001|239|||||4.375|0.00||||||||||||||54||||||247000.00",
]
ORIG_COLUMNS = schema.ORIGINATION_LAYOUTS["orig32"].columns
PERF_COLUMNS = schema.PERFORMANCE_LAYOUTS["perf32"].columns


def orig_line(**values: object) -> str:
    """The real origination row with some fields replaced."""
    fields = REAL_ORIG.split("|")
    for name, value in values.items():
        fields[ORIG_COLUMNS.index(name)] = str(value)
    return "|".join(fields)


def perf_line(loan_id: str, period: int | str, status: str = "0", code: str = "", date: str = "", **values) -> str:
    """A 32-field performance row."""
    fields = REAL_PERF[0].split("|")
    given = {"loan_id": loan_id, "period": period, "delinquency_status": status}
    given |= {"zero_balance_code": code, "zero_balance_date": date, **values}
    for name, value in given.items():
        fields[PERF_COLUMNS.index(name)] = str(value)
    return "|".join(fields)


def write(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.write_bytes(("\n".join(lines) + end).encode())
    return path


def read_all(path: Path | Source, **kwargs) -> pd.DataFrame:
    batches = list(read_performance(path, **kwargs))
    return pa.Table.from_batches(batches).to_pandas() if batches else pd.DataFrame()


# ---------------------------------------------------------------------------------------------------------------------
# Real rows and conversions
# ---------------------------------------------------------------------------------------------------------------------
def test_real_origination_row(tmp_path):
    frame = read_origination(write(tmp_path / "o.txt", [REAL_ORIG]))
    assert list(frame.columns) == list(schema.ORIGINATION_FIELDS)
    row = frame.iloc[0]
    expected_numbers = {
        "credit_score": 758, "first_payment_date": 201905, "maturity_date": 203904, "mi_pct": 0, "num_units": 1,
        "cltv": 55, "dti": 14, "orig_upb": 248000, "ltv": 55, "orig_rate": 4.375, "orig_term": 240, "num_borrowers": 2,
    }  # fmt: skip
    for name, value in expected_numbers.items():
        assert row[name] == value, name
        assert frame[name].dtype == np.float64
    expected_text = {
        "first_time_homebuyer": "N", "msa": "43580", "occupancy": "P", "channel": "R", "ppm_flag": "N",
        "amortization_type": "FRM", "property_state": "IA", "property_type": "SF", "postal_code": "51100",
        "loan_id": "F19Q10000001", "loan_purpose": "N", "seller_name": "Other sellers",
        "servicer_name": "Other servicers", "super_conforming": "N", "harp_indicator": "N", "valuation_method": "2",
        "interest_only": "N", "mi_cancellation": "7",
    }  # fmt: skip
    for name, value in expected_text.items():
        assert row[name] == value, name
        assert isinstance(frame[name].dtype, pd.StringDtype)
    assert pd.isna(row["pre_harp_loan_id"])  # blank
    assert pd.isna(row["program_indicator"])  # 9 = not available
    assert np.isnan(row["vantage_score"])  # not in this layout


def test_real_performance_rows(tmp_path):
    frame = read_all(write(tmp_path / "p.txt", REAL_PERF), loan_age=True)
    assert frame["loan_id"].tolist() == ["F19Q10000001"] * 2
    assert frame["period"].tolist() == [201904, 201905]
    assert frame["delinquency_status"].tolist() == [0, 0]
    assert frame["loan_age"].tolist() == [0.0, 1.0]  # "000", "001"
    assert frame["zero_balance_code"].isna().all() and frame["zero_balance_date"].isna().all()


def test_performance_batches_have_the_documented_schema(tmp_path):
    batch = next(read_performance(write(tmp_path / "p.txt", REAL_PERF)))
    assert batch.schema == PERFORMANCE_SCHEMA


def test_padding_sentinels_blanks_and_out_of_range(tmp_path):
    lines = [
        orig_line(loan_id="A", credit_score=9999, mi_pct=999, num_units=99, dti=999, first_time_homebuyer=9),
        orig_line(loan_id="B", credit_score="0700", mi_pct=30, num_borrowers="1", property_type=99, ltv=""),
        orig_line(loan_id="C", credit_score=7580, orig_rate=" 6.5 ", super_conforming="Y", harp_indicator="Y"),
    ]
    frame = read_origination(write(tmp_path / "o.txt", lines)).set_index("loan_id")
    for name in ["credit_score", "mi_pct", "num_units", "dti"]:
        assert np.isnan(frame.loc["A", name]), name
    assert pd.isna(frame.loc["A", "first_time_homebuyer"])
    assert frame.loc["B", "credit_score"] == 700 and frame.loc["B", "mi_pct"] == 30
    assert frame.loc["B", "num_borrowers"] == 1 and np.isnan(frame.loc["B", "ltv"])
    assert pd.isna(frame.loc["B", "property_type"])
    assert frame.loc["C", "credit_score"] == 7580  # out of range: kept for later stages to clean
    assert frame.loc["C", "orig_rate"] == 6.5
    assert frame.loc["C", "super_conforming"] == "Y" and frame.loc["C", "harp_indicator"] == "Y"


def test_statuses_codes_and_dates(tmp_path):
    statuses = ["0", "3", "17", "03", "RA", "XX", "", " 2 "]
    lines = [perf_line("F19Q10000001", 201901 + i, s) for i, s in enumerate(statuses)]
    lines += [perf_line("F19Q10000001", 201909, "0", code="1", date="201909")]
    lines += [perf_line("F19Q10000001", 201910, "5", code="09", date="")]
    frame = read_all(write(tmp_path / "p.txt", lines))
    expected = [0, 3, 17, 3, STATUS_REO, STATUS_UNKNOWN, STATUS_UNKNOWN, 2, 0, 5]
    assert frame["delinquency_status"].tolist() == expected
    assert frame["zero_balance_code"].tolist()[-2:] == ["01", "09"]  # "1" gets its zero padding back
    assert frame["zero_balance_date"].tolist()[-2] == 201909 and np.isnan(frame["zero_balance_date"].iloc[-1])


def test_crlf_line_endings(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(("\r\n".join(REAL_PERF) + "\r\n").encode())
    assert read_all(path)["period"].tolist() == [201904, 201905]


# ---------------------------------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------------------------------
def test_origination_layouts_are_detected_and_read(tmp_path):
    fields = REAL_ORIG.split("|")
    pre_2023 = "|".join(fields[:31])  # no MI cancellation; position 25 is the servicer name
    r47 = "|".join(fields[:24] + ["Y", "", "9", "", "2", "N", "0812"])  # super conforming .. VantageScore
    assert detect_layout(Source(write(tmp_path / "a.txt", [pre_2023])), "origination").name == "orig31"
    assert detect_layout(Source(write(tmp_path / "b.txt", [r47])), "origination").name == "orig31_r47"
    old = read_origination(tmp_path / "a.txt").iloc[0]
    assert old["servicer_name"] == "Other servicers" and pd.isna(old["mi_cancellation"])
    new = read_origination(tmp_path / "b.txt").iloc[0]
    assert new["vantage_score"] == 812 and new["super_conforming"] == "Y" and pd.isna(new["servicer_name"])


@pytest.mark.parametrize("n_fields", [30, 35])
def test_performance_layouts(tmp_path, n_fields):
    fields = REAL_PERF[0].split("|")
    line = "|".join((fields + ["N", "Servicer", "0.00"])[:n_fields])
    frame = read_all(write(tmp_path / "p.txt", [line, line.replace("201904", "201905")]))
    assert frame["period"].tolist() == [201904, 201905]


# ---------------------------------------------------------------------------------------------------------------------
# Streaming: many small blocks give the same result as an independent parse
# ---------------------------------------------------------------------------------------------------------------------
def test_streaming_matches_an_independent_parse(tmp_path):
    rng = np.random.default_rng(3)
    n = 3000
    loan = np.sort(rng.integers(0, 200, n))
    period = 201901 + rng.integers(0, 12, n)
    status = rng.choice(["0", "1", "2", "3", "RA", "XX", ""], n)
    code = rng.choice(["", "", "", "01", "09"], n)
    lines = [
        perf_line(f"F19Q1{lo:07d}", p, s, code=c, date=str(p) if c else "")
        for lo, p, s, c in zip(loan, period, status, code, strict=True)
    ]
    path = write(tmp_path / "p.txt", lines)
    batches = list(read_performance(path, block_size=4096))
    assert len(batches) > 10
    ours = pa.Table.from_batches(batches).to_pandas()

    raw = pd.read_csv(path, sep="|", header=None, dtype=str, keep_default_na=False)
    assert ours["loan_id"].tolist() == raw[0].tolist()
    assert ours["period"].tolist() == raw[1].astype(int).tolist()
    to_status = {"RA": STATUS_REO, "XX": STATUS_UNKNOWN, "": STATUS_UNKNOWN}
    assert ours["delinquency_status"].tolist() == [to_status.get(s, None) or int(s) for s in raw[3]]
    assert ours["zero_balance_code"].fillna("").tolist() == raw[8].tolist()


@pytest.mark.parametrize("block_size", [64, 300, 1 << 20])
def test_chunking_keeps_every_line_once(tmp_path, block_size):
    # 64 bytes is shorter than a line: chunks must grow to hold one; the zip member cannot seek back.
    lines = [perf_line(f"F19Q1{k // 7:07d}", (2019 + k % 7 // 12) * 100 + k % 7 + 1, str(k % 4)) for k in range(500)]
    path = write(tmp_path / "sample_svcg_2019.txt", lines, end="")  # no line end after the last line
    archive = tmp_path / "sample_2019.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(path, "sample_svcg_2019.txt")
    plain = read_all(path, block_size=block_size)
    zipped = read_all(Source(archive, "sample_svcg_2019.txt"), block_size=block_size)
    expected = [int(line.split("|")[1]) for line in lines]
    assert plain["period"].tolist() == expected and zipped["period"].tolist() == expected
    assert plain["loan_id"].tolist() == zipped["loan_id"].tolist() == [line.split("|")[0] for line in lines]


def test_reads_a_zip_member(tmp_path):
    archive = tmp_path / "sample_2019.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("sample_orig_2019.txt", REAL_ORIG + "\n")
        z.writestr("sample_svcg_2019.txt", "\n".join(REAL_PERF) + "\n")
    assert read_origination(Source(archive, "sample_orig_2019.txt"))["loan_id"].tolist() == ["F19Q10000001"]
    assert len(read_all(Source(archive, "sample_svcg_2019.txt"))) == 2


# ---------------------------------------------------------------------------------------------------------------------
# Finding file pairs
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("sample_orig_2019.txt", ("2019", "origination")),
        ("sample_svcg_2019.txt", ("2019", "performance")),
        ("sample_perf_2026.txt", ("2026", "performance")),
        ("historical_data_2020Q1.txt", ("2020Q1", "origination")),
        ("historical_data_time_2020Q1.txt", ("2020Q1", "performance")),
        ("historical_data_excl_2020Q1.txt", ("2020Q1_excl", "origination")),
        ("historical_data_excl_time_2020Q1.txt", ("2020Q1_excl", "performance")),
        ("historical_data_time_excl_2020Q1.txt", ("2020Q1_excl", "performance")),
        ("truth.csv", None),
        ("sample_2019.zip", None),
    ],
)
def test_classify_names(name, expected):
    assert classify(name) == expected


def test_finds_plain_zipped_and_nested_pairs(tmp_path):
    write(tmp_path / "sample_orig_2019.txt", [REAL_ORIG])
    write(tmp_path / "sample_svcg_2019.txt", REAL_PERF)
    with zipfile.ZipFile(tmp_path / "sample_2020.zip", "w") as z:
        z.writestr("sample_orig_2020.txt", REAL_ORIG + "\n")
        z.writestr("sample_svcg_2020.txt", REAL_PERF[0] + "\n")
    nested = tmp_path / "full" / "2021"
    nested.mkdir(parents=True)
    write(nested / "historical_data_2021Q3.txt", [REAL_ORIG])
    write(nested / "historical_data_time_2021Q3.txt", REAL_PERF)
    write(tmp_path / "truth.csv", ["loan_id,true_pd,corrupted,corruption"])

    pairs = find_file_pairs(folder=tmp_path)
    assert [p.vintage_label for p in pairs] == ["2019", "2020", "2021Q3"]
    zipped = pairs[1]
    assert zipped.origination == Source(tmp_path / "sample_2020.zip", "sample_orig_2020.txt")
    with zipped.performance.open() as stream:
        assert stream.read().decode().strip() == REAL_PERF[0]
    assert zipped.performance.size() == len(REAL_PERF[0]) + 1
    assert pairs[2].performance.path == nested / "historical_data_time_2021Q3.txt"


def test_explicit_pair(tmp_path):
    orig = write(tmp_path / "my_orig.txt", [REAL_ORIG])
    perf = write(tmp_path / "my_perf.txt", REAL_PERF)
    assert find_file_pairs(orig, perf) == [FilePair("my_orig", Source(orig), Source(perf))]
    with pytest.raises(FreddieFileError, match="no such file"):
        find_file_pairs(orig, tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="both"):
        find_file_pairs(orig)


def test_missing_partner_is_an_error_naming_the_file(tmp_path):
    write(tmp_path / "sample_orig_2019.txt", [REAL_ORIG])
    write(tmp_path / "sample_orig_2020.txt", [REAL_ORIG])
    write(tmp_path / "sample_svcg_2020.txt", REAL_PERF)
    with pytest.raises(FreddieFileError, match=r"sample_orig_2019\.txt: its performance file \(vintage 2019\)"):
        find_file_pairs(folder=tmp_path)


def test_performance_without_origination_is_an_error(tmp_path):
    write(tmp_path / "historical_data_time_2020Q2.txt", REAL_PERF)
    with pytest.raises(FreddieFileError, match=r"historical_data_time_2020Q2\.txt: its origination file"):
        find_file_pairs(folder=tmp_path)


def test_same_vintage_twice_is_an_error(tmp_path):
    write(tmp_path / "sample_orig_2019.txt", [REAL_ORIG])
    write(tmp_path / "sample_svcg_2019.txt", REAL_PERF)
    with zipfile.ZipFile(tmp_path / "sample_2019.zip", "w") as z:
        z.writestr("sample_orig_2019.txt", REAL_ORIG + "\n")
        z.writestr("sample_svcg_2019.txt", REAL_PERF[0] + "\n")
    with pytest.raises(FreddieFileError, match="found twice"):
        find_file_pairs(folder=tmp_path)


def test_folder_without_freddie_files(tmp_path):
    write(tmp_path / "notes.txt", ["hello"])
    with pytest.raises(FreddieFileError, match="no Freddie Mac files"):
        find_file_pairs(folder=tmp_path)


def test_origination_in_chunks_equals_the_whole_file_and_finds_duplicates_across_chunks(tmp_path):
    """Block size and chunk size small enough that the file comes in several pieces."""
    ids = [f"F19Q1{i:07d}" for i in range(300)]
    lines = [orig_line(loan_id=i, credit_score=600 + k % 200) for k, i in enumerate(ids)]
    path = write(tmp_path / "o.txt", lines)
    whole = read_origination(path)
    chunks = list(iter_origination(path, chunk_rows=70, block_size=4096))
    assert len(chunks) > 3 and all(len(frame) == len(at) for frame, at in chunks)
    pd.testing.assert_frame_equal(pd.concat([f for f, _ in chunks], ignore_index=True), whole, check_exact=True)
    assert np.concatenate([at for _, at in chunks]).tolist() == list(range(1, 301))

    spoiled = write(tmp_path / "d.txt", [*lines, lines[3], lines[250]])  # duplicates far from their first lines
    with pytest.raises(FreddieFormatError, match=r"line 301.*duplicate loan id \(first on line 4\)"):
        list(iter_origination(spoiled, chunk_rows=70, block_size=4096))
    skipped = SkipLog()
    frames = [
        f for f, _ in iter_origination(spoiled, on_bad_row="skip", skipped=skipped, chunk_rows=70, block_size=4096)
    ]
    assert sum(map(len, frames)) == 300 and skipped.counts == {"duplicate loan id": 2}
