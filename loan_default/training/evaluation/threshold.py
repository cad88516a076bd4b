"""Choose the decision threshold on validation data: a recall target, or the cheapest FN/FP trade-off.

The caller applies the chosen threshold unchanged to test data; a loan is flagged when ``p >= threshold``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike


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
    """Counts at every distinct score used as threshold, from the highest down.

    Returns ``(thresholds, tp, fp)`` where ``tp[i]``/``fp[i]`` count rows with ``s >= thresholds[i]``.
    One stable sort; tied scores fall on the same side of every threshold, so ties are exact.
    """
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order].astype(np.int64)
    # The last row of each run of equal scores closes that threshold's group.
    last_of_group = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last_of_group]
    fp = (last_of_group + 1) - tp
    return s_sorted[last_of_group], tp, fp


def choose_threshold(
    y_true: ArrayLike,
    p: ArrayLike,
    *,
    recall_target: float | None = 0.90,
    cost_fn_fp: float | None = None,
) -> ThresholdChoice:
    """Pick a threshold on these labels; ``cost_fn_fp`` (when given) takes precedence over ``recall_target``.

    Recall mode: the highest threshold whose recall is ``>= recall_target`` (best precision meeting the target).
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
        i = int(np.argmax(tp / positives >= recall_target))
        method, expected_cost = f"recall_target={recall_target:g}", None

    flagged = tp[i] + fp[i]
    return ThresholdChoice(
        threshold=float(thresholds[i]),
        method=method,
        recall=float(tp[i] / positives),
        precision=float(tp[i] / flagged) if flagged else 0.0,
        expected_cost=expected_cost,
    )
