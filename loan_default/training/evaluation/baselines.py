"""Logistic regression and LightGBM on the ANN's exact split and features, judged by the same threshold rule."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from loan_default.common.memory import release_free_memory
from loan_default.common.progress import progress
from loan_default.core.preprocess import CHUNK_ROWS
from loan_default.training.evaluation.metrics import binary_metrics, ranking_metrics
from loan_default.training.evaluation.threshold import ThresholdChoice, choose_threshold

# (x_num (N, F): float32 array or PackedNumeric, x_cat int (N, C), y (N,)): the DataModule's arrays for one split.
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


def _row_blocks(n: int, rows: np.ndarray | None = None, size: int | None = None) -> list:
    """Row selections of at most ``size`` (default `CHUNK_ROWS`) rows: slices of ``range(n)``, or pieces of the index
    array ``rows``. The baselines read a split a block at a time, so no whole-split dense or float64 copy is ever held
    (issue 13)."""
    size = size or CHUNK_ROWS
    if rows is None:
        return [slice(start, min(start + size, n)) for start in range(0, n, size)]
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def _logistic_design(encoder: OneHotEncoder | None, split: Split, rows: slice | np.ndarray) -> sp.csr_matrix:
    """The design matrix of ``split``'s ``rows``: float64 numeric columns (zeros not stored), then one-hot ids."""
    x_num, x_cat, _ = split
    blocks = [sp.csr_matrix(np.asarray(x_num[rows], dtype=np.float64))]
    if encoder is not None:
        blocks.append(encoder.transform(x_cat[rows]))
    return sp.hstack(blocks, format="csr")


def _logistic_train_design(encoder: OneHotEncoder | None, split: Split, rows: np.ndarray) -> sp.csr_matrix:
    """`_logistic_design` of ``rows``, block by block into arrays sized by a first counting pass.

    Stacking the blocks (``sp.vstack``) would hold them and the result at once: twice the matrix (~12 bytes a stored
    value, 29 values a row on the default data). The CSR arrays are identical, so the fit is too."""
    blocks = _row_blocks(len(rows), rows, LOGISTIC_BLOCK_ROWS)
    nnz = [np.count_nonzero(split[0][b]) + (encoder.transform(split[1][b]).nnz if encoder else 0) for b in blocks]
    n_cols = split[0].shape[1] + (sum(len(c) for c in encoder.categories_) if encoder else 0)
    index_dtype = np.int32 if max(sum(nnz), n_cols) < np.iinfo(np.int32).max else np.int64
    data, indices = np.empty(sum(nnz)), np.empty(sum(nnz), index_dtype)
    indptr = np.zeros(len(rows) + 1, index_dtype)
    row, at = 0, 0
    for block, count in zip(blocks, nnz, strict=True):
        part = _logistic_design(encoder, split, block)
        data[at : at + count], indices[at : at + count] = part.data, part.indices
        indptr[row + 1 : row + 1 + len(block)] = part.indptr[1:] + at
        row, at = row + len(block), at + count
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))


def _proba_by_block(predict, split: Split, size: int | None = None) -> np.ndarray:
    """``predict(rows)`` (P(default) of those rows) for every row of ``split``, ``size`` rows at a time (each row's
    score depends on that row alone), written into one array."""
    out = np.empty(len(split[2]))
    for rows in _row_blocks(len(out), size=size):
        out[rows] = predict(rows)
    return out


def _logistic_proba(model: LogisticRegression, encoder: OneHotEncoder | None, split: Split) -> np.ndarray:
    """P(default) for every row of ``split``, a block at a time."""
    design = partial(_logistic_design, encoder, split)
    return _proba_by_block(lambda rows: model.predict_proba(design(rows))[:, 1], split, LOGISTIC_BLOCK_ROWS)


# Inverse regularisation strengths tried, strongest first (each fit warm-starts from the previous one), and the row
# cap for the logistic fit. Unregularised (C=1) one-hot ZIP/MSA/seller columns overfit: at 100k loans C=0.01 gave
# test ROC-AUC 0.787 against 0.764 and converged in 48 lbfgs iterations instead of 773 (30.6 s -> 1.8 s); at 1M loans
# the old fit took 124 s. docs/decisions/0053-faster-stronger-logistic-baseline.md.
LOGISTIC_C = (0.001, 0.01, 0.1, 1.0)
LOGISTIC_MAX_ROWS = 200_000
# Rows encoded at a time: a block's dense float64 copy and COO indices take ~1 KB a row while it is converted.
LOGISTIC_BLOCK_ROWS = 16_384


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
    # Only the sampled rows are ever encoded: the same CSR matrix as encoding all rows, then selecting.
    x_train = _logistic_train_design(encoder, train, rows)
    release_free_memory()  # the blocks' temporaries, before lbfgs allocates (decision 0085)
    model = LogisticRegression(class_weight="balanced", solver="lbfgs", tol=1e-6, max_iter=2000, warm_start=True,
                               random_state=seed)  # fmt: skip
    best = (-np.inf, None)
    for c in LOGISTIC_C:
        model.set_params(C=c).fit(x_train, train[2][rows])
        val_p = _logistic_proba(model, encoder, val)
        score = ranking_metrics(val[2], val_p)["auroc"]
        if score <= best[0]:  # weaker regularisation only overfits more from here on: stop the path
            break
        best = (score, (val_p, _logistic_proba(model, encoder, test)))
    return best[1]


def _lgb_block(split: Split, rows: slice) -> np.ndarray:
    """Rows as LightGBM sees them when predicting: x_num then x_cat, float32 (ids are exact below 2**24)."""
    return np.hstack([np.asarray(split[0][rows], dtype=np.float32), split[1][rows].astype(np.float32)])


def _lgb_table(split: Split) -> pa.Table:
    """The same values as `_lgb_block` of every row, as an Arrow table built a block at a time: continuous columns
    float32, x_num's 0/1 columns boolean (one bit each), ids int32, 71 bytes a row on the default data.

    LightGBM converts every value to double before binning, so the Dataset (bins, then trees and predictions) is
    identical to the one built from the dense float32 matrix (268 bytes a row), which is never built."""
    x_num, x_cat, _ = split
    n_continuous = getattr(x_num, "n_continuous", x_num.shape[1])
    names = [f"x_num_{j}" for j in range(x_num.shape[1])] + [f"x_cat_{j}" for j in range(x_cat.shape[1])]
    batches = []
    for rows in _row_blocks(len(x_cat)):
        dense = np.asarray(x_num[rows], dtype=np.float32)
        # Contiguous numpy columns become Arrow arrays without a copy (Arrow's own pool holds only the bitmaps).
        columns = [pa.array(np.ascontiguousarray(dense[:, j])) for j in range(n_continuous)]
        columns += [pa.array(dense[:, j] != 0) for j in range(n_continuous, dense.shape[1])]
        columns += [pa.array(x_cat[rows, j].astype(np.int32)) for j in range(x_cat.shape[1])]
        batches.append(pa.RecordBatch.from_arrays(columns, names=names))
        del dense
    release_free_memory()  # the blocks' temporaries: LightGBM's bin sample comes next
    return pa.Table.from_batches(batches)


def _lgb_proba(booster: lgb.Booster, split: Split) -> np.ndarray:
    """P(default) for every row of ``split``, predicted a block at a time."""
    return _proba_by_block(
        lambda rows: booster.predict(_lgb_block(split, rows), num_iteration=booster.best_iteration), split
    )


def lightgbm_params(seed: int, n_jobs: int | None = None) -> dict:
    """`fit_lightgbm`'s parameters (``n_jobs`` None: every available core)."""
    return {
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
    params = lightgbm_params(seed, n_jobs)
    # Binned here, not inside lgb.train, so that the tables (dropped once binned: free_raw_data) are given back
    # before training allocates its buffers. The params go in now: they set the bin sample's seed.
    train_set = lgb.Dataset(_lgb_table(train), train[2], params=params).construct()
    val_set = lgb.Dataset(_lgb_table(val), val[2], reference=train_set).construct()
    release_free_memory()
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=2000,
        valid_sets=[val_set],
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    return _lgb_proba(booster, val), _lgb_proba(booster, test)


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
        release_free_memory()  # this baseline's temporaries, before the next one's
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
