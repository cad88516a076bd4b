"""Spark preparation in local mode writes the same loan table as the local engine: same loans, labels, fields, dtypes
(and row order), same label report. One Spark session for the module; a few thousand synthetic loans.

Slow (about a minute on 2 busy cores, most of it Spark's fixed cost): `make test-full` or `pytest -m slow`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("pyspark")

from loan_default.freddie.errors import FreddieFormatError  # noqa: E402
from loan_default.freddie.labels import LabelConfig  # noqa: E402
from loan_default.freddie.loans import load_loan_table  # noqa: E402
from loan_default.prep.local import prepare_local  # noqa: E402
from loan_default.prep.table import read_loan_table, read_manifest  # noqa: E402

pytestmark = pytest.mark.slow
LOANS = 6000


@pytest.fixture(scope="module")
def spark():
    from loan_default.prep.spark import session

    spark = session("local[2]")
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    from loan_default.synthetic.generate import ensure_synthetic

    folder = tmp_path_factory.mktemp("raw") / "freddie"
    ensure_synthetic(folder, loans=LOANS, seed=8)
    return folder


def test_spark_table_equals_the_local_engines(spark, raw: Path, tmp_path: Path) -> None:
    from loan_default.prep.spark import prepare_spark

    out = prepare_spark(str(raw), str(tmp_path / "spark"), master="local[2]")
    got, manifest = read_loan_table(out)
    expected, report = load_loan_table(folder=raw)
    assert len(expected) > 0.9 * LOANS and expected["default"].sum() > 100
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert manifest["report"] == json.loads(json.dumps(report.to_dict()))
    assert (
        manifest["engine"] == "spark"
        and manifest["label"] == read_manifest(str(prepare_local(raw, tmp_path / "local")))["label"]
    )
    # The files themselves, not only what the reader makes of them: the same Parquet column types as the local
    # engine writes (another reader, Spark or DuckDB, sees the same table).
    import pyarrow.parquet as pq

    def parquet_types(path: Path) -> dict:
        schema = pq.ParquetFile(path).schema
        return {c.name: (c.physical_type, str(c.logical_type)) for c in (schema.column(i) for i in range(len(schema)))}

    local_files = sorted((tmp_path / "local").rglob("*.parquet"))
    spark_files = sorted((tmp_path / "spark").rglob("*.parquet"))
    assert len(spark_files) == len(local_files) == len(report.vintages)
    assert parquet_types(spark_files[0]) == parquet_types(local_files[0])


def test_other_label_settings_and_skipped_rows_agree(spark, raw: Path, tmp_path: Path) -> None:
    """Whole-history labels with censored loans kept, on files with bad rows skipped: same table, same counts."""
    from loan_default.prep.spark import prepare_spark

    dirty = tmp_path / "dirty"
    shutil.copytree(raw, dirty)
    orig = sorted(dirty.glob("sample_orig_*.txt"))[1]
    lines = orig.read_text().splitlines()
    fields = lines[5].split("|")
    fields[0] = "7x0"  # credit score not a number
    lines[5] = "|".join(fields)
    lines[9] = "|".join(lines[9].split("|")[:-2])  # wrong field count
    lines.append(lines[20])  # a duplicate loan id
    orig.write_text("\n".join(lines) + "\n")
    perf = sorted(dirty.glob("sample_svcg_*.txt"))[2]
    rows = perf.read_text().splitlines()
    cells = rows[3].split("|")
    cells[1] = "201913"  # not a month
    rows[3] = "|".join(cells)
    perf.write_text("\n".join(rows) + "\n")

    label = LabelConfig(horizon_months=None, keep_censored=True, credit_event_codes=("02", "03"))
    out = prepare_spark(str(dirty), str(tmp_path / "spark"), label, on_bad_row="skip", master="local[2]")
    got, manifest = read_loan_table(out)
    with pytest.warns(UserWarning):
        expected, report = load_loan_table(folder=dirty, label=label, on_bad_row="skip")
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert manifest["report"]["skipped_rows"] == report.skipped_rows
    assert sum(report.skipped_rows.values()) >= 4
    assert manifest["report"] == json.loads(json.dumps(report.to_dict()))

    with pytest.raises(FreddieFormatError, match="credit_score"):
        prepare_spark(str(dirty), str(tmp_path / "refused"), label, on_bad_row="raise", master="local[2]")
    assert not (tmp_path / "refused").exists()
