"""Preprocessor: train-only fitting, single loan == batch row, JSON round trip, missing/invalid values, SATO, clipping."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from loan_default.core import features as ft
from loan_default.core.preprocess import Preprocessor
from loan_default.freddie.schema import ORIGINATION_FIELDS, Kind

STATES = ["CA", "FL", "TX", "IL", "PA", "OH", "MI", "NC"]
SELLERS = ["Bank A", "Bank B", "Lender C", "Other sellers"]


def make_loans(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """A loan table as the labeller writes it: numbers float64 + NaN, codes str + None, label and truth columns."""
    rng = np.random.default_rng(seed)

    def pick(values, p=None, missing=0.0):
        out = rng.choice(np.asarray(values, dtype=object), n, p=p)
        out[rng.random(n) < missing] = None
        return out

    def holes(values, share):
        values = values.astype(float)
        values[rng.random(n) < share] = np.nan
        return values

    year, month = rng.integers(2003, 2009, n), rng.integers(1, 13, n)
    term = rng.choice([360, 180, 240, 120, 300], n, p=[0.8, 0.1, 0.05, 0.03, 0.02])
    start = year * 12 + month - 1
    end = start + term - 1 + (rng.random(n) < 0.01)  # a few terms that disagree with the dates
    ltv = rng.integers(20, 98, n).astype(float)
    rate = 5.5 + 0.15 * (year - 2003) + rng.normal(0, 0.4, n).round(3)
    score = rng.normal(730, 50, n).round().clip(300, 850)
    score[:5] = 7580  # corrupted: outside the valid range
    dti = holes(rng.integers(10, 64, n), 0.02)
    dti[5:8] = 70  # out of range (Freddie reports > 65 as 999)
    df = pd.DataFrame(
        {
            "credit_score": holes(score, 0.01),
            "first_payment_date": (year * 100 + month).astype(float),
            "first_time_homebuyer": pick(["N", "Y"], [0.8, 0.2], missing=0.02),
            "maturity_date": (end // 12 * 100 + end % 12 + 1).astype(float),
            "msa": pick(["43580", "31080", "16980", "19100", "99999"], [0.3, 0.3, 0.2, 0.195, 0.005], missing=0.1),
            "mi_pct": holes(np.where(ltv > 80, rng.choice([12, 25, 30], n), 0), 0.01),
            "num_units": rng.choice([1, 2, 3, 4], n, p=[0.97, 0.02, 0.005, 0.005]).astype(float),
            "occupancy": pick(["P", "I", "S"], [0.85, 0.1, 0.05], missing=0.01),
            "cltv": ltv + np.where(rng.random(n) < 0.1, rng.integers(1, 20, n), 0),
            "dti": dti,
            "orig_upb": np.round(rng.lognormal(12, 0.5, n), -3),
            "ltv": ltv,
            "orig_rate": rate,
            "channel": pick(["R", "B", "C", "T"], [0.6, 0.2, 0.19, 0.01], missing=0.02),
            "ppm_flag": pick(["N", "Y"], [0.995, 0.005]),
            "amortization_type": pick(["FRM"]),
            "property_state": pick([*STATES, "GU"], [0.12] * 8 + [0.04]),
            "property_type": pick(["SF", "CO", "PU", "MH"], [0.7, 0.1, 0.18, 0.02], missing=0.01),
            "postal_code": pick([f"{z}00" for z in range(100, 110)]),
            "loan_id": [f"F{y % 100:02d}Q1{i:07d}" for i, y in enumerate(year)],
            "loan_purpose": pick(["P", "C", "N"], [0.5, 0.3, 0.2]),
            "orig_term": term.astype(float),
            "num_borrowers": holes(rng.choice([1, 2], n), 0.01),
            "seller_name": pick(SELLERS, [0.4, 0.3, 0.2, 0.1]),
            "servicer_name": pick(["Servicer X", "Other servicers"]),
            "super_conforming": pick(["N", "Y"], [0.95, 0.05]),
            "pre_harp_loan_id": pick([None]),
            "program_indicator": pick(["H", None], [0.1, 0.9]),
            "harp_indicator": pick(["N"]),
            "valuation_method": pick(["2", "1", "3"], [0.8, 0.19, 0.01], missing=0.05),
            "interest_only": pick(["N"]),
            "mi_cancellation": pick(["7", "N"]),
            "vantage_score": np.full(n, np.nan),
        }
    )
    df["default"] = (rng.random(n) < 0.08).astype(np.int8)
    df["vintage_year"], df["vintage_quarter"] = year, (month - 1) // 3 + 1
    df["vintage"] = [f"{y}Q{q}" for y, q in zip(df["vintage_year"], df["vintage_quarter"], strict=True)]
    df["true_pd"] = rng.random(n)
    df["corrupted"] = np.zeros(n, dtype=np.int8)
    return df


def raw_request(row: pd.Series) -> dict:
    """The loan as a REST client would send it: text everywhere, Freddie's sentinel codes for missing values."""
    loan = {}
    for name, f in ORIGINATION_FIELDS.items():
        value = row.get(name)
        if pd.isna(value):
            loan[name] = min(f.missing) if f.missing else ""
        elif f.kind == Kind.INT:
            loan[name] = f"{int(value):03d}"  # zero-padded, as in the files
        else:
            loan[name] = str(value)
    return loan


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return make_loans()


@pytest.fixture(scope="module")
def fitted(loans) -> Preprocessor:
    return Preprocessor(min_frequency=10).fit(loans)


def column(pp: Preprocessor, x_num: np.ndarray, name: str) -> np.ndarray:
    return x_num[:, pp.numeric_names.index(name)]


def test_shapes_dtypes_and_names(fitted, loans):
    x_num, x_cat = fitted.transform(loans)
    assert x_num.dtype == np.float32 and x_cat.dtype == np.int64
    assert x_num.shape == (len(loans), len(fitted.numeric_names))
    assert x_cat.shape == (len(loans), len(fitted.categorical_names)) == (len(loans), 4)
    assert np.isfinite(x_num).all()
    assert (x_cat >= 0).all() and (x_cat < np.asarray(fitted.cat_cardinalities)).all()
    assert len(set(fitted.numeric_names)) == len(fitted.numeric_names)
    assert set(fitted.display_names) == set(fitted.numeric_names) | set(fitted.categorical_names)
    assert fitted.display_names["sato"] == "SATO (rate spread)"
    assert fitted.display_names["credit_score_missing"] == "Credit score missing"
    assert fitted.display_names["occupancy_I"] == "Occupancy: investment"
    # vantage_score is never observed in training: no column for it.
    assert not any(n.startswith("vantage_score") for n in fitted.numeric_names)


def test_every_origination_field_is_used_or_excluded_and_labels_never_are(fitted):
    assert set(ft.INPUT_FIELDS) | set(ft.EXCLUDED_FIELDS) == set(ORIGINATION_FIELDS)
    assert not set(ft.INPUT_FIELDS) & set(ft.EXCLUDED_FIELDS)
    for leaky in ("default", "true_pd", "corrupted", "loan_id", "servicer_name", "first_payment_date", "vintage"):
        assert not any(n == leaky or n.startswith(leaky + "_") for n in fitted.numeric_names + fitted.categorical_names)


def test_label_and_truth_columns_do_not_change_features(fitted, loans):
    other = loans.copy()
    other["default"] = 1 - other["default"]
    other["true_pd"], other["corrupted"] = 0.5, 1
    other["loan_id"], other["servicer_name"], other["vintage"] = "X", "Someone", "1999Q1"
    for a, b in zip(fitted.transform(loans), fitted.transform(other), strict=True):
        np.testing.assert_array_equal(a, b)
    assert Preprocessor(min_frequency=10).fit(other).state() == fitted.state()


def test_fit_sees_only_training_rows(loans):
    train = np.arange(0, len(loans), 3)
    held_out = np.setdiff1d(np.arange(len(loans)), train)
    poisoned = loans.copy()
    for name in ("credit_score", "dti", "orig_upb", "orig_rate", "ltv", "cltv", "mi_pct", "orig_term"):
        poisoned.loc[held_out, name] = 1e9
    poisoned.loc[held_out, "first_payment_date"] = 209912.0
    for name in ("property_state", "seller_name", "msa", "occupancy", "channel", "valuation_method"):
        poisoned.loc[held_out, name] = "NEVER_IN_TRAIN"
    # A categorical dtype keeps the held-out categories after row selection: they must not enter the vocabulary.
    poisoned["seller_name"] = poisoned["seller_name"].astype("category")
    clean = loans.iloc[train].reset_index(drop=True)

    a = Preprocessor(min_frequency=5).fit(poisoned, rows=train)
    b = Preprocessor(min_frequency=5).fit(clean)
    assert a.state() == b.state()
    for x, y in zip(a.transform(clean), b.transform(clean), strict=True):
        np.testing.assert_array_equal(x, y)


def test_single_loan_matches_batch_row_for_raw_and_typed_inputs(fitted, loans):
    sample = loans.iloc[np.r_[0:12, 100:160, 1400:1500]]  # first rows hold corrupted scores and DTI 70
    x_num, x_cat = fitted.transform(sample)
    z_num = fitted.outlier_matrix(sample)
    for i, (_, row) in enumerate(sample.iterrows()):
        for loan in (raw_request(row), row.to_dict()):
            one_num, one_cat = fitted.transform_one(loan)
            assert one_num.shape == (1, x_num.shape[1]) and one_cat.shape == (1, x_cat.shape[1])
            np.testing.assert_array_equal(one_num[0], x_num[i])
            np.testing.assert_array_equal(one_cat[0], x_cat[i])
            np.testing.assert_array_equal(fitted.outlier_matrix_one(loan)[0], z_num[i])


def test_tables_of_raw_strings_object_and_category_dtypes_match_typed_table(fitted, loans):
    typed = loans.iloc[:200]
    expected = fitted.transform(typed)
    raw = pd.DataFrame([raw_request(row) for _, row in typed.iterrows()])  # pandas "str" columns of raw text
    as_object = typed.astype({c: object for c in typed.columns if typed[c].dtype == "str"})
    as_category = typed.astype({c: "category" for c in ("occupancy", "msa", "seller_name", "credit_score")})
    for table in (raw, as_object, as_category):
        for a, b in zip(fitted.transform(table), expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_sentinel_blank_and_out_of_range_values_become_missing(fitted, loans):
    stats = {s["name"]: s for s in fitted.state()["numeric"]}
    cs = stats["credit_score"]
    imputed = np.float32((cs["median"] - cs["mean"]) / cs["std"])
    for value in ("9999", 9999, " ", "", None, math.nan, "7580", 200):
        x_num, _ = fitted.transform_one({"credit_score": value})
        assert column(fitted, x_num, "credit_score_missing")[0] == 1.0, value
        assert column(fitted, x_num, "credit_score")[0] == imputed, value
    x_num, _ = fitted.transform_one({"credit_score": "0750"})
    assert column(fitted, x_num, "credit_score_missing")[0] == 0.0
    assert column(fitted, x_num, "credit_score")[0] == np.float32((750 - cs["mean"]) / cs["std"])

    x_num, _ = fitted.transform(loans)
    # Rows 0-4 hold credit score 7580, rows 5-7 DTI 70: both flagged and imputed.
    assert (column(fitted, x_num, "credit_score_missing")[:5] == 1).all()
    assert (column(fitted, x_num, "dti_missing")[5:8] == 1).all()
    expected_missing = loans["dti"].isna() | (loans["dti"] > 65)
    np.testing.assert_array_equal(column(fitted, x_num, "dti_missing"), expected_missing.to_numpy(np.float32))
    # Code fields: "9" and blank are missing; an invalid code also lands in the missing column.
    for value in ("9", "", None, "Z"):
        x_num, _ = fitted.transform_one({"occupancy": value})
        assert column(fitted, x_num, "occupancy_missing")[0] == 1.0
        assert sum(column(fitted, x_num, f"occupancy_{c}")[0] for c in "PIS") == 0
    # Flags whose blank means "N".
    x_num, _ = fitted.transform_one({"super_conforming": ""})
    assert column(fitted, x_num, "super_conforming_N")[0] == 1.0


def test_indicators_exist_for_schema_sentinels_even_without_training_gaps(loans):
    complete = loans.dropna(subset=["mi_pct", "num_borrowers", "dti", "credit_score"])
    complete = complete[(complete["dti"] <= 65) & (complete["credit_score"] <= 850)]
    pp = Preprocessor().fit(complete)
    # mi_pct has sentinel 999, so serving may send it: the indicator exists although training had no gap.
    assert "mi_pct_missing" in pp.numeric_names and "credit_score_missing" in pp.numeric_names
    # orig_rate has no sentinel code and no gap: no indicator.
    assert "orig_rate_missing" not in pp.numeric_names
    x_num, _ = pp.transform_one({"mi_pct": "999"})
    assert column(pp, x_num, "mi_pct_missing")[0] == 1.0


def test_outlier_matrix_keeps_extreme_values(fitted, loans):
    z = fitted.outlier_matrix(loans)
    stats = {s["name"]: s for s in fitted.state()["numeric"]}
    names = fitted.outlier_names
    assert names == ["credit_score", "ltv", "dti", "orig_upb", "sato", "cltv_below_ltv", "dti_zero"]
    assert z.shape == (len(loans), len(names)) and z.dtype == np.float32
    cs = stats["credit_score"]
    j = names.index("credit_score")
    np.testing.assert_array_equal(z[:5, j], np.float32((7580 - cs["mean"]) / cs["std"]))
    assert (z[:5, j] > 50).all()  # stands far out, unlike the model features, which clip and impute it
    upb = stats["orig_upb"]
    expected = (np.log1p(loans["orig_upb"].to_numpy()) - upb["mean"]) / upb["std"]
    np.testing.assert_allclose(z[:, names.index("orig_upb")], expected, rtol=1e-6)
    # Sentinel codes are still missing (imputed median), not numbers, from a request or a numeric table column.
    imputed = np.float32((cs["median"] - cs["mean"]) / cs["std"])
    assert fitted.outlier_matrix_one({"credit_score": "9999"})[0, j] == imputed
    with_codes = loans.iloc[:3].assign(credit_score=9999.0, ltv=999.0, cltv=80.0, dti=999.0)
    z = fitted.outlier_matrix(with_codes)
    assert (z[:, j] == imputed).all()
    dti = stats["dti"]
    assert (z[:, names.index("dti")] == np.float32((dti["median"] - dti["mean"]) / dti["std"])).all()
    # LTV "999" is missing, not 919 points above CLTV; DTI "999" is missing, not zero.
    assert (z[:, names.index("cltv_below_ltv")] == 0).all() and (z[:, names.index("dti_zero")] == 0).all()


def test_outlier_matrix_rate_spread_and_consistency_checks_against_hand_computation(fitted, loans):
    bad = loans.iloc[:40].copy()
    bad["orig_rate"] = bad["orig_rate"].to_numpy() * np.r_[np.full(10, 10.0), np.ones(30)]  # a rate x10: 55-75%
    bad["cltv"] = np.r_[np.full(10, np.nan), np.rint(bad["ltv"].to_numpy()[10:20] * 0.3), bad["cltv"].to_numpy()[20:]]
    bad["dti"] = np.r_[bad["dti"].to_numpy()[:20], np.zeros(10), bad["dti"].to_numpy()[30:]]
    z = fitted.outlier_matrix(bad)
    names = fitted.outlier_names
    # SATO from the raw rate (not dropped as out of range) minus the mean valid training rate of the month.
    valid = loans["orig_rate"].where(loans["orig_rate"] <= 30)
    month_mean = valid.groupby(loans["first_payment_date"]).mean()
    s = {s["name"]: s for s in fitted.state()["numeric"]}["sato"]
    spread = bad["orig_rate"] - bad["first_payment_date"].map(month_mean)
    np.testing.assert_allclose(z[:, names.index("sato")], (spread - s["mean"]) / s["std"], rtol=1e-5, atol=1e-5)
    assert (z[:10, names.index("sato")] > 20).all()
    shortfall = np.maximum(bad["ltv"] - bad["cltv"], 0).fillna(0).to_numpy()
    np.testing.assert_array_equal(z[:, names.index("cltv_below_ltv")], shortfall.astype(np.float32))
    assert (shortfall[10:20] > 0).all() and (shortfall[np.r_[0:10, 20:40]] == 0).all()
    np.testing.assert_array_equal(z[:, names.index("dti_zero")], np.r_[np.zeros(20), np.ones(10), np.zeros(10)])
    for i, (_, row) in enumerate(bad.iterrows()):
        np.testing.assert_array_equal(fitted.outlier_matrix_one(raw_request(row))[0], z[i])


def test_unseen_rare_and_missing_categories_map_to_zero(fitted, loans):
    vocab = fitted.state()["vocab"]  # value vocab[i] has id i + 1
    assert "GU" in vocab["property_state"]  # 4% of 1500 = ~60 loans >= 10: kept
    assert vocab["property_state"][0] in STATES
    assert "99999" not in vocab["msa"]  # ~8 loans < min_frequency 10: rare
    _, x_cat = fitted.transform(loans)
    j = fitted.categorical_names.index("msa")
    rare_or_missing = loans["msa"].isna() | (loans["msa"] == "99999")
    assert (x_cat[rare_or_missing.to_numpy(), j] == 0).all() and (x_cat[~rare_or_missing.to_numpy(), j] > 0).all()
    for value in ("ZZ", "", None):
        _, one = fitted.transform_one({"property_state": value})
        assert one[0, 0] == 0
    _, one = fitted.transform_one({"property_state": vocab["property_state"][0], "msa": 43580})
    assert one[0, 0] == 1 and one[0, j] == vocab["msa"].index("43580") + 1
    # ids follow descending training frequency
    counts = loans["seller_name"].value_counts()
    assert vocab["seller_name"] == list(counts.index)
    assert fitted.cat_cardinalities == [len(vocab[f]) + 1 for f in fitted.categorical_names]


def test_sato_against_hand_computation():
    fpd = np.array([200601, 200601, 200603, 200603, 200603, np.nan, 200605])
    rate = np.array([6.0, 7.0, 5.0, 5.5, np.nan, 6.0, 4.0])
    table = ft.RateTable.fit(fpd, rate)
    # Jan: (6+7)/2; Mar: (5+5.5)/2 (NaN rate ignored); May: 4.
    queries = np.array([200601, 200603, 200605, 200602, 200604, 200512, 200701, np.nan])
    # 200602 and 200604 are one month from two known months: the earlier wins; outside the range: nearest end.
    expected = np.array([6.5, 5.25, 4.0, 6.5, 5.25, 6.5, 4.0, np.nan])
    np.testing.assert_array_equal(table.lookup(queries), expected)


def test_sato_column_matches_grouped_means(loans):
    train, test = loans.iloc[:1000], loans.iloc[1000:]
    pp = Preprocessor(clip_quantiles=(0.0, 1.0)).fit(train)
    means = train.groupby("first_payment_date")["orig_rate"].mean()
    expected = test["orig_rate"] - test["first_payment_date"].map(means)
    assert expected.notna().all()  # every month of the test rows appears in training at this size
    s = {s["name"]: s for s in pp.state()["numeric"]}["sato"]
    x_num, _ = pp.transform(test)
    # clip_quantiles (0, 1) clips to the training range of SATO
    expected = expected.clip(s["clip_low"], s["clip_high"])
    np.testing.assert_allclose(column(pp, x_num, "sato") * s["std"] + s["mean"], expected, atol=1e-5)


def test_clipping_scaling_and_imputation_match_sklearn_reference(loans):
    train, test = loans.iloc[:1000], loans.iloc[1000:]
    pp = Preprocessor(clip_quantiles=(0.05, 0.95)).fit(train)
    x_num, _ = pp.transform(test)
    for name in ("ltv", "orig_rate", "dti"):
        f = ORIGINATION_FIELDS[name]
        values = train[name].where(train[name].between(f.low, f.high)).to_numpy()  # out of range -> missing
        low, high = np.nanquantile(values, [0.05, 0.95])
        clipped = np.clip(values, low, high)
        median = np.nanmedian(clipped)
        scaler = StandardScaler().fit(np.where(np.isnan(clipped), median, clipped)[:, None])
        t = test[name].where(test[name].between(f.low, f.high)).to_numpy()
        expected = scaler.transform(np.where(np.isnan(t), median, np.clip(t, low, high))[:, None])[:, 0]
        np.testing.assert_allclose(column(pp, x_num, name), expected, rtol=1e-5, atol=1e-5)
        assert column(pp, x_num, name).max() <= np.float32((high - scaler.mean_[0]) / scaler.scale_[0]) + 1e-6


def test_engineered_flags(fitted):
    x_num, _ = fitted.transform_one(
        {
            "orig_term": "240",
            "first_payment_date": "200601",
            "maturity_date": "202512",
            "occupancy": "I",
            "loan_purpose": "C",
            "first_time_homebuyer": "Y",
            "ltv": "90",
            "mi_pct": "000",
        }
    )
    flags = {name: column(fitted, x_num, name)[0] for name in ft.ENGINEERED_FLAGS}
    assert flags == {
        "term_le_180": 0, "term_240": 1, "term_360": 0, "term_other": 0, "first_time_buyer_primary": 0,
        "first_time_buyer_not_primary": 1, "investor_cash_out": 1, "has_mi": 0, "high_ltv_no_mi": 1,
        "term_mismatch": 0,
    }  # fmt: skip
    x_num, _ = fitted.transform_one({"orig_term": "360", "first_payment_date": "200601", "maturity_date": "203512"})
    assert column(fitted, x_num, "term_mismatch")[0] == 0
    x_num, _ = fitted.transform_one({"orig_term": "360", "first_payment_date": "200601", "maturity_date": "203601"})
    assert column(fitted, x_num, "term_mismatch")[0] == 1


def test_save_load_round_trip_is_bitwise_identical(fitted, loans, tmp_path):
    probe = loans.iloc[:300].copy()
    probe.loc[probe.index[:20], "property_state"] = "ZZ"  # unknown category
    probe.loc[probe.index[20:40], ["credit_score", "dti", "orig_rate"]] = np.nan
    probe.loc[probe.index[40:50], "first_payment_date"] = 203001.0  # month unseen in training
    old_mask = os.umask(0o022)
    try:
        path = fitted.save(tmp_path / "bundle")
    finally:
        os.umask(old_mask)
    assert path.name == "preprocessor.json" and sorted(p.name for p in path.parent.iterdir()) == ["preprocessor.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by a server running as another user
    state = json.loads(path.read_text())
    assert state["format_version"] == 2
    loaded = Preprocessor.load(tmp_path / "bundle")
    assert loaded.state() == fitted.state()
    assert loaded.numeric_names == fitted.numeric_names and loaded.display_names == fitted.display_names
    for a, b in zip(loaded.transform(probe), fitted.transform(probe), strict=True):
        assert a.tobytes() == b.tobytes()
    assert loaded.outlier_matrix(probe).tobytes() == fitted.outlier_matrix(probe).tobytes()

    state["numeric_names"] = state["numeric_names"][::-1]  # written by code that orders columns differently
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="feature columns differ"):
        Preprocessor.load(tmp_path / "bundle")
    state["format_version"] = 99
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="format version 99"):
        Preprocessor.load(tmp_path / "bundle")


def test_display_name_overrides_and_feature_schema(loans):
    pp = Preprocessor(display_names={"sato": "Rate spread", "not_a_feature": "x"}).fit(loans)
    assert pp.display_names["sato"] == "Rate spread" and "not_a_feature" not in pp.display_names
    schema = json.loads(json.dumps(pp.feature_schema()))  # JSON-serialisable
    assert set(schema) == set(ft.INPUT_FIELDS)
    cs = schema["credit_score"]
    assert (cs["kind"], cs["low"], cs["high"], cs["missing_codes"], cs["role"]) == (
        "int",
        300,
        850,
        ["9999"],
        "numeric",
    )
    assert schema["occupancy"]["codes"] == ["I", "P", "S"] and schema["occupancy"]["missing_codes"] == ["9"]
    assert schema["super_conforming"]["blank_means"] == "N"


def test_errors(loans):
    with pytest.raises(RuntimeError, match="not fitted"):
        Preprocessor().transform(loans)
    with pytest.raises(ValueError, match="clip_quantiles"):
        Preprocessor(clip_quantiles=(0.9, 0.1))
    with pytest.raises(ValueError, match=r"dti: expected an integer .*'abc'"):
        Preprocessor().fit(loans).transform_one({"dti": "abc"})


def test_missing_columns_count_as_missing(fitted, loans):
    thin = loans.drop(columns=["msa", "dti", "super_conforming"])
    x_num, x_cat = fitted.transform(thin)
    assert (column(fitted, x_num, "dti_missing") == 1).all()
    assert (column(fitted, x_num, "super_conforming_N") == 1).all()  # blank means "N"
    assert (x_cat[:, fitted.categorical_names.index("msa")] == 0).all()


def test_fitting_by_chunks_of_given_rows_equals_fitting_the_copied_rows(loans):
    """fit reads the table in chunks (bounded memory): same state as one pass over a copy of the rows."""
    rows = np.flatnonzero(np.arange(len(loans)) % 3 != 0)
    whole = Preprocessor().fit(loans.iloc[rows], chunk=len(loans))
    chunked = Preprocessor().fit(loans, rows=rows, chunk=97)
    assert chunked.state() == whole.state()
    # Independent reference for the counted fields: pandas' counts over the copied rows, most frequent first.
    counts = loans["seller_name"].iloc[rows].value_counts()
    expected = sorted(counts[counts >= 20].index, key=lambda v: (-counts[v], v))
    assert chunked.state()["vocab"]["seller_name"] == expected
    np.testing.assert_array_equal(
        whole.outlier_matrix(loans.iloc[rows]), chunked.outlier_matrix(loans, chunk=101)[rows]
    )
