"""DeLong intervals against the O(m n) pair kernel and a scipy bootstrap; Wilson against scipy's binomtest."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap, rankdata
from sklearn.metrics import roc_auc_score

from loan_default.training.evaluation.threshold import choose_threshold
from loan_default.training.evaluation.uncertainty import (
    auroc_ci,
    auroc_diff_ci,
    delong,
    recall_ci,
    wilson_interval,
    wilson_lower,
)


def two_models(n: int, seed: int, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x - 2.0)))).astype(int)
    a = x + rng.normal(scale=0.8, size=n)
    b = x + rng.normal(scale=2.0, size=n)
    if decimals is not None:
        a, b = np.round(a, decimals), np.round(b, decimals)
    return y, a, b


def pair_kernel(y, scores):
    """DeLong (1988) by its definition: psi(x, y) = 1, 1/2, 0 over every (default, non-default) pair."""
    pos = [s[y == 1] for s in scores]
    neg = [s[y == 0] for s in scores]
    m, n = len(pos[0]), len(neg[0])
    kernels = [(p[:, None] > q[None, :]) + 0.5 * (p[:, None] == q[None, :]) for p, q in zip(pos, neg, strict=True)]
    v10 = np.array([k.mean(axis=1) for k in kernels])
    v01 = np.array([k.mean(axis=0) for k in kernels])
    return np.array([k.mean() for k in kernels]), np.cov(v10) / m + np.cov(v01) / n


@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: heavy ties
def test_fast_delong_equals_the_pair_kernel(decimals):
    y, a, b = two_models(600, 0, decimals)
    aucs, cov = delong(y, [a, b])
    ref_aucs, ref_cov = pair_kernel(y, [a, b])
    np.testing.assert_allclose(aucs, ref_aucs, rtol=1e-12)
    np.testing.assert_allclose(aucs, [roc_auc_score(y, a), roc_auc_score(y, b)], rtol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-9)


def mann_whitney_auc(yy, ss, axis=-1):
    """ROC-AUC as the Mann-Whitney U statistic over the last axis (vectorised for scipy's bootstrap)."""
    ranks = rankdata(ss, axis=axis)
    m = yy.sum(axis=axis)
    return ((ranks * yy).sum(axis=axis) - m * (m + 1) / 2) / (m * (yy.shape[axis] - m))


def test_delong_standard_errors_agree_with_a_bootstrap():
    y, a, b = two_models(2000, 1)
    assert mann_whitney_auc(y, a) == pytest.approx(roc_auc_score(y, a), rel=1e-12)
    ci = auroc_ci(y, a)
    diff = auroc_diff_ci(y, a, b)
    rng = np.random.default_rng(2)
    kw = {"paired": True, "vectorized": True, "n_resamples": 1000, "random_state": rng, "batch": 250}
    boot = bootstrap((y, a), mann_whitney_auc, **kw)
    boot_diff = bootstrap(
        (y, a, b), lambda yy, aa, bb, axis=-1: mann_whitney_auc(yy, aa, axis) - mann_whitney_auc(yy, bb, axis), **kw
    )
    # 1000 resamples estimate a standard error to about +-2.5%; 12% still catches a wrong covariance term.
    assert ci["se"] == pytest.approx(boot.standard_error, rel=0.12)
    assert diff["se"] == pytest.approx(boot_diff.standard_error, rel=0.12)
    assert ci["low"] < ci["auroc"] < ci["high"] and ci["high"] - ci["low"] == pytest.approx(2 * 1.959964 * ci["se"])
    assert diff["diff"] == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert diff["low"] > 0 and diff["p_value"] < 0.05  # a has less noise than b: the better model, visibly


def test_identical_models_have_zero_difference_and_undefined_cases_give_none():
    y, a, _ = two_models(500, 3)
    same = auroc_diff_ci(y, a, a)
    assert same["diff"] == 0 and same["se"] == 0 and same["p_value"] == 1.0
    assert auroc_ci([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4]) is None  # one default: no variance
    with pytest.raises(ValueError, match="0 and 1"):
        auroc_ci([0, 2, 1, 1], [0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (27, 30), (30, 30), (450, 500)])
def test_wilson_matches_scipy_and_a_hand_formula(k, n):
    low, high = wilson_interval(k, n)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert (float(low), float(high)) == pytest.approx((ref.low, ref.high), abs=1e-12)
    # One-sided 90% bound = lower end of the two-sided 80% interval.
    assert float(wilson_lower(k, n, 0.9)) == pytest.approx(
        binomtest(k, n).proportion_ci(confidence_level=0.8, method="wilson").low, abs=1e-12
    )
    # Hand: 27 of 30, z = 1.96: centre (0.9 + 0.0640) / 1.1280 = 0.8546, half-width 1.7375 * 0.0638 = 0.1108.
    if (k, n) == (27, 30):
        assert float(low) == pytest.approx(0.7438, abs=1e-4) and float(high) == pytest.approx(0.9654, abs=1e-4)
    out = recall_ci(k, n)
    assert out["recall"] == k / n and out["low"] == pytest.approx(float(low))
    assert recall_ci(0, 0) is None


def test_threshold_confidence_picks_a_lower_threshold_whose_lower_bound_meets_the_target():
    y, a, _ = two_models(4000, 4)
    plain = choose_threshold(y, a, recall_target=0.8)
    sure = choose_threshold(y, a, recall_target=0.8, confidence=0.9)
    assert sure.threshold < plain.threshold and sure.recall > plain.recall
    flagged = a >= sure.threshold
    tp, positives = int((flagged & (y == 1)).sum()), int(y.sum())
    assert float(wilson_lower(tp, positives, 0.9)) >= 0.8
    # The next higher score would fail the bound: the choice is the highest threshold that proves the target.
    higher = np.unique(a[a > sure.threshold])[0]
    tp_next = int(((a >= higher) & (y == 1)).sum())
    assert float(wilson_lower(tp_next, positives, 0.9)) < 0.8
    # Too few defaults to prove 0.99: best effort, said in the method.
    small = choose_threshold(y[:200], a[:200], recall_target=0.99, confidence=0.95)
    assert small.method.endswith("not met")
