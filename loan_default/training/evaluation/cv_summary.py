"""Cross-validation results: out-of-fold predictions, a baseline's fold models as one result, the report's `cv` section.

Every non-test row is predicted once, by the fold model that did not train on it: its out-of-fold (OOF) prediction.
The threshold rule runs on the OOF predictions (K times the defaults of one validation split); test predictions are
each model family's fold ensemble.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, logit

from loan_default.training.evaluation.baselines import BaselineResult
from loan_default.training.evaluation.metrics import binary_metrics, ranking_metrics
from loan_default.training.evaluation.threshold import choose_threshold


@dataclass
class FoldResult:
    """One fold: the table rows it held out, the ANN's and each baseline's predictions of them, and its figures."""

    fold: int  # 1-based, as the report shows it
    val_rows: np.ndarray = field(repr=False)  # loan-table row positions held out (sorted)
    ann_val_proba: np.ndarray = field(repr=False)
    best_epoch: int | None
    seconds: float
    val_defaults: int
    baselines: dict[str, BaselineResult] = field(default_factory=dict, repr=False)


def out_of_fold(rows: np.ndarray, folds: Sequence[FoldResult], proba: Sequence[np.ndarray]) -> np.ndarray:
    """Predictions ``proba[k]`` of each fold's held-out rows placed at their positions in ``rows`` (sorted table
    positions of every non-test row); raises unless the folds cover ``rows`` exactly once."""
    out = np.full(len(rows), np.nan)
    seen = np.zeros(len(rows), dtype=int)
    for fold, p in zip(folds, proba, strict=True):
        at = np.searchsorted(rows, fold.val_rows)
        if len(p) != len(at) or (at >= len(rows)).any() or (rows[np.minimum(at, len(rows) - 1)] != fold.val_rows).any():
            raise ValueError(f"fold {fold.fold} holds rows outside the non-test rows, or predictions do not line up")
        out[at] = p
        seen[at] += 1
    if (seen != 1).any():
        raise ValueError(f"{int((seen != 1).sum())} non-test rows are predicted {sorted(set(seen))} times, not once")
    return out


def pooled_baseline(
    name: str, per_fold: Sequence[BaselineResult], oof: np.ndarray, y_oof: np.ndarray, y_test: np.ndarray,
    threshold: Mapping[str, Any],
) -> BaselineResult:  # fmt: skip
    """A baseline's K fold models as one result: threshold by ``threshold``'s rule on the OOF predictions ``oof``, test
    scores the mean of the fold models' test logits (the same ensemble rule as the ANN's)."""
    test = expit(np.mean([logit(np.clip(r.test_proba, 1e-12, 1 - 1e-12)) for r in per_fold], axis=0))
    choice = choose_threshold(y_oof, oof, **threshold)
    test_metrics = binary_metrics(y_test, test, choice.threshold)
    return BaselineResult(
        name=name,
        val_proba=oof,
        test_proba=test,
        val_auroc=ranking_metrics(y_oof, oof)["auroc"],
        test_auroc=test_metrics["auroc"],
        test_pr_auc=test_metrics["pr_auc"],
        fit_seconds=sum(r.fit_seconds for r in per_fold),
        threshold=choice,
        test_metrics=test_metrics,
    )


def cv_section(folds: Sequence[FoldResult], y_of: np.ndarray, oof_auroc: dict[str, float | None]) -> dict[str, Any]:
    """metrics.json's ``cv``: fold count, each fold's rows, defaults and ROC-AUC of every model on its held-out rows,
    their mean and sample sd, and the pooled OOF ROC-AUC per model. ``y_of`` maps table row positions to labels."""
    models = ["ann", *folds[0].baselines]
    per_fold = []
    for f in folds:
        y = y_of[f.val_rows]
        entry: dict[str, Any] = {"fold": f.fold, "rows": len(f.val_rows), "defaults": int(y.sum())}
        entry["ann_auroc"] = ranking_metrics(y, f.ann_val_proba)["auroc"]
        for name, result in f.baselines.items():
            entry[f"{name}_auroc"] = result.val_auroc
        entry |= {"best_epoch": f.best_epoch, "seconds": round(f.seconds, 1)}
        per_fold.append(entry)
    summary = {}
    for name in models:
        values = [e[f"{name}_auroc"] for e in per_fold if e.get(f"{name}_auroc") is not None]
        summary[f"{name}_auroc"] = {
            "mean": statistics.fmean(values) if values else None,
            "sd": statistics.stdev(values) if len(values) > 1 else None,
        }
    return {
        "folds": len(folds),
        "per_fold": per_fold,
        "summary": summary,
        "oof_auroc": dict(oof_auroc),
    }
