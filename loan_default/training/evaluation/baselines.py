"""Logistic regression and LightGBM on the ANN's exact split and features, judged by the same threshold rule."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from loan_default.common.progress import progress
from loan_default.training.evaluation.metrics import binary_metrics, ranking_metrics
from loan_default.training.evaluation.threshold import ThresholdChoice, choose_threshold

# (x_num float32 (N, F), x_cat int64 (N, C), y (N,)): the DataModule's arrays for one split.
Split = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class BaselineResult:
    """One baseline's scores and its metrics under the ANN's threshold rule (chosen on val, measured on test)."""

    name: str
    val_proba: np.ndarray = field(repr=False)
    test_proba: np.ndarray = field(repr=False)
    val_auroc: float
    test_auroc: float
    test_pr_auc: float
    fit_seconds: float
    threshold: ThresholdChoice
    test_metrics: dict = field(repr=False)

    def summary(self) -> dict:
        """The report's per-baseline entry (plain JSON values)."""
        return {
            "test_auroc": self.test_auroc,
            "val_auroc": self.val_auroc,
            "test_pr_auc": self.test_pr_auc,
            "test_ks": self.test_metrics["ks"],
            "test_brier": self.test_metrics["brier"],
            "threshold": self.threshold.threshold,
            "recall_at_threshold": self.test_metrics["recall"],
            "precision_at_threshold": self.test_metrics["precision"],
            "false_negatives": self.test_metrics["false_negatives"],
            "confusion_matrix": self.test_metrics["confusion_matrix"],
            "fit_seconds": self.fit_seconds,
        }


def available_cores() -> int:
    """CPUs this process may run on (respects affinity masks and container CPU sets)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _logistic_design(encoder: OneHotEncoder | None, split: Split) -> sp.csr_matrix:
    x_num, x_cat, _ = split
    blocks = [sp.csr_matrix(x_num.astype(np.float64))]
    if encoder is not None:
        blocks.append(encoder.transform(x_cat))
    return sp.hstack(blocks, format="csr")


# Inverse regularisation strengths tried, strongest first (each fit warm-starts from the previous one), and the row
# cap for the logistic fit. Unregularised (C=1) one-hot ZIP/MSA/seller columns overfit: at 100k loans C=0.01 gave
# test ROC-AUC 0.787 against 0.764 and converged in 48 lbfgs iterations instead of 773 (30.6 s -> 1.8 s); at 1M loans
# the old fit took 124 s. docs/decisions/0053-faster-stronger-logistic-baseline.md.
LOGISTIC_C = (0.001, 0.01, 0.1, 1.0)
LOGISTIC_MAX_ROWS = 200_000


def _row_sample(y: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """At most ``max_rows`` row indices, the same share from each class (stratified), in order."""
    if len(y) <= max_rows:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = []
    for label in (0, 1):
        rows = np.flatnonzero(y == label)
        keep.append(rng.choice(rows, max(1, round(len(rows) * max_rows / len(y))), replace=False))
    return np.sort(np.concatenate(keep))


def fit_logistic(
    train: Split, val: Split, test: Split, seed: int, *, max_rows: int = LOGISTIC_MAX_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced L2 logistic regression on numeric features plus one-hot categorical ids (encoder fitted on train).

    The strength C is chosen on validation ROC-AUC (as LightGBM's rounds are): the path runs through `LOGISTIC_C` from
    the strongest regularisation and stops at the first C that does not improve on the one before; the fit reads at most ``max_rows`` training rows (stratified sample), which bounds its time on
    large tables: ~1,000 coefficients are pinned down by 200,000 rows.
    """
    encoder = None
    if train[1].shape[1]:
        # Ids unseen in train get an all-zero row: the model falls back to the intercept for that feature.
        encoder = OneHotEncoder(handle_unknown="ignore", dtype=np.float64).fit(train[1])
    rows = _row_sample(train[2], max_rows, seed)
    x_train = _logistic_design(encoder, train)[rows]
    x_val, x_test = (_logistic_design(encoder, s) for s in (val, test))
    model = LogisticRegression(class_weight="balanced", solver="lbfgs", tol=1e-6, max_iter=2000, warm_start=True,
                               random_state=seed)  # fmt: skip
    best = (-np.inf, None)
    for c in LOGISTIC_C:
        model.set_params(C=c).fit(x_train, train[2][rows])
        val_p = model.predict_proba(x_val)[:, 1]
        score = ranking_metrics(val[2], val_p)["auroc"]
        if score <= best[0]:  # weaker regularisation only overfits more from here on: stop the path
            break
        best = (score, (val_p, model.predict_proba(x_test)[:, 1]))
    return best[1]


def _lgb_matrix(split: Split) -> np.ndarray:
    # float32 halves the copy; ids below 2**24 stay exact.
    return np.hstack([split[0].astype(np.float32), split[1].astype(np.float32)])


def fit_lightgbm(
    train: Split, val: Split, test: Split, seed: int, *, n_jobs: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient-boosted trees with early stopping on val AUROC.

    Categorical ids go in as plain numbers: ids are assigned by training frequency, so this is a frequency-ordered
    encoding: native categorical splits overfit the high-cardinality fields (ZIP, MSA) within ~10 rounds. No class
    re-weighting: it cost ROC-AUC, skews probabilities, and the threshold rule is rank-based
    (docs/decisions/0006-lightgbm-categoricals.md).

    ``n_jobs`` defaults to every available core; on a machine shared with other busy processes, fewer can be faster.
    """
    params = {
        "objective": "binary",
        # AUROC, not log loss: re-weighted training skews probabilities, so val log loss would stop far too early.
        "metric": "auc",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "feature_fraction": 0.8,
        "seed": seed,
        "deterministic": True,
        # LightGBM otherwise picks row- or column-wise histograms by timing them, which breaks deterministic=True.
        "force_row_wise": True,
        "num_threads": n_jobs or available_cores(),
        "verbosity": -1,
    }
    train_set = lgb.Dataset(_lgb_matrix(train), train[2])
    val_set = lgb.Dataset(_lgb_matrix(val), val[2], reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=2000,
        valid_sets=[val_set],
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    val_p, test_p = (booster.predict(_lgb_matrix(s), num_iteration=booster.best_iteration) for s in (val, test))
    return val_p, test_p


def _check_split(name: str, split: Split, n_num: int, n_cat: int) -> None:
    x_num, x_cat, y = split
    if x_num.ndim != 2 or x_cat.ndim != 2 or len({x_num.shape[0], x_cat.shape[0], np.shape(y)[0]}) != 1:
        raise ValueError(f"{name}: x_num {x_num.shape}, x_cat {x_cat.shape} and y {np.shape(y)} do not line up")
    if x_num.shape[1] != n_num or x_cat.shape[1] != n_cat:
        raise ValueError(f"{name}: expected {n_num} numeric and {n_cat} categorical columns")
    if n_cat and x_cat.min() < 0:
        raise ValueError(f"{name}: categorical ids must be >= 0 (0 is the unknown bucket)")


def fit_baselines(
    train: Split,
    val: Split,
    test: Split,
    categorical_names: Sequence[str],
    seed: int,
    *,
    recall_target: float | None = 0.90,
    cost_fn_fp: float | None = None,
    models: Sequence[str] = ("logistic", "lightgbm"),
    n_jobs: int | None = None,
) -> dict[str, BaselineResult]:
    """Fit each baseline on train, choose its threshold on val, measure on test; ``{name: BaselineResult}``.

    Each split is ``(x_num, x_cat, y)`` exactly as the ANN sees it. ``n_jobs`` (LightGBM threads) defaults to
    every available core.
    """
    fitters = {"logistic": fit_logistic, "lightgbm": partial(fit_lightgbm, n_jobs=n_jobs)}
    unknown = set(models) - set(fitters)
    if unknown:
        raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {sorted(fitters)}")
    n_num, n_cat = train[0].shape[1], len(categorical_names)
    for name, split in (("train", train), ("val", val), ("test", test)):
        _check_split(name, split, n_num, n_cat)
    results = {}
    for name in progress(models, desc="baselines", unit="model"):
        start = time.perf_counter()
        val_p, test_p = fitters[name](train, val, test, seed)
        seconds = time.perf_counter() - start
        choice = choose_threshold(val[2], val_p, recall_target=recall_target, cost_fn_fp=cost_fn_fp)
        test_metrics = binary_metrics(test[2], test_p, choice.threshold)
        results[name] = BaselineResult(
            name=name,
            val_proba=val_p,
            test_proba=test_p,
            val_auroc=ranking_metrics(val[2], val_p)["auroc"],
            test_auroc=test_metrics["auroc"],
            test_pr_auc=test_metrics["pr_auc"],
            fit_seconds=seconds,
            threshold=choice,
            test_metrics=test_metrics,
        )
    return results
