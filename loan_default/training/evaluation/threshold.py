"""Choose the decision threshold on validation data: a recall target, or the cheapest FN/FP trade-off.

The caller applies the chosen threshold unchanged to test data; a loan is flagged when ``p >= threshold``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_curve

from loan_default.training.evaluation.uncertainty import wilson_lower


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold with the recall and precision it gives on the data it was chosen on.

    ``expected_cost`` (cost mode only) is the mean cost per loan in units of one false positive.
    """

    threshold: float
    method: str
    recall: float
    precision: float
    expected_cost: float | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        """Plain JSON-serialisable view."""
        return asdict(self)


def check_binary_inputs(y_true: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``(y as int8 0/1, p as float64)``; both 1-D, same non-zero length, p finite."""
    y = np.asarray(y_true).ravel()
    s = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but p has {s.size}")
    if y.size == 0:
        raise ValueError("y_true and p are empty")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    if not np.isfinite(s).all():
        raise ValueError("p contains NaN or infinite scores")
    return y.astype(np.int8), s


def confusion_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts at every distinct score used as threshold, from the highest down (sklearn's ROC curve as counts).

    Returns ``(thresholds, tp, fp)`` where ``tp[i]``/``fp[i]`` count rows with ``s >= thresholds[i]``; tied scores
    fall on the same side of every threshold. Needs both classes.
    """
    positives = int(y.sum())
    with warnings.catch_warnings():  # one class absent: its rate is NaN, and its counts are 0
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    fpr, tpr = np.nan_to_num(fpr), np.nan_to_num(tpr)
    # roc_curve starts at an extra +inf "flag nothing" point; rates times class sizes are whole counts.
    tp = np.rint(tpr[1:] * positives).astype(np.int64)
    fp = np.rint(fpr[1:] * (y.size - positives)).astype(np.int64)
    return thresholds[1:].astype(np.float64), tp, fp


def choose_threshold(
    y_true: ArrayLike,
    p: ArrayLike,
    *,
    recall_target: float | None = 0.90,
    cost_fn_fp: float | None = None,
    confidence: float | None = None,
) -> ThresholdChoice:
    """Pick a threshold on these labels; ``cost_fn_fp`` (when given) takes precedence over ``recall_target``.

    Recall mode: the highest threshold whose recall is ``>= recall_target`` (best precision meeting the target).
    With ``confidence`` (e.g. 0.9), the highest threshold whose one-sided Wilson lower bound on recall at that
    confidence meets the target, for users who must not miss defaults; when no threshold can prove it (too few
    defaults), the one with the largest lower bound, and the method says "not met".
    Cost mode: the threshold minimising ``cost_fn_fp * FN + FP`` over all distinct scores and "flag nothing";
    among equal costs the highest threshold wins.
    """
    y, s = check_binary_inputs(y_true, p)
    positives = int(y.sum())
    if positives == 0:
        raise ValueError("y_true has no positives: recall, and so the threshold, is undefined")
    thresholds, tp, fp = confusion_curve(y, s)

    if cost_fn_fp is not None:
        if not (np.isfinite(cost_fn_fp) and cost_fn_fp > 0):
            raise ValueError(f"cost_fn_fp must be a positive finite number, got {cost_fn_fp}")
        # Prepend "flag nothing" (TP = FP = 0) as the next float32 above the top score: a float64 step would round
        # back onto the top score when compared with float32 scores (numpy and torch cast the scalar down).
        nothing = np.nextafter(np.float32(thresholds[0]), np.float32(np.inf))
        thresholds = np.r_[np.float64(nothing), thresholds]
        tp = np.r_[0, tp]
        fp = np.r_[0, fp]
        cost = cost_fn_fp * (positives - tp) + fp
        i = int(np.argmin(cost))  # first minimum = highest threshold among ties
        method, expected_cost = f"cost_fn_fp={cost_fn_fp:g}", float(cost[i] / y.size)
    else:
        if recall_target is None or not (0.0 < recall_target <= 1.0):
            raise ValueError(f"recall_target must be in (0, 1] when cost_fn_fp is not given, got {recall_target}")
        # Recall rises as the threshold falls; the first index meeting the target is the highest threshold.
        if confidence is None:
            i = int(np.argmax(tp / positives >= recall_target))
            method = f"recall_target={recall_target:g}"
        else:
            if not (0.5 <= confidence < 1.0):
                raise ValueError(f"threshold confidence must be in [0.5, 1), got {confidence}")
            lower = wilson_lower(tp, positives, confidence)
            met = lower >= recall_target
            i = int(np.argmax(met)) if met.any() else int(np.argmax(lower))
            method = f"recall_target={recall_target:g} confidence={confidence:g}" + ("" if met.any() else " not met")
        expected_cost = None

    flagged = tp[i] + fp[i]
    return ThresholdChoice(
        threshold=float(thresholds[i]),
        method=method,
        recall=float(tp[i] / positives),
        precision=float(tp[i] / flagged) if flagged else 0.0,
        expected_cost=expected_cost,
    )
