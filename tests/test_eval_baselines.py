"""Baselines on synthetic problems whose truth is known."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder

from loan_default.training.evaluation import baselines
from loan_default.training.evaluation.baselines import (
    LOGISTIC_C,
    _logistic_train_design,
    _row_sample,
    fit_baselines,
    lightgbm_params,
)
from loan_default.training.evaluation.metrics import binary_metrics, ranking_metrics
from loan_default.training.evaluation.threshold import choose_threshold
from loan_default.training.packed import PackedNumeric

N_IDS = 5


def make_split(rng: np.random.Generator, n: int, nonlinear: bool, max_id: int = N_IDS):
    x_num = rng.normal(size=(n, 3)).astype(np.float32)
    x_cat = rng.integers(0, max_id, size=(n, 1)).astype(np.int64)
    if nonlinear:
        # Risk depends on the sign agreement of two features and on two scattered ids: no linear score captures it.
        logit = 3.0 * np.sign(x_num[:, 0] * x_num[:, 1]) + 2.5 * np.isin(x_cat[:, 0], (1, 3)) - 4.0
    else:
        logit = 1.2 * x_num[:, 0] - 0.8 * x_num[:, 1] + np.array([0.0, 0.5, -0.5, 1.0, 0.2])[x_cat[:, 0] % N_IDS] - 2.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x_num, x_cat, y


def one_hot(x_cat: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Independent one-hot: a column per id seen in train; unseen ids get all zeros."""
    return (x_cat[:, [0]] == ids[None, :]).astype(np.float64)


def test_logistic_matches_sklearn_fit_and_ignores_unseen_ids():
    rng = np.random.default_rng(0)
    train = make_split(rng, 3000, nonlinear=False)
    val = make_split(rng, 1000, nonlinear=False)
    test = make_split(rng, 1000, nonlinear=False, max_id=N_IDS + 2)  # ids 5 and 6 never seen in train
    result = fit_baselines(train, val, test, ["state"], seed=0, models=("logistic",))["logistic"]

    ids = np.unique(train[1])
    design = lambda s: np.hstack([s[0], one_hot(s[1], ids)])  # noqa: E731
    # Independent path: cold fits to tight tolerance; keep the last C before validation ROC-AUC stops improving.
    chosen, best = None, -np.inf
    for c in LOGISTIC_C:
        fit = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, tol=1e-8).fit(design(train), train[2])
        score = roc_auc_score(val[2], fit.predict_proba(design(val))[:, 1])
        if score <= best:
            break
        chosen, best = fit, score
    np.testing.assert_allclose(result.val_proba, chosen.predict_proba(design(val))[:, 1], atol=2e-3)
    np.testing.assert_allclose(result.test_proba, chosen.predict_proba(design(test))[:, 1], atol=2e-3)
    assert result.test_auroc > 0.75


def test_logistic_row_sample_keeps_each_class_share():
    y = np.r_[np.zeros(9_000), np.ones(1_000)]
    rows = _row_sample(y, 2_000, seed=0)
    assert len(rows) == 2_000 and y[rows].sum() == 200 and len(np.unique(rows)) == 2_000
    np.testing.assert_array_equal(_row_sample(y, 20_000, seed=0), np.arange(10_000))


@pytest.fixture(scope="module")
def nonlinear_results():
    rng = np.random.default_rng(1)
    splits = [make_split(rng, n, nonlinear=True) for n in (4000, 1500, 1500)]
    # One thread: OpenMP threads spin badly when other jobs share the two cores, and the result is the same.
    return splits, fit_baselines(*splits, ["state"], seed=7, recall_target=0.8, n_jobs=1)


def test_lightgbm_learns_a_nonlinear_signal(nonlinear_results):
    (_, _, test), results = nonlinear_results
    lgbm, logistic = results["lightgbm"], results["logistic"]
    assert lgbm.test_auroc > 0.85
    assert logistic.test_auroc < 0.70  # sanity: the problem really is non-linear
    assert lgbm.test_pr_auc > 2 * test[2].mean()
    assert lgbm.fit_seconds > 0


def test_same_threshold_rule_as_the_ann(nonlinear_results):
    (_, val, test), results = nonlinear_results
    for r in results.values():
        choice = choose_threshold(val[2], r.val_proba, recall_target=0.8)
        assert r.threshold == choice
        assert r.test_metrics == binary_metrics(test[2], r.test_proba, choice.threshold)
        assert r.val_auroc == ranking_metrics(val[2], r.val_proba)["auroc"]
        summary = r.summary()
        assert summary["recall_at_threshold"] == r.test_metrics["recall"]
        assert summary["false_negatives"] == r.test_metrics["fn"]
        assert summary["test_auroc"] == r.test_auroc


def test_lightgbm_is_deterministic_given_seed(nonlinear_results):
    splits, results = nonlinear_results
    again = fit_baselines(*splits, ["state"], seed=7, recall_target=0.8, models=("lightgbm",), n_jobs=1)["lightgbm"]
    np.testing.assert_array_equal(again.test_proba, results["lightgbm"].test_proba)


def test_no_categorical_columns_and_cost_mode():
    rng = np.random.default_rng(2)
    splits = [make_split(rng, n, nonlinear=False) for n in (1500, 500, 500)]
    splits = [(x, np.empty((len(x), 0), np.int64), y) for x, _, y in splits]
    results = fit_baselines(*splits, [], seed=0, cost_fn_fp=10.0, n_jobs=1)
    assert set(results) == {"logistic", "lightgbm"}
    assert all(r.threshold.method == "cost_fn_fp=10" and r.test_auroc > 0.7 for r in results.values())


def test_mismatched_columns_are_rejected():
    rng = np.random.default_rng(3)
    train, val, test = (make_split(rng, 100, nonlinear=False) for _ in range(3))
    with pytest.raises(ValueError, match="categorical"):
        fit_baselines(train, val, test, ["a", "b"], seed=0)
    with pytest.raises(ValueError, match="unknown baselines"):
        fit_baselines(train, val, test, ["a"], seed=0, models=("xgboost",))


def make_packed_split(rng: np.random.Generator, n: int):
    """A split whose x_num has 0/1 columns after its 3 continuous ones, dense and as the DataModule's PackedNumeric."""
    x_num, x_cat, _ = make_split(rng, n, nonlinear=True)
    flags = (rng.random((n, 10)) < np.linspace(0.02, 0.98, 10)).astype(np.float32)
    x_num = np.hstack([x_num, flags])
    logit = 2.0 * np.sign(x_num[:, 0] * x_num[:, 1]) + 1.5 * flags[:, 1] - flags[:, 8] + 0.5 * (x_cat[:, 0] == 2) - 2.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return (x_num, x_cat.astype(np.int32), y), (PackedNumeric.from_dense(x_num, 3), x_cat.astype(np.int32), y)


@pytest.fixture(scope="module")
def dense_and_packed():
    rng = np.random.default_rng(4)
    dense, packed = zip(*(make_packed_split(rng, n) for n in (3000, 1200, 1200)), strict=True)
    return dense, packed, fit_baselines(*dense, ["state"], seed=3, n_jobs=1)


def test_lightgbm_equals_a_dataset_from_the_dense_matrix(dense_and_packed):
    """The Arrow table (bits as booleans, ids int32) bins exactly as the dense float32 matrix the old code built."""
    (train, val, test), _, results = dense_and_packed
    matrix = lambda s: np.hstack([s[0], s[1].astype(np.float32)])  # noqa: E731
    params = lightgbm_params(seed=3, n_jobs=1)
    train_set = lgb.Dataset(matrix(train), train[2])
    booster = lgb.train(params, train_set, num_boost_round=2000, callbacks=[lgb.early_stopping(50, verbose=False)],
                        valid_sets=[lgb.Dataset(matrix(val), val[2], reference=train_set)])  # fmt: skip
    for split, proba in ((val, results["lightgbm"].val_proba), (test, results["lightgbm"].test_proba)):
        np.testing.assert_array_equal(proba, booster.predict(matrix(split), num_iteration=booster.best_iteration))


def test_packed_input_read_in_small_blocks_gives_the_dense_results(dense_and_packed, monkeypatch):
    """Blocks stitched back together (several per split here) and PackedNumeric input change no probability."""
    _, packed, dense_results = dense_and_packed
    monkeypatch.setattr(baselines, "CHUNK_ROWS", 500)
    monkeypatch.setattr(baselines, "LOGISTIC_BLOCK_ROWS", 256)
    results = fit_baselines(*packed, ["state"], seed=3, n_jobs=1)
    for name, result in results.items():
        np.testing.assert_array_equal(result.val_proba, dense_results[name].val_proba)
        np.testing.assert_array_equal(result.test_proba, dense_results[name].test_proba)


def test_logistic_training_design_equals_encoding_everything_then_selecting(monkeypatch):
    rng = np.random.default_rng(5)
    (x_num, x_cat, y), packed = make_packed_split(rng, 2000)
    encoder = OneHotEncoder(handle_unknown="ignore", dtype=np.float64).fit(x_cat)
    rows = np.sort(rng.choice(len(y), 900, replace=False))
    whole = sp.hstack([sp.csr_matrix(x_num.astype(np.float64)), encoder.transform(x_cat)], format="csr")[rows]
    monkeypatch.setattr(baselines, "LOGISTIC_BLOCK_ROWS", 128)
    design = _logistic_train_design(encoder, packed, rows)
    assert design.shape == whole.shape
    for attr in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(design, attr), getattr(whole, attr))
