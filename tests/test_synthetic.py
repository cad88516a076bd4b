"""Synthetic Freddie Mac generator: exact file format, consistent histories, calibrated truth, real non-linearity.

Format checks parse the files with plain ``str.split('|')`` against schema.py; label checks use a tiny reference
labeller written here (independent of the generator), and one round trip goes through the project's reader and labeller.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loan_default.common.months import month_number
from loan_default.freddie import schema
from loan_default.freddie.loans import load_loan_table
from loan_default.synthetic import generate as synthetic
from loan_default.synthetic.generate import (
    MANIFEST,
    PERFORMANCE_LAYOUT_FOR,
    SyntheticArgumentError,
    ensure_synthetic,
    generate,
    main,
    parse_vintages,
)
from loan_default.synthetic.hazard import default_probability
from loan_default.synthetic.loans import CORRUPTIONS, draw_loans, mask_missing
from loan_default.synthetic.paths import simulate_histories
from loan_default.synthetic.text import AtomicWriter, origination_table, performance_table

SMALL, LARGE = 2_000, 20_000
CREDIT_EVENTS = {"02", "03", "09", "15"}
ID_PATTERN = re.compile(r"^F(\d{2})Q([1-4])(\d{7})$")


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("small")
    return folder, generate(folder, SMALL, seed=7)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("large")
    return folder, generate(folder, LARGE, seed=11)


def lines(path: Path) -> list[list[str]]:
    return [line.split("|") for line in path.read_text().splitlines()]


def read_pipe(path: Path, columns: tuple[str, ...], keep: tuple[str, ...] | None = None) -> pd.DataFrame:
    """A pipe-delimited file as raw strings, named by a layout's columns (only ``keep`` ones if given)."""
    wanted = [i for i, name in enumerate(columns) if keep is None or name in keep]
    frame = pd.read_csv(path, sep="|", header=None, dtype=str, keep_default_na=False, usecols=wanted)
    frame.columns = [columns[i] for i in wanted]
    return frame


def read_folder(
    folder: Path, layout: str = "orig32", keep: tuple[str, ...] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All origination and performance rows of a generated folder, as raw strings (plus the file's year)."""
    orig_cols = schema.ORIGINATION_LAYOUTS[layout].columns
    perf_cols = schema.PERFORMANCE_LAYOUTS[PERFORMANCE_LAYOUT_FOR[layout]].columns
    origs, perfs = [], []
    for path in sorted(folder.glob("sample_orig_*.txt")):
        year = int(path.stem[-4:])
        origs.append(read_pipe(path, orig_cols).assign(file_year=year))
        perfs.append(read_pipe(folder / f"sample_svcg_{year}.txt", perf_cols, keep))
    return pd.concat(origs, ignore_index=True), pd.concat(perfs, ignore_index=True)


def numeric(values: pd.Series, missing: tuple[str, ...] = ()) -> np.ndarray:
    """Raw text -> float, with blanks and the given missing codes as NaN."""
    return pd.to_numeric(values.where(~values.isin(("",) + missing)), errors="raise").to_numpy(np.float64)


def reference_labels(orig: pd.DataFrame, perf: pd.DataFrame, horizon: int = 24) -> pd.DataFrame:
    """The contract's default label, written out plainly: per loan `default`, `censored`, `first_default_age`."""
    fpd = orig.set_index("loan_id")["first_payment_date"].astype(int)
    period = perf["period"].astype(int).to_numpy()
    age = month_number(period) - month_number(fpd.loc[perf["loan_id"]].to_numpy()) + 1
    status = perf["delinquency_status"]
    known = ~status.isin(("XX", ""))
    months_late = pd.to_numeric(status.where(known & (status != "RA")), errors="coerce").fillna(0).to_numpy()
    event = (months_late >= 3) | (status == "RA").to_numpy() | perf["zero_balance_code"].isin(CREDIT_EVENTS)
    event_in_horizon = event & (age <= horizon)
    frame = pd.DataFrame(
        {
            "loan_id": perf["loan_id"],
            "event_age": np.where(event_in_horizon, age, np.inf),
            "known_age": np.where(known, age, -np.inf),
            "terminated": perf["zero_balance_code"] != "",
        }
    )
    per_loan = frame.groupby("loan_id").agg(
        first_default_age=("event_age", "min"), last_known=("known_age", "max"), terminated=("terminated", "any")
    )
    per_loan["default"] = np.isfinite(per_loan["first_default_age"])
    per_loan["censored"] = ~per_loan["default"] & ~per_loan["terminated"] & (per_loan["last_known"] < horizon)
    return per_loan


# ---------------------------------------------------------------------------------------------------------------------
# Format: field counts, parseability, value formats
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", sorted(PERFORMANCE_LAYOUT_FOR))
def test_field_counts_and_layout_detection_per_layout(tmp_path: Path, layout: str) -> None:
    summary = generate(tmp_path, 300, seed=1, vintages="2016-2018", layout=layout)
    orig_layout = schema.ORIGINATION_LAYOUTS[layout]
    perf_layout = schema.PERFORMANCE_LAYOUTS[summary["performance_layout"]]
    for year in (2016, 2017, 2018):
        orig = lines(tmp_path / f"sample_orig_{year}.txt")
        perf = lines(tmp_path / f"sample_svcg_{year}.txt")
        assert {len(f) for f in orig} == {orig_layout.n_fields}
        assert {len(f) for f in perf} == {perf_layout.n_fields}
        assert {schema.detect_origination_layout(f).name for f in orig} == {layout}
        assert schema.detect_performance_layout(perf[0]).name == perf_layout.name
    assert sum(len(lines(tmp_path / f"sample_orig_{y}.txt")) for y in (2016, 2017, 2018)) == 300


def _check_field(f: schema.Field, raw: str) -> str | None:
    """What is wrong with a raw value under the schema's parsing rules (None if it parses)."""
    if raw == "" or raw in f.missing:
        return None
    if f.kind is schema.Kind.DATE:
        if not re.fullmatch(r"\d{6}", raw) or not 1 <= int(raw[4:]) <= 12:
            return "bad date"
    elif f.kind is schema.Kind.INT:
        if not re.fullmatch(r"-?\d+", raw):
            return "not an integer"
    elif f.kind is schema.Kind.FLOAT:
        try:
            float(raw)
        except ValueError:
            return "not a number"
    elif f.kind is schema.Kind.CODE and f.codes is not None and raw not in f.codes:
        return "unknown code"
    return None


def test_every_value_parses_with_the_schema_rules(small) -> None:
    folder, _ = small
    problems: Counter[tuple[str, str]] = Counter()
    orig_layout, perf_layout = schema.ORIGINATION_LAYOUTS["orig32"], schema.PERFORMANCE_LAYOUTS["perf32"]
    for path in sorted(folder.glob("sample_*_*.txt")):
        layout = orig_layout if "orig" in path.name else perf_layout
        for fields in lines(path):
            for name, raw in zip(layout.columns, fields, strict=True):
                f = layout.fields[name]
                if name == "delinquency_status":
                    bad = None if raw in ("RA", "XX", "") or raw.isdigit() else "bad status"
                elif name == "net_sale_proceeds":
                    bad = None if raw in ("", "U", "C") else _check_field(schema.PERFORMANCE_FIELDS["expenses"], raw)
                else:
                    bad = _check_field(f, raw)
                if bad:
                    problems[(name, bad)] += 1
    assert not problems, problems


def test_origination_values_look_like_freddie_macs(small) -> None:
    folder, _ = small
    orig, _ = read_folder(folder)
    truth = pd.read_csv(folder / "truth.csv", keep_default_na=False)
    clean = (truth.set_index("loan_id").loc[orig["loan_id"], "corrupted"] == 0).to_numpy()

    ids = orig["loan_id"].str.extract(ID_PATTERN)
    assert ids.notna().all().all(), "loan ids look like F07Q10000001"
    assert orig["loan_id"].is_unique
    # The id's year is the file's vintage; its quarter is the note date's, one to three months before the first payment.
    assert ((2000 + ids[0].astype(int)) == orig["file_year"]).all()
    fpd = orig["first_payment_date"].astype(int).to_numpy()
    quarter_start = (2000 + ids[0].astype(int)) * 12 + (ids[1].astype(int) - 1) * 3
    lag = month_number(fpd) - quarter_start.to_numpy()
    assert lag.min() >= 1 and lag.max() <= 5
    term = orig["orig_term"].astype(int).to_numpy()
    assert (month_number(orig["maturity_date"].astype(int).to_numpy()) == month_number(fpd) + term - 1).all()

    upb = orig["orig_upb"].astype(int)[clean]
    assert (upb % 1000 == 0).all() and upb.min() >= 1000
    assert orig["orig_rate"].str.fullmatch(r"\d+\.\d{3}").all()
    # Zero padding in some rows, not in others (both must be read).
    assert {"000", "0"} <= set(orig["mi_pct"]) and {"01", "02", "1", "2"} <= set(orig["num_borrowers"])
    ltv, cltv = numeric(orig["ltv"], ("999",)), numeric(orig["cltv"], ("999",))
    both = clean & ~np.isnan(ltv) & ~np.isnan(cltv)
    assert (cltv[both] >= ltv[both]).all()
    mi = numeric(orig["mi_pct"], ("999",))
    assert (mi[clean & (ltv <= 80)] == 0).all(), "no mortgage insurance at or below 80% LTV"
    assert (mi[clean & (ltv > 80)] > 0).mean() > 0.8
    assert set(orig["valuation_method"]) == {"9"}, "valuation method is only known from 2017"
    assert set(orig.loc[orig["mi_pct"].astype(int) == 0, "mi_cancellation"]) == {"7"}
    assert (orig["seller_name"] == "Other sellers").mean() > 0.15
    assert (orig["servicer_name"] == "Other servicers").mean() > 0.02
    assert orig["seller_name"].nunique() > 10


def test_performance_rows_are_consistent_histories(small) -> None:
    folder, _ = small
    orig, perf = read_folder(folder)
    assert set(perf["loan_id"]) == set(orig["loan_id"]), "every loan has rows, and every row a loan"
    loans = orig.set_index("loan_id")
    fpd = month_number(loans.loc[perf["loan_id"], "first_payment_date"].astype(int).to_numpy())
    term = loans.loc[perf["loan_id"], "orig_term"].astype(int).to_numpy()
    period = month_number(perf["period"].astype(int).to_numpy())
    age = perf["loan_age"].astype(int).to_numpy()
    assert (age == period - fpd + 1).all(), "loan age counts from the first payment month (age 1)"
    assert (perf["remaining_months"].astype(int).to_numpy() == term - age).all()
    assert {"000", "001"} & set(perf["loan_age"]) and {"0", "1"} & set(perf["loan_age"])

    same_loan = perf["loan_id"].to_numpy()[1:] == perf["loan_id"].to_numpy()[:-1]
    assert (np.diff(period)[same_loan] == 1).all(), "one row a month, sorted by period"
    assert perf["loan_id"].is_monotonic_increasing

    zb = perf["zero_balance_code"] != ""
    is_last = np.r_[~same_loan, True]
    assert not (zb & ~is_last).any(), "a zero-balance code ends the history"
    assert perf.loc[zb, "loan_id"].is_unique
    assert (perf.loc[zb, "current_upb"] == "0.00").all()
    assert (perf.loc[zb, "zero_balance_date"] == perf.loc[zb, "period"]).all()
    assert (perf.loc[~zb, "zero_balance_date"] == "").all()
    assert perf["current_upb"].str.fullmatch(r"\d+\.\d{2}").all()
    truth = pd.read_csv(folder / "truth.csv", keep_default_na=False).set_index("loan_id")
    clean = (truth.loc[perf["loan_id"], "corrupted"] == 0).to_numpy()
    same_rate = perf["current_rate"].to_numpy() == loans.loc[perf["loan_id"], "orig_rate"].to_numpy()
    assert same_rate[clean].all(), "the current rate is the note rate (a corrupted note rate is not repeated)"

    upb = perf["current_upb"].astype(float).to_numpy()
    rises = np.diff(upb)[same_loan & ~zb.to_numpy()[1:]]
    assert rises.max() <= 1000.0, "balances amortise (the first months are reported rounded to $1,000)"
    # Missed payments roll one month at a time: 0 -> 1 -> 2 -> 3 ...
    status = pd.to_numeric(perf["delinquency_status"], errors="coerce").to_numpy()
    step = np.diff(status)[same_loan]
    assert np.nanmax(step) == 1
    assert (perf.loc[perf["delinquency_status"] == "RA", "zero_balance_code"] == "09").all()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    def files(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != MANIFEST}

    generate(tmp_path / "a", 400, seed=3, vintages="2006-2007")
    generate(tmp_path / "b", 400, seed=3, vintages="2006-2007")
    generate(tmp_path / "c", 400, seed=4, vintages="2006-2007")
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert sorted(a) == ["sample_orig_2006.txt", "sample_orig_2007.txt", "sample_svcg_2006.txt",
                         "sample_svcg_2007.txt", "truth.csv"]  # fmt: skip
    assert a == b
    assert all(a[name] != c[name] for name in a)


def test_an_interrupted_run_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return performance_table(*args, **kwargs)

    generate(tmp_path, 300, seed=1, vintages="2006-2008")
    before = (tmp_path / "sample_svcg_2007.txt").read_bytes()
    monkeypatch.setattr(synthetic, "performance_table", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, 300, seed=2, vintages="2006-2008")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    assert MANIFEST not in names, "a folder left by an interrupted run matches no settings"
    assert (tmp_path / "sample_svcg_2007.txt").read_bytes() == before, "the unfinished file was not replaced"


# ---------------------------------------------------------------------------------------------------------------------
# Labels: the histories agree with the drawn defaults, exactly
# ---------------------------------------------------------------------------------------------------------------------
def test_histories_match_drawn_defaults_loan_by_loan(tmp_path: Path) -> None:
    """Generate one vintage through the internal steps, read it back with the project's reader and labeller."""
    year, n = 2007, 3_000
    rng = np.random.default_rng(5)
    loans = draw_loans(year, n, rng)
    mask_missing(loans, year, rng)
    pd_true = default_probability({**loans.fields, "vintage_year": np.full(n, year)})
    cutoff = 200906  # late-2007 loans are seen for under 24 months: some are censored
    hist = simulate_histories(loans, pd_true, int(month_number(cutoff)), year, rng)
    with AtomicWriter(tmp_path / f"sample_svcg_{year}.txt") as w:
        w.write(performance_table(loans, hist, schema.PERFORMANCE_LAYOUTS["perf32"]))
    with AtomicWriter(tmp_path / f"sample_orig_{year}.txt") as w:
        w.write(origination_table(loans, schema.ORIGINATION_LAYOUTS["orig32"]))

    table, report = load_loan_table(folder=tmp_path, label={"keep_censored": True})
    assert report.loans_read == n and not report.skipped_rows
    drawn = pd.DataFrame(
        {"default": hist.default, "censored": hist.censored, "age": hist.first_default_age},
        index=loans.fields["loan_id"],
    ).loc[table["loan_id"]]
    assert 0 < drawn["censored"].sum() < n
    np.testing.assert_array_equal(table["censored"].to_numpy(), drawn["censored"].to_numpy())
    seen = ~drawn["censored"].to_numpy()
    np.testing.assert_array_equal(table["default"].to_numpy()[seen], drawn["default"].to_numpy()[seen])
    defaulted = seen & drawn["default"].to_numpy()
    np.testing.assert_array_equal(table["first_default_age"].to_numpy()[defaulted], drawn["age"].to_numpy()[defaulted])
    # The same through the reference labeller written in this file.
    orig = read_pipe(tmp_path / f"sample_orig_{year}.txt", schema.ORIGINATION_LAYOUTS["orig32"].columns)
    perf = read_pipe(tmp_path / f"sample_svcg_{year}.txt", schema.PERFORMANCE_LAYOUTS["perf32"].columns)
    ref = reference_labels(orig, perf).loc[table["loan_id"]]
    np.testing.assert_array_equal(ref["censored"].to_numpy(), drawn["censored"].to_numpy())
    np.testing.assert_array_equal(ref["default"].to_numpy()[seen], drawn["default"].to_numpy()[seen])


def test_round_trip_through_reader_and_labeller(small) -> None:
    folder, summary = small
    table, report = load_loan_table(folder=folder)
    assert report.loans_read == SMALL and not report.skipped_rows
    assert report.performance_rows == summary["performance_rows"]
    censored = sum(v["censored"] for v in summary["per_vintage"].values())
    assert report.labelled == SMALL - censored
    assert report.defaults == sum(v["labelled_defaults"] for v in summary["per_vintage"].values())
    # The oracle is a function of the file's fields: recomputed from what was read, it is true_pd exactly.
    clean = table["corrupted"].to_numpy() == 0
    recomputed = default_probability(table)
    np.testing.assert_allclose(recomputed[clean], table["true_pd"].to_numpy()[clean], rtol=0, atol=1e-12)
    assert not np.allclose(recomputed[~clean], table["true_pd"].to_numpy()[~clean])


# ---------------------------------------------------------------------------------------------------------------------
# Statistics on 20,000 loans: default rates, gradients, calibration, noise, non-linearity
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def large_frames(large):
    folder, summary = large
    orig, perf = read_folder(folder, keep=("loan_id", "period", "delinquency_status", "zero_balance_code"))
    labels = reference_labels(orig, perf)
    truth = pd.read_csv(folder / "truth.csv", keep_default_na=False, dtype={"corruption": str}).set_index("loan_id")
    orig = orig.join(labels, on="loan_id").join(truth, on="loan_id")
    return orig, perf, summary


def test_default_rates_follow_the_vintage_table(large_frames) -> None:
    orig, _, summary = large_frames
    assert 0.04 <= summary["default_rate"] <= 0.08
    seen = orig[~orig["censored"]]
    rate = seen.groupby("file_year")["default"].mean()
    assert rate[[2006, 2007]].min() > 1.5 * rate[[2004, 2009, 2010, 2011]].max(), rate.to_dict()
    assert 0.0 < summary["censored_fraction"] < 0.02, "only the last vintage has a few loans seen under 24 months"


def test_risk_gradients_are_monotone(large_frames) -> None:
    orig, _, _ = large_frames
    seen = orig[~orig["censored"] & (orig["corrupted"] == 0)]
    credit = numeric(seen["credit_score"], ("9999",))
    by_credit = seen.groupby(pd.cut(credit, [0, 620, 660, 700, 740, 900]), observed=True)["default"].mean()
    assert by_credit.is_monotonic_decreasing, by_credit.to_dict()
    assert by_credit.iloc[0] > 4 * by_credit.iloc[-1]
    ltv = numeric(seen["ltv"], ("999",))
    by_ltv = seen.groupby(pd.cut(ltv, [0, 70, 80, 90, 200]), observed=True)["default"].mean()
    assert by_ltv.is_monotonic_increasing, by_ltv.to_dict()
    # Finer buckets on the true probabilities (no Bernoulli noise).
    fine = seen.groupby(pd.cut(credit, [0, 620, 660, 700, 740, 780, 900]), observed=True)["true_pd"].mean()
    assert fine.is_monotonic_decreasing, fine.to_dict()
    fine = seen.groupby(pd.cut(ltv, [0, 60, 70, 80, 90, 200]), observed=True)["true_pd"].mean()
    assert fine.is_monotonic_increasing, fine.to_dict()
    dti = numeric(seen["dti"], ("999",))
    assert seen.groupby(pd.cut(dti, [-1, 20, 30, 40, 50, 65]), observed=True)["true_pd"].mean().is_monotonic_increasing


def test_true_pd_is_calibrated_against_observed_labels(large_frames) -> None:
    orig, _, _ = large_frames
    seen = orig[~orig["censored"]]
    fully = seen[month_number(seen["first_payment_date"].astype(int)) + 23 <= month_number(201312)]
    observed, expected = fully["default"].mean(), fully["true_pd"].mean()
    se = np.sqrt(expected * (1 - expected) / len(fully))
    assert abs(observed - expected) < 4 * se, (observed, expected)
    # Per fifth of true_pd, the observed rate matches the mean probability.
    bins = pd.qcut(fully["true_pd"], 5)
    stats = fully.groupby(bins, observed=True).agg(p=("true_pd", "mean"), y=("default", "mean"), n=("default", "size"))
    z = (stats["y"] - stats["p"]) / np.sqrt(stats["p"] * (1 - stats["p"]) / stats["n"])
    assert (z.abs() < 4).all(), stats


def test_missing_codes_appear_at_real_rates(large_frames) -> None:
    orig, perf, _ = large_frames
    clean = orig[orig["corrupted"] == 0]
    share = {
        "credit 9999": (clean["credit_score"] == "9999").mean(),
        "dti 999": (clean["dti"] == "999").mean(),
        "ltv 999": (clean["ltv"] == "999").mean(),
        "cltv 999": (clean["cltv"] == "999").mean(),
        "msa blank": (orig["msa"] == "").mean(),
        "postal blank": (orig["postal_code"] == "").mean(),
        "fthb 9": (orig["first_time_homebuyer"] == "9").mean(),
        "property type 99": (orig["property_type"] == "99").mean(),
    }
    assert 0.0001 < share["credit 9999"] < 0.003, share
    assert 0.01 < share["dti 999"] < 0.035, share
    assert share["ltv 999"] < 0.001 and share["cltv 999"] < 0.001, share
    assert 0.10 < share["msa blank"] < 0.20, share
    assert share["postal blank"] < 0.003 and share["property type 99"] < 0.001, share
    assert 0.0005 < share["fthb 9"] < 0.01, share
    status = perf["delinquency_status"]
    assert 0 < (status == "XX").mean() < 0.005 and 0 < (status == "").mean() < 0.001
    codes = Counter(perf["zero_balance_code"])
    assert {"01", "02", "03", "09", "15", "16", "96"} <= set(codes)
    assert codes["01"] > 10 * codes["09"] > 10 * codes["15"]


def test_corrupted_records_are_rare_parseable_and_recognisable(large_frames) -> None:
    orig, _, summary = large_frames
    assert 0.006 < summary["corrupted_fraction"] < 0.015
    assert set(orig["corruption"]) - {""} == set(CORRUPTIONS)
    assert ((orig["corruption"] != "") == (orig["corrupted"] == 1)).all()
    kind = orig["corruption"]
    upb, rate = orig["orig_upb"].astype(float), orig["orig_rate"].astype(float)
    assert (upb[kind == "upb_x1000"] > 5_000_000).all() and (upb[kind == "upb_div1000"] < 2_000).all()
    assert (rate[kind == "rate_x10"] > 15).all() and (rate[kind == ""] < 15).all()
    odd = orig[kind == "cltv_below_ltv"]
    assert (odd["cltv"].astype(int) < odd["ltv"].astype(int) / 2 + 1).all() and not (odd["cltv"] == "999").any()
    assert (orig.loc[kind == "dti_zero", "dti"] == "0").all()
    worst = orig[kind == "score300_ltv150"]
    assert (worst["credit_score"] == "300").all() and (worst["ltv"] == "150").all()


def _features(orig: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "credit_score": numeric(orig["credit_score"], ("9999",)),
            "ltv": numeric(orig["ltv"], ("999",)),
            "cltv": numeric(orig["cltv"], ("999",)),
            "dti": numeric(orig["dti"], ("999",)),
            "orig_upb": numeric(orig["orig_upb"]),
            "orig_rate": numeric(orig["orig_rate"]),
            "orig_term": numeric(orig["orig_term"]),
            "mi_pct": numeric(orig["mi_pct"], ("999",)),
            "num_borrowers": numeric(orig["num_borrowers"], ("99",)),
            "num_units": numeric(orig["num_units"], ("99",)),
        }
    )
    cats = ["occupancy", "loan_purpose", "channel", "property_type", "property_state", "seller_name",
            "first_time_homebuyer", "harp_indicator", "file_year"]  # fmt: skip
    return frame.join(orig[cats].astype(str))


def _linear_inputs(x: pd.DataFrame) -> ColumnTransformer:
    numbers = list(x.columns[:10])
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), numbers),
            ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=20), list(x.columns[10:])),
        ]
    )


def test_oracle_is_realistic_and_beats_a_linear_model(large_frames) -> None:
    orig, _, _ = large_frames
    seen = orig[~orig["censored"]].reset_index(drop=True)
    y = seen["default"].to_numpy().astype(int)
    x = _features(seen)
    model = make_pipeline(_linear_inputs(x), LogisticRegression(max_iter=2000))
    test = np.random.default_rng(0).random(len(seen)) < 0.5
    model.fit(x[~test], y[~test])
    linear_auc = roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])
    oracle_auc = roc_auc_score(y[test], seen["true_pd"].to_numpy()[test])
    assert 0.78 < oracle_auc < 0.88, oracle_auc
    assert linear_auc < oracle_auc - 0.01, (linear_auc, oracle_auc)


def test_the_true_risk_surface_is_not_linear(large_frames) -> None:
    """Even the best linear fit of the true log-odds (no label noise, no split) ranks loans clearly worse."""
    orig, _, _ = large_frames
    seen = orig[~orig["censored"] & (orig["corrupted"] == 0)].reset_index(drop=True)
    x = _linear_inputs(_features(seen)).fit_transform(_features(seen))
    logit = np.log(seen["true_pd"] / (1 - seen["true_pd"])).to_numpy()
    fit = LinearRegression().fit(x, logit)
    y = seen["default"].to_numpy().astype(int)
    assert fit.score(x, logit) < 0.9
    assert roc_auc_score(y, fit.predict(x)) < roc_auc_score(y, seen["true_pd"]) - 0.01


# ---------------------------------------------------------------------------------------------------------------------
# API and CLI
# ---------------------------------------------------------------------------------------------------------------------
def test_parse_vintages_accepts_years_ranges_and_default() -> None:
    assert parse_vintages(None) == list(range(2004, 2012))
    assert parse_vintages("2005-2007") == [2005, 2006, 2007]
    assert parse_vintages(["2008", 2004, "2005-2006"]) == [2004, 2005, 2006, 2008]
    assert parse_vintages(2010) == [2010]
    for bad in ("2007-2005", "07", "2030", ["2004", "x"]):
        with pytest.raises(SyntheticArgumentError):
            parse_vintages(bad)


@pytest.mark.parametrize(
    "kwargs",
    [{"layout": "orig99"}, {"n_loans": 2}, {"cutoff": 200712}, {"cutoff": 200913}, {"corrupted_share": 1.5}],
)
def test_generate_rejects_bad_arguments_before_writing(tmp_path: Path, kwargs) -> None:
    args = {"out_dir": tmp_path / "out", "n_loans": 100, "seed": 0, "vintages": "2006-2008", **kwargs}
    with pytest.raises(SyntheticArgumentError):
        generate(**args)
    assert not (tmp_path / "out").exists()


def test_cli_writes_files_and_prints_a_summary(tmp_path: Path, capsys) -> None:
    summary = main(["--loans", "200", "--out", str(tmp_path), "--seed", "2", "--vintages", "2006", "2007",
                    "--layout", "orig31", "--cutoff", "201006"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "2006" in printed and "2007" in printed and "orig31/perf30" in printed
    assert summary["cutoff"] == 201006 and summary["vintages"] == [2006, 2007]
    assert max(int(f[1]) for f in lines(tmp_path / "sample_svcg_2007.txt")) <= 201006
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["performance_rows"] == summary["performance_rows"]
    with pytest.raises(SystemExit):
        main(["--loans", "200", "--out", str(tmp_path), "--vintages", "1990"])


def test_ensure_synthetic_reuses_matching_files_and_replaces_others(tmp_path: Path) -> None:
    first = ensure_synthetic(tmp_path, loans=300, seed=1, vintages="2006-2007")
    stamp = (tmp_path / "sample_svcg_2006.txt").stat().st_mtime_ns
    again = ensure_synthetic(tmp_path, loans=300, seed=1, vintages=["2006", "2007"])
    assert again["performance_rows"] == first["performance_rows"]
    assert (tmp_path / "sample_svcg_2006.txt").stat().st_mtime_ns == stamp, "matching files are not rewritten"
    ensure_synthetic(tmp_path, loans=300, seed=1, vintages="2007-2008")
    names = {p.name for p in tmp_path.iterdir()}
    assert "sample_orig_2006.txt" not in names and "sample_svcg_2008.txt" in names, "stale vintages are removed"


# ---------------------------------------------------------------------------------------------------------------------
# Options: linear hazard, blanked fields, shifted population
# ---------------------------------------------------------------------------------------------------------------------
def _model_features(orig: pd.DataFrame) -> pd.DataFrame:
    """What the project's models see: no vintage, UPB on a log scale."""
    x = _features(orig).drop(columns="file_year")
    x["orig_upb"] = np.log(x["orig_upb"])
    return x


def test_linear_hazard_log_odds_are_linear_in_the_features(tmp_path: Path) -> None:
    summary = generate(tmp_path, 5_000, seed=11, hazard="linear")
    assert summary["hazard"] == "linear" and 0.03 < summary["mean_true_pd"] < 0.09
    orig, _ = read_folder(tmp_path, keep=("loan_id",))
    truth = pd.read_csv(tmp_path / "truth.csv", keep_default_na=False, dtype={"corruption": str})
    clean = orig[truth["corrupted"].to_numpy() == 0].reset_index(drop=True)
    x = _linear_inputs(_model_features(clean)).fit_transform(_model_features(clean))
    pd_true = truth.loc[truth["corrupted"] == 0, "true_pd"].to_numpy()
    logit = np.log(pd_true / (1 - pd_true))
    assert LinearRegression().fit(x, logit).score(x, logit) > 0.999


def test_linear_hazard_logistic_regression_is_near_oracle_on_drawn_loans() -> None:
    """The hazard alone, without files: 60,000 drawn loans, labels drawn from their true PD (seconds)."""
    frames = []
    for year in range(2004, 2012):
        rng = np.random.default_rng([3, year])
        loans = draw_loans(year, 7_500, rng)
        mask_missing(loans, year, rng)
        frame = pd.DataFrame(loans.fields).assign(vintage_year=year)
        frame["true_pd"] = default_probability(frame, "linear")
        frames.append(frame)
    seen = pd.concat(frames, ignore_index=True)
    y = (np.random.default_rng(0).random(len(seen)) < seen["true_pd"]).astype(int)
    cats = ["occupancy", "loan_purpose", "channel", "property_type", "property_state", "seller_name",
            "first_time_homebuyer", "harp_indicator"]  # fmt: skip
    numbers = ["credit_score", "ltv", "cltv", "dti", "orig_upb", "orig_rate", "orig_term", "mi_pct", "num_borrowers",
               "num_units"]  # fmt: skip
    x = seen[numbers].assign(orig_upb=np.log(seen["orig_upb"])).join(seen[cats].astype(str))
    test = np.random.default_rng(1).random(len(seen)) < 0.25
    model = make_pipeline(_linear_inputs(x), LogisticRegression(C=0.1, max_iter=2000)).fit(x[~test], y[~test])
    linear_auc = roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])
    oracle_auc = roc_auc_score(y[test], seen["true_pd"].to_numpy()[test])
    assert 0.75 < oracle_auc < 0.86, oracle_auc
    assert linear_auc > oracle_auc - 0.01, (linear_auc, oracle_auc)
    # The same fit on the non-linear hazard's labels falls clearly short of its oracle.
    nonlinear = default_probability(seen)
    y = (np.random.default_rng(0).random(len(seen)) < nonlinear).astype(int)
    model.fit(x[~test], y[~test])
    assert roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]) < roc_auc_score(y[test], nonlinear[test]) - 0.01


@pytest.mark.slow
def test_linear_hazard_logistic_regression_is_near_oracle(tmp_path: Path) -> None:
    """End to end through the files: 40,000 loans (~1,500 training defaults) keep estimation noise below 0.01."""
    generate(tmp_path, 40_000, seed=11, hazard="linear")
    orig, perf = read_folder(tmp_path, keep=("loan_id", "period", "delinquency_status", "zero_balance_code"))
    truth = pd.read_csv(tmp_path / "truth.csv", keep_default_na=False, dtype={"corruption": str}).set_index("loan_id")
    orig = orig.join(reference_labels(orig, perf), on="loan_id").join(truth, on="loan_id")
    # Keying slips (rate x 10) are the outlier stage's job; unclipped they would dominate a linear fit.
    seen = orig[~orig["censored"] & (orig["corrupted"] == 0)].reset_index(drop=True)
    y = seen["default"].to_numpy().astype(int)
    x = _model_features(seen)
    test = np.random.default_rng(0).random(len(seen)) < 0.25
    model = make_pipeline(_linear_inputs(x), LogisticRegression(C=0.1, max_iter=2000)).fit(x[~test], y[~test])
    linear_auc = roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])
    oracle_auc = roc_auc_score(y[test], seen["true_pd"].to_numpy()[test])
    assert 0.75 < oracle_auc < 0.86, oracle_auc
    assert linear_auc > oracle_auc - 0.01, (linear_auc, oracle_auc)


BLANKED = ("credit_score", "dti", "occupancy", "msa", "num_borrowers")


@pytest.fixture(scope="module")
def blanked(tmp_path_factory) -> tuple[Path, Path]:
    """The same 3,000 loans twice: as drawn, and with a third of five fields blanked."""
    plain, sparse = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("sparse")
    generate(plain, 3_000, seed=5, vintages="2006-2007", hazard="linear")
    generate(sparse, 3_000, seed=5, vintages="2006-2007", hazard="linear", blank_fields=",".join(BLANKED),
             blank_share=0.35)  # fmt: skip
    return plain, sparse


def test_blanked_fields_are_written_as_not_available_codes(blanked) -> None:
    plain, sparse = blanked
    before, _ = read_folder(plain)
    after, _ = read_folder(sparse)
    codes = {"credit_score": "9999", "dti": "999", "occupancy": "9", "msa": "", "num_borrowers": "99"}
    # Which loans are spoiled depends on the histories drawn before, which follow the PD: compare loans clean in both.
    clean = (pd.read_csv(plain / "truth.csv")["corrupted"] == 0) & (pd.read_csv(sparse / "truth.csv")["corrupted"] == 0)
    before, after = before[clean.to_numpy()], after[clean.to_numpy()]
    for name, code in codes.items():
        changed = before[name] != after[name]
        assert (after.loc[changed, name] == code).all(), name
        assert 0.30 < (after[name] == code).mean() - (before[name] == code).mean() < 0.40, name
    # Only the blanked fields differ: blanking draws from its own random stream.
    others = [c for c in before.columns if c not in BLANKED]
    pd.testing.assert_frame_equal(before[others], after[others])
    # The reader turns the codes into missing values, and the oracle still matches the written records.
    table, report = load_loan_table(folder=sparse)
    assert not report.skipped_rows
    for name in ("credit_score", "dti", "num_borrowers"):
        assert 0.30 < table[name].isna().mean() < 0.40, name
    assert 0.30 < table["occupancy"].isna().mean() < 0.40
    clean = table["corrupted"].to_numpy() == 0
    recomputed = default_probability(table, "linear")
    np.testing.assert_allclose(recomputed[clean], table["true_pd"].to_numpy()[clean], rtol=0, atol=1e-12)


def test_shift_moves_the_marginals_and_nothing_else(tmp_path: Path) -> None:
    base, moved = tmp_path / "base", tmp_path / "moved"
    generate(base, 3_000, seed=9, vintages="2010-2011")
    summary = generate(moved, 3_000, seed=9, vintages="2010-2011", shift="credit_score=-60,orig_rate=+1.5")
    assert summary["shift"] == {"credit_score": -60.0, "orig_rate": 1.5}
    before, _ = read_folder(base)
    after, _ = read_folder(moved)
    pd.testing.assert_series_equal(before["loan_id"], after["loan_id"])
    # Which loans are spoiled depends on the histories drawn before, which follow the PD: compare loans clean in both.
    clean = (pd.read_csv(base / "truth.csv")["corrupted"] == 0).to_numpy() & (
        pd.read_csv(moved / "truth.csv")["corrupted"] == 0
    ).to_numpy()
    credit_before, credit_after = numeric(before["credit_score"], ("9999",)), numeric(after["credit_score"], ("9999",))
    known = clean & ~np.isnan(credit_before)
    np.testing.assert_array_equal(credit_after[known], np.maximum(300.0, credit_before[known] - 60))
    assert np.nanmean(credit_after[clean]) == pytest.approx(np.nanmean(credit_before[clean]) - 60, abs=1.0)
    rate_diff = numeric(after["orig_rate"]) - numeric(before["orig_rate"])
    np.testing.assert_allclose(rate_diff[clean], 1.5, atol=1e-9)
    pd.testing.assert_series_equal(before["dti"][clean], after["dti"][clean])
    # The truth follows the shifted records: worse credit and dearer loans default more.
    truth_before = pd.read_csv(base / "truth.csv")["true_pd"].mean()
    assert pd.read_csv(moved / "truth.csv")["true_pd"].mean() > 1.5 * truth_before


def test_options_on_the_command_line_and_in_the_manifest(tmp_path: Path, capsys) -> None:
    main(["--loans", "300", "--out", str(tmp_path), "--vintages", "2007", "--hazard", "linear",
                    "--blank", "dti,credit_score", "--blank-share", "0.2", "--shift", "credit_score=-30"])  # fmt: skip
    printed = capsys.readouterr().out
    assert (
        "hazard linear" in printed and "blanked 20% of credit_score, dti" in printed and "credit_score -30" in printed
    )
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["hazard"] == "linear" and manifest["blank_fields"] == ["credit_score", "dti"]
    assert manifest["blank_share"] == 0.2 and manifest["shift"] == {"credit_score": -30.0}
    stamp = (tmp_path / "sample_orig_2007.txt").stat().st_mtime_ns
    ensure_synthetic(tmp_path, loans=300, seed=0, vintages="2007", hazard="linear",
                     blank_fields=["credit_score", "dti"],
                     blank_share=0.2, shift={"credit_score": -30})  # fmt: skip
    assert (tmp_path / "sample_orig_2007.txt").stat().st_mtime_ns == stamp, "same options: files reused"
    assert ensure_synthetic(tmp_path, loans=300, seed=0, vintages="2007")["hazard"] == "nonlinear"
    for bad in (["--blank", "orig_upb"], ["--shift", "seller_name=3"], ["--shift", "credit_score"],
                ["--blank", "dti", "--blank-share", "0"]):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["--loans", "300", "--out", str(tmp_path / "bad"), "--vintages", "2007", *bad])


def test_manifest_from_before_the_options_still_counts_as_default_settings(tmp_path: Path) -> None:
    ensure_synthetic(tmp_path, loans=200, seed=1, vintages="2006")
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    for key in ("hazard", "blank_fields", "blank_share", "shift"):
        del manifest[key]
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    stamp = (tmp_path / "sample_orig_2006.txt").stat().st_mtime_ns
    ensure_synthetic(tmp_path, loans=200, seed=1, vintages="2006")
    assert (tmp_path / "sample_orig_2006.txt").stat().st_mtime_ns == stamp


def test_month_numbers_count_months_and_invert() -> None:
    from loan_default.common.months import valid_month_number, yyyymm

    assert month_number(202001) - month_number(201912) == 1 and month_number(np.array([200401])).dtype == np.int64
    got = month_number(np.array([200612.0, np.nan]))
    assert got[0] == 2006 * 12 + 11 and np.isnan(got[1])
    checked = valid_month_number(np.array([200613, 200600, 200607, np.nan]))
    assert np.isnan(checked[[0, 1, 3]]).all() and checked[2] == 2006 * 12 + 6
    months = np.arange(2000 * 12, 2030 * 12)
    np.testing.assert_array_equal(month_number(yyyymm(months)), months)


def test_worker_processes_write_the_same_bytes_as_one_process(tmp_path: Path) -> None:
    def files(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != MANIFEST}

    # Options that travel to the workers (blanking, shift, linear hazard) and uneven loans per vintage (3 into 1,000).
    args = dict(n_loans=1_000, seed=3, vintages="2006-2008", hazard="linear", blank_fields="dti",
                shift="credit_score=-20")  # fmt: skip
    one = generate(tmp_path / "one", **args, workers=1)
    two = generate(tmp_path / "two", **args, workers=2)
    assert files(tmp_path / "one") == files(tmp_path / "two")
    assert len(files(tmp_path / "one")) == 7
    assert {k: v for k, v in one.items() if k not in ("seconds", "out_dir")} == {
        k: v for k, v in two.items() if k not in ("seconds", "out_dir")
    }
    assert list(two["per_vintage"]) == ["2006", "2007", "2008"]
    with pytest.raises(SyntheticArgumentError, match="workers"):
        generate(tmp_path / "zero", **args, workers=0)
