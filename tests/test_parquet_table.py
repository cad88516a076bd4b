"""The prepared loan table (python -m loan_default.prep): the same table as reading the raw files, written atomically,
read back from a folder or an fsspec URI, and trained from with data=parquet."""

from __future__ import annotations

import json
import stat
from dataclasses import asdict
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from conftest import compose_train_cfg
from hydra.utils import instantiate

from loan_default.freddie.labels import LabelConfig
from loan_default.freddie.loans import load_loan_table
from loan_default.prep import table as prep_table
from loan_default.prep.__main__ import main as prep_main
from loan_default.prep.source import load_prepared_table
from loan_default.prep.table import TableError, read_loan_table, read_manifest
from loan_default.training.datamodule import LoanDataModule

LOANS = 3000


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    from loan_default.synthetic.generate import ensure_synthetic

    folder = tmp_path_factory.mktemp("raw") / "freddie"
    ensure_synthetic(folder, loans=LOANS, seed=5)
    return folder


@pytest.fixture(scope="module")
def prepared(raw: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "loans"
    assert prep_main([str(raw), "--out", str(out)]) == 0
    return out


def test_table_equals_the_raw_files_read_directly(raw: Path, prepared: Path) -> None:
    expected, report = load_loan_table(folder=raw)
    got, manifest = read_loan_table(prepared)
    assert len(expected) > 0.9 * LOANS and expected["default"].sum() > 50
    # Same loans in the same order, same labels, fields and dtypes (nullable strings and Int8/int8 included).
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert manifest["report"] == json.loads(json.dumps(report.to_dict()))


def test_manifest_records_label_sources_and_partitions(raw: Path, prepared: Path) -> None:
    manifest = read_manifest(str(prepared))
    assert manifest["label"] == json.loads(json.dumps(asdict(LabelConfig())))
    raw_files = sorted(p for p in raw.iterdir() if p.suffix == ".txt" or p.name == "truth.csv")
    assert sorted(Path(s["path"]) for s in manifest["sources"]) == raw_files
    assert all(s["bytes"] == Path(s["path"]).stat().st_size for s in manifest["sources"])
    vintages = sorted({s["vintage"] for s in manifest["sources"] if s["role"] == "origination"})
    assert [p["vintage"] for p in manifest["partitions"]] == vintages
    counts = load_loan_table(folder=raw)[0].groupby("vintage_year").size()
    assert {int(p["vintage"]): p["rows"] for p in manifest["partitions"]} == counts.to_dict()
    for path in [prepared, *prepared.rglob("*")]:  # readable by other users
        assert stat.S_IMODE(path.stat().st_mode) & 0o444 == 0o444, path
    assert sorted(p.name for p in prepared.parent.iterdir()) == ["loans"], "no temporary folder left behind"


def test_reads_through_fsspec_uris(prepared: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.put(str(prepared), "memory://tables/loans", recursive=True)
    try:
        via_uri, _ = read_loan_table("memory://tables/loans")
        pd.testing.assert_frame_equal(via_uri, read_loan_table(prepared)[0])
        via_file_uri, _ = read_loan_table(f"file://{prepared}")
        pd.testing.assert_frame_equal(via_file_uri, via_uri)
    finally:
        fs.rm("memory://tables", recursive=True)


def test_abfss_uris_resolve_to_adlfs_when_installed() -> None:
    pytest.importorskip("adlfs")
    fs, where = prep_table._filesystem("abfss://data@account.dfs.core.windows.net/tables/loans")
    assert type(fs).__name__ == "AzureBlobFileSystem" and where == "data/tables/loans"


def test_existing_table_is_kept_until_the_new_one_is_complete(raw: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "loans"
    assert prep_main([str(raw), "--out", str(out)]) == 0
    before, _ = read_loan_table(out)
    assert prep_main([str(raw), "--out", str(out)]) == 2, "an existing table is not replaced without --overwrite"

    calls = []

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    real = prep_table.pq.write_table
    monkeypatch.setattr(prep_table.pq, "write_table", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        prep_main([str(raw), "--out", str(out), "--overwrite", "--horizon-months", "12"])
    pd.testing.assert_frame_equal(read_loan_table(out)[0], before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loans"], "no temporary folder left behind"


def test_label_options_reach_the_table_and_its_manifest(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "whole-history"
    args = ["--horizon-months", "none", "--min-dpd-months", "2", "--keep-censored", "--credit-event-codes", "02", "09"]
    assert prep_main([str(raw), "--out", str(out), *args]) == 0
    label = LabelConfig(horizon_months=None, min_dpd_months=2, credit_event_codes=("02", "09"), keep_censored=True)
    got, manifest = read_loan_table(out)
    pd.testing.assert_frame_equal(got, load_loan_table(folder=raw, label=label)[0], check_exact=True)
    assert LabelConfig(**manifest["label"]) == label


def test_other_label_settings_than_the_tables_are_refused(prepared: Path) -> None:
    load_prepared_table(prepared, LabelConfig())
    with pytest.raises(ValueError, match=r"horizon_months=12 \(table: 24\)"):
        load_prepared_table(prepared, LabelConfig(horizon_months=12))


def test_missing_or_foreign_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="no manifest.json"):
        read_loan_table(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(TableError, match="not a loan-default-table"):
        read_loan_table(tmp_path)


def test_training_from_the_table_sees_the_raw_table_and_splits(raw: Path, prepared: Path, tmp_path: Path) -> None:
    common = {"split": {"method": "stratified", "stratify_vintage": True}, "seed": 3}
    from_raw = LoanDataModule(source="freddie", folder=str(raw), cache_dir=None, **common)
    from_table = LoanDataModule(source="parquet", path=str(prepared), **common)
    from_raw.setup()
    from_table.setup()
    pd.testing.assert_frame_equal(from_table.table, from_raw.table, check_exact=True)
    for split in ("train", "val", "test"):
        assert (from_table.split_index[split] == from_raw.split_index[split]).all()
    assert from_table.load_report["labelled"] == from_raw.load_report["labelled"]

    cfg = compose_train_cfg(tmp_path, tmp_path, ["data=parquet", f"data.path={prepared}"])
    dm = instantiate(cfg.data, sampler=dict(cfg.sampler), outlier=dict(cfg.outlier), _convert_="all")
    assert (dm.source, dm.path, dm.label_given) == ("parquet", str(prepared), False)
    with pytest.raises(ValueError, match="data.path"):
        LoanDataModule(source="parquet")
