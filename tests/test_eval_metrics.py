"""binary_metrics against sklearn and scipy, with tied scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import ks_2samp
from sklearn import metrics as skm

from loan_default.training.evaluation.metrics import binary_metrics, mean_abs_shap, ranking_metrics


def sample(seed: int, n: int, decimals: int | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    score = rng.beta(1, 12, n)
    y = (rng.random(n) < np.clip(1.5 * score, 0, 1)).astype(int)
    if decimals is not None:
        score = np.round(score, decimals)  # heavy ties
    return y, score


@pytest.mark.parametrize(("seed", "n", "decimals"), [(0, 2000, None), (1, 2000, 2), (2, 300, 1), (3, 50, None)])
@pytest.mark.parametrize("threshold", [0.02, 0.1, 0.3])
def test_matches_sklearn_and_scipy(seed, n, decimals, threshold):
    y, p = sample(seed, n, decimals)
    m = binary_metrics(y, p, threshold)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert m["ks"] == pytest.approx(ks_2samp(p[y == 1], p[y == 0]).statistic, abs=1e-12)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-9)
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)
    assert m["false_negatives"] == fn and m["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert (m["n"], m["positives"], m["default_rate"]) == (n, y.sum(), pytest.approx(y.mean()))


def test_plain_json_values():
    y, p = sample(4, 500, None)
    m = binary_metrics(y, p.astype(np.float32), 0.1)
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert all(type(v) in (int, float, list) for v in m.values())


def test_hand_computed_small_case():
    y = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]
    m = binary_metrics(y, p, 0.4)
    assert m["auroc"] == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs ordered correctly
    assert m["ks"] == pytest.approx(0.5)
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.65**2 + 0.04) / 4)


def test_log_loss_is_finite_on_confident_mistakes():
    m = binary_metrics([0, 1], [1.0, 0.0], 0.5)
    assert np.isfinite(m["log_loss"]) and m["log_loss"] == pytest.approx(skm.log_loss([0, 1], [1.0, 0.0]))


def test_one_class_gives_none_not_nan():
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3], 0.25)
    assert m["auroc"] is None and m["ks"] is None and m["recall"] is None
    assert m["fp"] == 1 and m["precision"] == 0.0
    assert ranking_metrics([1, 1], [0.1, 0.2]) == {"auroc": None, "pr_auc": None, "ks": None}


def test_rejects_non_probabilities():
    with pytest.raises(ValueError, match="probabilities"):
        binary_metrics([0, 1], [-0.5, 2.0], 0.5)


def test_shap_ranking():
    values = np.array([[1.0, -3.0, 0.0], [-1.0, 1.0, 0.5]])
    top = mean_abs_shap(values, ["a", "b", "c"], top_k=2, display_names={"b": "Credit score"})
    assert top == [{"feature": "Credit score", "mean_abs_shap": 2.0}, {"feature": "a", "mean_abs_shap": 1.0}]
