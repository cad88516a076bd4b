"""Confidence intervals for the report: ROC-AUC and paired AUC differences by DeLong, recall by Wilson.

DeLong's variance uses the fast midrank form of Sun & Xu (2014, IEEE Signal Processing Letters 21(11)): O(n log n)
per model instead of the O(m n) pair kernel, and the same structural components give the covariance of two models
scored on the same rows, hence the paired difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm, rankdata


def _check(y_true: ArrayLike, scores: Sequence[ArrayLike]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.vstack([np.asarray(x, dtype=np.float64).ravel() for x in scores])
    if s.shape[1] != y.size:
        raise ValueError(f"y_true has {y.size} values but scores have {s.shape[1]}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return y.astype(bool), s


def delong(y_true: ArrayLike, scores: Sequence[ArrayLike]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(aucs (k,), covariance (k, k))`` of k models' ROC-AUCs on the same rows; None when a class has < 2 rows."""
    y, s = _check(y_true, scores)
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        return None
    # Midranks (ties count half): within positives, within negatives, and over both.
    tx = rankdata(pos, axis=1)
    ty = rankdata(neg, axis=1)
    tz = rankdata(np.hstack([pos, neg]), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # per default: share of non-defaults scored below it
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per non-default: share of defaults scored above it
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def auroc_ci(y_true: ArrayLike, p: ArrayLike, level: float = 0.95) -> dict[str, float] | None:
    """ROC-AUC with DeLong's standard error and a normal ``level`` interval clipped to [0, 1]; None if undefined."""
    result = delong(y_true, [p])
    if result is None:
        return None
    auc, se = float(result[0][0]), float(np.sqrt(max(result[1][0, 0], 0.0)))
    z = norm.ppf(0.5 + level / 2)
    return {"auroc": auc, "low": max(0.0, auc - z * se), "high": min(1.0, auc + z * se), "se": se, "level": level}


def auroc_diff_ci(y_true: ArrayLike, p_a: ArrayLike, p_b: ArrayLike, level: float = 0.95) -> dict[str, float] | None:
    """Paired ROC-AUC difference a − b on the same rows, DeLong interval and two-sided p-value of "no difference"."""
    result = delong(y_true, [p_a, p_b])
    if result is None:
        return None
    aucs, cov = result
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    z = norm.ppf(0.5 + level / 2)
    p_value = float(2 * norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return {"diff": diff, "low": diff - z * se, "high": diff + z * se, "se": se, "p_value": p_value, "level": level}


def wilson_interval(successes: ArrayLike, trials: ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Wilson score interval of a binomial proportion (arrays broadcast); trials must be > 0."""
    return _wilson(successes, trials, norm.ppf(0.5 + level / 2))


def wilson_lower(successes: ArrayLike, trials: ArrayLike, confidence: float) -> np.ndarray:
    """One-sided Wilson lower bound: the true proportion is above it with probability ``confidence``."""
    return _wilson(successes, trials, norm.ppf(confidence))[0]


def _wilson(successes: ArrayLike, trials: ArrayLike, z: float) -> tuple[np.ndarray, np.ndarray]:
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("Wilson interval needs 0 <= successes <= trials and trials > 0")
    phat = k / n
    centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def recall_ci(true_positives: int, positives: int, level: float = 0.95) -> dict[str, float] | None:
    """Recall tp / positives with its Wilson interval; None without positives."""
    if positives <= 0:
        return None
    low, high = wilson_interval(true_positives, positives, level)
    return {"recall": true_positives / positives, "low": float(low), "high": float(high), "level": level,
            "method": "wilson", "defaults": int(positives)}  # fmt: skip


def report_intervals(
    y_test: ArrayLike, p_test: ArrayLike, test_metrics: dict, baselines: dict, level: float = 0.95
) -> dict[str, Any]:
    """The intervals of metrics.json: ``test_auroc_ci``, ``recall_at_threshold_ci``, per baseline ``test_auroc_ci``
    and ``recall_at_threshold_ci``, and ``auroc_diff_vs_best_ci`` (ANN − the baseline with the best validation
    ROC-AUC, chosen on validation so the test split does not pick its own comparison; paired on the same test rows).

    ``baselines`` maps a name to a result with ``test_proba``, ``val_auroc`` and ``test_metrics`` (``BaselineResult``).
    """
    out: dict[str, Any] = {
        "test_auroc_ci": auroc_ci(y_test, p_test, level),
        "recall_at_threshold_ci": recall_ci(test_metrics["tp"], test_metrics["positives"], level),
        "baselines": {
            name: {
                "test_auroc_ci": auroc_ci(y_test, r.test_proba, level),
                "recall_at_threshold_ci": recall_ci(r.test_metrics["tp"], r.test_metrics["positives"], level),
            }
            for name, r in baselines.items()
        },
        "auroc_diff_vs_best_ci": None,
    }
    scored = {name: r for name, r in baselines.items() if r.val_auroc is not None}
    if scored:
        best = max(scored, key=lambda name: scored[name].val_auroc)
        diff = auroc_diff_ci(y_test, p_test, scored[best].test_proba, level)
        out["auroc_diff_vs_best_ci"] = None if diff is None else {"baseline": best, **diff}
    return out
