"""Binary-classification metrics as plain Python numbers, computed from one sort of the scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from loan_default.training.evaluation.threshold import check_binary_inputs, confusion_curve


def ranking_metrics(y_true: ArrayLike, p: ArrayLike) -> dict[str, float | None]:
    """ROC-AUC, average precision and KS of any scores; None when one class is absent (they are undefined)."""
    y, s = check_binary_inputs(y_true, p)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return {"auroc": None, "pr_auc": None, "ks": None}
    _, tp, fp = confusion_curve(y, s)
    tpr = np.r_[0.0, tp / positives]
    fpr = np.r_[0.0, fp / negatives]
    precision = tp / (tp + fp)
    return {
        # Trapezoids between distinct thresholds give tied scores half credit, as Mann-Whitney does.
        "auroc": float(np.trapezoid(tpr, fpr)),
        # Step-wise (not interpolated) area, as sklearn's average_precision_score.
        "pr_auc": float(np.sum(np.diff(tpr) * precision)),
        # TPR and FPR are the classes' survival functions, so their largest gap is the two-sample KS statistic.
        "ks": float(np.max(np.abs(tpr - fpr))),
    }


def binary_metrics(y_true: ArrayLike, p: ArrayLike, threshold: float) -> dict:
    """Ranking, calibration and at-threshold metrics for probabilities ``p`` (flag when ``p >= threshold``).

    Keys: auroc, pr_auc, ks, brier, log_loss, recall, precision, f1, tp, fp, tn, fn, false_negatives,
    confusion_matrix ([[tn, fp], [fn, tp]]), n, positives, default_rate, threshold. Values are Python floats/ints;
    ratios with a zero denominator are None (recall without positives) or 0.0 (precision/f1 with nothing flagged).
    """
    y, s = check_binary_inputs(y_true, p)
    if s.min() < 0.0 or s.max() > 1.0:
        raise ValueError("p must be probabilities in [0, 1]")
    flagged = s >= threshold
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    tn = int(y.size - tp - fp - fn)
    positives = tp + fn
    recall = tp / positives if positives else None
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    # Clip like sklearn so a confident wrong 0/1 costs a large finite loss, not infinity.
    eps = np.finfo(np.float64).eps
    sc = np.clip(s, eps, 1.0 - eps)
    log_loss = -np.mean(np.where(y == 1, np.log(sc), np.log1p(-sc)))
    return {
        **ranking_metrics(y, s),
        "brier": float(np.mean((s - y) ** 2)),
        "log_loss": float(log_loss),
        "threshold": float(threshold),
        "recall": None if recall is None else float(recall),
        "precision": float(precision),
        "f1": float(f1),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "false_negatives": fn,
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "n": int(y.size),
        "positives": positives,
        "default_rate": float(positives / y.size),
    }


def split_summary(y_true: ArrayLike) -> dict[str, int | float]:
    """``{"rows", "default_rate"}`` for one split, the layout of the report's ``splits`` entry."""
    y = np.asarray(y_true).ravel()
    return {"rows": int(y.size), "default_rate": float(y.mean()) if y.size else 0.0}


def mean_abs_shap(
    shap_values: ArrayLike,
    feature_names: Sequence[str],
    *,
    top_k: int | None = None,
    display_names: Mapping[str, str] | None = None,
) -> list[dict[str, float | str]]:
    """Features ranked by mean |SHAP| over rows: ``[{"feature": name, "mean_abs_shap": v}, ...]``, largest first."""
    values = np.asarray(shap_values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(feature_names):
        raise ValueError(f"shap_values must be (N, {len(feature_names)}), got {values.shape}")
    importance = np.abs(values).mean(axis=0)
    order = np.argsort(-importance, kind="stable")[:top_k]
    names = display_names or {}
    return [
        {"feature": names.get(feature_names[j], feature_names[j]), "mean_abs_shap": float(importance[j])} for j in order
    ]
