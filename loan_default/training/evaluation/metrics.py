"""Binary-classification metrics as plain Python numbers, from sklearn and scipy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from loan_default.training.evaluation.threshold import check_binary_inputs


def ranking_metrics(y_true: ArrayLike, p: ArrayLike) -> dict[str, float | None]:
    """ROC-AUC, average precision and KS of any scores; None when one class is absent (they are undefined)."""
    y, s = check_binary_inputs(y_true, p)
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        return {"auroc": None, "pr_auc": None, "ks": None}
    fpr, tpr, _ = skm.roc_curve(y, s)
    return {
        "auroc": float(skm.roc_auc_score(y, s)),
        "pr_auc": float(skm.average_precision_score(y, s)),
        # TPR and FPR are the classes' survival functions, so their largest gap is the two-sample KS statistic
        # (roc_curve's dropped points lie on straight segments, never at the maximum).
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
    flagged = (s >= threshold).astype(np.int8)
    (tn, fp), (fn, tp) = skm.confusion_matrix(y, flagged, labels=[0, 1]).tolist()
    positives = tp + fn
    return {
        **ranking_metrics(y, s),
        "brier": float(skm.brier_score_loss(y, s, pos_label=1)),
        # sklearn clips at the float eps, so a confident wrong 0/1 costs a large finite loss, not infinity.
        "log_loss": float(skm.log_loss(y, s, labels=[0, 1])),
        "threshold": float(threshold),
        "recall": float(skm.recall_score(y, flagged, zero_division=0)) if positives else None,
        "precision": float(skm.precision_score(y, flagged, zero_division=0)),
        "f1": float(skm.f1_score(y, flagged, zero_division=0)),
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
