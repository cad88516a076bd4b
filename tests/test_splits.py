"""split_loans / describe_splits: determinism, stratification, out-of-time ordering, coverage, clear errors."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from loan_default.training.splits import describe_splits, split_loans


def make_table(n: int = 4000, seed: int = 0, years: range = range(2003, 2011)) -> pd.DataFrame:
    """Vintages of uneven size, default rates from 2% to 14% by year."""
    rng = np.random.default_rng(seed)
    weights = np.linspace(1, 3, len(years))
    year = rng.choice(np.asarray(years), n, p=weights / weights.sum())
    quarter = rng.integers(1, 5, n)
    rate = 0.02 + 0.12 * (year - years[0]) / (len(years) - 1)
    return pd.DataFrame(
        {
            "default": (rng.random(n) < rate).astype(np.int8),
            "vintage_year": year,
            "vintage_quarter": quarter,
            "vintage": [f"{y}Q{q}" for y, q in zip(year, quarter, strict=True)],
        }
    )


def assert_partition(idx: dict[str, np.ndarray], n: int) -> None:
    """The three splits are sorted row positions, pairwise disjoint, and together exactly the table's rows 0..n-1."""
    assert set(idx) == {"train", "val", "test"}
    for rows in idx.values():
        assert rows.dtype.kind == "i" and (np.diff(rows) > 0).all()
    names = list(idx)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.intersect1d(idx[a], idx[b]).size, f"{a} and {b} share rows"
    union = np.sort(np.concatenate(list(idx.values())))
    np.testing.assert_array_equal(union, np.arange(n), err_msg="the splits together must be exactly the table's rows")


def test_assert_partition_catches_gaps_overlaps_and_foreign_rows():
    good = {"train": np.array([0, 2, 4]), "val": np.array([1]), "test": np.array([3, 5])}
    assert_partition(good, 6)
    broken = [
        {**good, "test": np.array([3])},  # row 5 in no split
        {**good, "val": np.array([1, 2])},  # row 2 in two splits
        {**good, "test": np.array([3, 6])},  # row 6 is not in the table, row 5 missing: the counts still match
    ]
    for idx in broken:
        with pytest.raises(AssertionError):
            assert_partition(idx, 6)


def quarter_key(df: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    return (df["vintage_year"] * 10 + df["vintage_quarter"]).to_numpy()[rows]


def test_stratified_is_deterministic_disjoint_covering_and_sized():
    df = make_table()
    a, b, c = (split_loans(df, seed=s) for s in (7, 7, 8))
    assert_partition(a, len(df))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["test"], c["test"])
    assert len(a["test"]) == pytest.approx(0.15 * len(df), abs=1)
    assert len(a["val"]) == pytest.approx(0.15 * len(df), abs=2)


def test_stratified_keeps_default_rate():
    df = make_table()
    idx = split_loans(df, val_fraction=0.2, test_fraction=0.1, seed=3)
    y = df["default"].to_numpy()
    for rows in idx.values():
        # sklearn allocates positives in proportion, within one loan of the exact share
        assert abs(y[rows].sum() - y.mean() * len(rows)) <= 1.0 + 1e-9


def test_stratify_vintage_keeps_each_vintage_share():
    df = make_table()
    idx = split_loans(df, stratify_vintage=True, vintage_unit="year", seed=1)
    assert_partition(idx, len(df))
    year, y = df["vintage_year"].to_numpy(), df["default"].to_numpy()
    for v in np.unique(year):
        in_v = year == v
        for name, frac in (("test", 0.15), ("val", 0.15)):
            share = in_v[idx[name]].sum() / in_v.sum()
            assert share == pytest.approx(frac, abs=0.02), (v, name)
            assert (y[idx[name]] * in_v[idx[name]]).sum() == pytest.approx(frac * y[in_v].sum(), abs=2)


def test_stratify_vintage_copes_with_tiny_strata():
    df = make_table(n=600)
    df.loc[0, ["vintage_year", "vintage_quarter", "vintage"]] = [1999, 1, "1999Q1"]  # a one-loan vintage
    idx = split_loans(df, stratify_vintage=True, seed=0)  # by quarter: many small strata
    assert_partition(idx, len(df))


def test_out_of_time_orders_vintages_and_follows_loan_shares():
    df = make_table(n=8000)
    idx = split_loans(df, method="out_of_time", val_fraction=0.15, test_fraction=0.15)
    assert_partition(idx, len(df))
    train, val, test = (quarter_key(df, idx[s]) for s in ("train", "val", "test"))
    assert train.max() < val.min() <= val.max() < test.min()
    # whole quarters move, so shares are approximate (each quarter is ~1/32 of the loans)
    for name, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        assert len(idx[name]) / len(df) == pytest.approx(frac, abs=0.05), name


def test_out_of_time_by_year_and_at_least_one_vintage_each():
    df = make_table(n=3000, years=range(2005, 2008))
    idx = split_loans(df, method="out_of_time", vintage_unit="year", val_fraction=0.05, test_fraction=0.05)
    assert_partition(idx, len(df))
    years = {s: set(df["vintage_year"].to_numpy()[idx[s]]) for s in idx}
    assert years == {"train": {2005}, "val": {2006}, "test": {2007}}


def test_out_of_time_explicit_vintages():
    df = make_table()
    idx = split_loans(
        df,
        method="out_of_time",
        train_vintages=[2003, 2004, "2005"],
        val_vintages=["2006Q1", "2006Q2"],
        test_vintages=[2008],
    )
    year, vintage = df["vintage_year"].to_numpy(), df["vintage"].to_numpy()
    np.testing.assert_array_equal(idx["train"], np.flatnonzero(year <= 2005))
    np.testing.assert_array_equal(idx["val"], np.flatnonzero(np.isin(vintage, ["2006Q1", "2006Q2"])))
    np.testing.assert_array_equal(idx["test"], np.flatnonzero(year == 2008))


def test_errors():
    df = make_table()
    with pytest.raises(ValueError, match="precede"):
        split_loans(df, method="out_of_time", train_vintages=[2005], val_vintages=[2004], test_vintages=[2008])
    with pytest.raises(ValueError, match="all three"):
        split_loans(df, method="out_of_time", train_vintages=[2005])
    with pytest.raises(ValueError, match="val split is empty"):
        split_loans(df, method="out_of_time", train_vintages=[2005], val_vintages=[1990], test_vintages=[2008])
    no_late_defaults = df.copy()
    no_late_defaults.loc[no_late_defaults["vintage_year"] == 2010, "default"] = 0
    with pytest.raises(ValueError, match="test split .* holds no defaults"):
        split_loans(no_late_defaults, method="out_of_time", vintage_unit="year", test_fraction=0.05)
    with pytest.raises(ValueError, match="at least 3 vintages"):
        split_loans(df[df["vintage_year"] < 2005], method="out_of_time", vintage_unit="year")
    with pytest.raises(ValueError, match="at least 3 defaults"):
        split_loans(df.assign(default=np.r_[1, 1, np.zeros(len(df) - 2)]))
    with pytest.raises(ValueError, match="val_fraction"):
        split_loans(df, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="unknown split method"):
        split_loans(df, method="random")


def test_describe_splits_counts_by_hand(caplog):
    df = pd.DataFrame(
        {
            "default": [1, 0, 0, 0, 1, 1, 0, 0],
            "vintage": ["2004Q1", "2004Q2", "2004Q1", "2005Q1", "2005Q2", "2006Q1", "2006Q1", "2006Q3"],
        }
    )
    idx = {"train": np.array([0, 1, 2, 3]), "val": np.array([4]), "test": np.array([5, 6, 7])}
    with caplog.at_level(logging.INFO, logger="loan_default.training.splits"):
        summary = describe_splits(df, idx)
    assert summary["train"] == {
        "rows": 4, "defaults": 1, "default_rate": 0.25, "first_vintage": "2004Q1", "last_vintage": "2005Q1",
    }  # fmt: skip
    assert summary["val"]["default_rate"] == 1.0 and summary["test"]["defaults"] == 1
    assert summary["test"]["first_vintage"] == "2006Q1" and summary["test"]["last_vintage"] == "2006Q3"
    assert len(caplog.records) == 3 and "25.00%" in caplog.records[0].getMessage()
