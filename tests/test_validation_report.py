"""The validation section: Jeffreys test against a closed form and numerical integration, calibration that fails
when it should, PSI of a hand-worked score shift, CSI of shifted credit scores, per-vintage and per-segment cells."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.special import expit, gammaln
from sklearn.metrics import roc_auc_score

from loan_default.core.drift import build_reference
from loan_default.training.evaluation.validation import calibration_cell, grades, jeffreys_p_value, validate


def test_jeffreys_against_a_closed_form_and_an_integral():
    # d = 0, n = 1: Beta(1/2, 3/2), whose CDF is (2 / pi) (arcsin sqrt(x) + sqrt(x (1 - x))); at 0.5: 1/2 + 1/pi.
    assert jeffreys_p_value(0, 1, 0.5) == pytest.approx(0.5 + 1 / math.pi, abs=1e-12)
    for d, n, pd_ in [(5, 100, 0.02), (30, 400, 0.1), (0, 50, 0.01), (12, 12, 0.9)]:
        a, b = d + 0.5, n - d + 0.5
        log_norm = gammaln(a + b) - gammaln(a) - gammaln(b)
        density = lambda t, a=a, b=b, c=log_norm: math.exp(c + (a - 1) * math.log(t) + (b - 1) * math.log1p(-t))  # noqa: E731
        integral, _ = quad(density, 0, pd_, limit=200)
        assert jeffreys_p_value(d, n, pd_) == pytest.approx(integral, abs=1e-7), (d, n, pd_)
    # 5 defaults in 100 loans against a PD of 2%: the PD is clearly too low.
    cell = calibration_cell(np.r_[np.ones(5), np.zeros(95)].astype(int), np.full(100, 0.02), alpha=0.05)
    assert cell["observed"] == 0.05 and cell["jeffreys_p"] < 0.05 and cell["pass"] is False


def population(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Loans with a known PD: defaults drawn from it; a vintage and a segment per loan."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-3.2, 1.0, n)
    pd_true = expit(z)
    frame = pd.DataFrame({
        "default": (rng.random(n) < pd_true).astype(np.int8),
        "vintage_year": rng.choice([2010, 2011, 2012], n),
        "occupancy": rng.choice(["P", "I", "S"], n, p=[0.9, 0.07, 0.03]),
    })  # fmt: skip
    frame["vintage"] = frame["vintage_year"].astype(str) + "Q" + rng.choice(["1", "2", "3", "4"], n)
    return frame, pd_true


def test_true_pd_passes_and_a_shifted_calibration_fails():
    frame, pd_true = population(30000, 0)
    good = validate(frame, pd_true, threshold=0.05)
    assert good["calibration_portfolio"]["pass"] and not good["calibration_failing_grades"]
    assert good["calibration_fit"]["slope"] == pytest.approx(1.0, abs=0.1)
    assert good["calibration_fit"]["intercept"] == pytest.approx(0.0, abs=0.3)
    # The same ranking with every PD cut to 40%: discrimination unchanged, every grade underestimated.
    bad = validate(frame, 0.4 * pd_true, threshold=0.02)
    assert bad["auroc"] == pytest.approx(good["auroc"], abs=1e-12)
    assert bad["calibration_portfolio"]["pass"] is False
    assert set(bad["calibration_failing_grades"]) == {g for g, c in bad["calibration"].items() if c["n"] >= 200}
    assert all(set(c) >= {"n", "predicted", "observed", "jeffreys_p", "pass"} for c in bad["calibration"].values())
    # A logit squeezed to half its spread shows as a recalibration slope near 2.
    squeezed = expit(0.5 * (np.log(pd_true / (1 - pd_true)) + 3.2) - 3.2)
    assert validate(frame, squeezed, threshold=0.05)["calibration_fit"]["slope"] == pytest.approx(2.0, abs=0.2)


def test_grades_follow_the_bundle_bands_and_cells_match_sklearn():
    bands = [{"name": "low", "upper": 0.1}, {"name": "high", "upper": 1.0}]
    assert grades(np.array([0.05, 0.1, 0.5]), bands).tolist() == ["low", "high", "high"]  # as Bundle.risk_bands
    frame, p = population(6000, 1)
    out = validate(frame, p, threshold=0.05, min_defaults=20)
    y = frame["default"].to_numpy()
    assert out["gini"] == pytest.approx(2 * roc_auc_score(y, p) - 1, abs=1e-12)
    for year, cell in out["by_vintage"]["year"].items():
        rows = (frame["vintage_year"] == int(year)).to_numpy()
        assert cell["n"] == rows.sum() and cell["auroc"] == pytest.approx(roc_auc_score(y[rows], p[rows]), abs=1e-12)
    occupancy = out["by_segment"]["occupancy"]
    assert occupancy["S"]["small"] and not occupancy["P"]["small"]  # 3% of 6,000 loans hold a handful of defaults
    assert sum(c["n"] for c in occupancy.values()) == len(frame)
    # ~25 defaults per quarter-vintage: enough for quarters at 20, not at 40.
    assert "quarter" in out["by_vintage"]
    assert "quarter" not in validate(frame, p, threshold=0.05, min_defaults=40)["by_vintage"]


def test_score_psi_of_a_hand_worked_shift():
    rng = np.random.default_rng(2)
    train_scores = rng.random(10000)
    reference = build_reference(train_scores, None)
    frame, _ = population(4000, 3)
    moved = 0.5 + 0.5 * rng.random(4000)  # every score in the top half of the training deciles
    out = validate(frame, moved, threshold=0.5, reference=reference)
    # Top 5 bins at 0.2 instead of 0.1: 5 * 0.1 ln 2; bottom 5 empty (floor 1e-4): 5 * (1e-4 - 0.1) ln(1e-4 / 0.1).
    hand = 5 * 0.1 * math.log(2) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert out["psi_score"] == pytest.approx(hand, rel=0.02) and out["psi_score_light"] == "red"
    same = validate(frame, rng.random(4000), threshold=0.5, reference=reference)
    assert same["psi_score"] < 0.1 and same["psi_score_light"] == "green"


def test_shifted_credit_scores_give_a_red_csi(tiny_root):
    from loan_default.freddie.loans import load_loan_table

    table, _ = load_loan_table(folder=tiny_root / "data" / "synthetic")
    train, test = table.iloc[::2], table.iloc[1::2]
    reference = build_reference(train["true_pd"].to_numpy(), train)
    p = test["true_pd"].to_numpy()
    stable = validate(test, p, threshold=0.05, reference=reference)
    assert stable["csi"]["credit_score"]["light"] == "green" and stable["psi_score"] < 0.1
    shifted = test.copy()
    shifted["credit_score"] = shifted["credit_score"] - 60
    drifted = validate(shifted, p, threshold=0.05, reference=reference)
    assert drifted["csi"]["credit_score"]["psi"] > 0.25 and "credit_score" in drifted["fields_red"]
    assert drifted["csi"]["ltv"]["psi"] == pytest.approx(stable["csi"]["ltv"]["psi"])  # only the shifted field moves


def test_backtest_per_later_vintage():
    frame, p = population(8000, 4)
    out = validate(frame, p, threshold=0.05, later=(frame, 2 * p))
    assert set(out["backtest"]) == set(frame["vintage"])
    q = frame["vintage"] == "2011Q2"
    cell = out["backtest"]["2011Q2"]
    assert cell["observed"] == pytest.approx(frame.loc[q, "default"].mean())
    assert cell["predicted"] == pytest.approx(2 * p[q.to_numpy()].mean())
    assert cell["jeffreys_p"] > 0.5  # doubled PDs overestimate: never flagged as underestimated
