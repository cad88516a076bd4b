"""choose_threshold against a brute-force loop over every candidate threshold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loan_default.training.evaluation.threshold import choose_threshold


def counts(y: np.ndarray, p: np.ndarray, t: float) -> tuple[int, int, int]:
    flagged = p >= t
    return int(np.sum(flagged & (y == 1))), int(np.sum(flagged & (y == 0))), int(np.sum(~flagged & (y == 1)))


def brute_recall(y: np.ndarray, p: np.ndarray, target: float) -> float:
    best = -np.inf
    for t in np.unique(p):
        tp, _, fn = counts(y, p, t)
        if tp / (tp + fn) >= target:
            best = max(best, t)
    return float(best)


def brute_cost(y: np.ndarray, p: np.ndarray, c: float) -> tuple[float, float]:
    """(min cost, highest threshold reaching it); np.inf stands for "flag nothing"."""
    best_cost, best_t = np.inf, -np.inf
    for t in [*np.unique(p), np.inf]:
        _, fp, fn = counts(y, p, t)
        cost = c * fn + fp
        if cost < best_cost or (cost == best_cost and t > best_t):
            best_cost, best_t = cost, t
    return float(best_cost), float(best_t)


# Few distinct scores, so ties are the rule rather than the exception.
labelled_scores = st.integers(2, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: sum(y) > 0),
        st.lists(st.integers(0, 8).map(lambda k: k / 8), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(labelled_scores, st.sampled_from([0.01, 0.5, 0.8, 0.9, 0.95, 1.0]))
def test_recall_mode_matches_brute_force(data, target):
    y, p = np.array(data[0]), np.array(data[1])
    choice = choose_threshold(y, p, recall_target=target)
    assert choice.threshold == brute_recall(y, p, target)
    tp, fp, fn = counts(y, p, choice.threshold)
    assert choice.recall == tp / (tp + fn) >= target
    assert choice.precision == pytest.approx(tp / (tp + fp))
    assert choice.expected_cost is None
    assert choice.method == f"recall_target={target:g}"


@settings(max_examples=200, deadline=None)
@given(labelled_scores, st.sampled_from([0.1, 1.0, 3.0, 20.0, 1000.0]))
def test_cost_mode_matches_brute_force(data, c):
    y, p = np.array(data[0]), np.array(data[1])
    choice = choose_threshold(y, p, cost_fn_fp=c)
    best_cost, best_t = brute_cost(y, p, c)
    tp, fp, fn = counts(y, p, choice.threshold)
    assert c * fn + fp == pytest.approx(best_cost)
    assert choice.expected_cost == pytest.approx(best_cost / y.size)
    if np.isinf(best_t):
        assert choice.threshold > p.max() and tp + fp == 0 and choice.precision == 0.0
    else:
        assert choice.threshold == best_t
    assert choice.recall == tp / (tp + fn)


def test_ties_are_flagged_together():
    # Three loans share the top score; two of them default. Recall 2/3 needs all three flagged at 0.9.
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.9, 0.9, 0.2, 0.1, 0.1])
    choice = choose_threshold(y, p, recall_target=0.6)
    assert choice.threshold == 0.9
    assert (choice.recall, choice.precision) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert choose_threshold(y, p, recall_target=0.7).threshold == 0.2


def test_cost_mode_takes_precedence_and_can_flag_nothing():
    y = np.array([0] * 99 + [1])
    p = np.linspace(0, 1, 100)[::-1]  # the only default has the lowest score
    choice = choose_threshold(y, p, recall_target=0.9, cost_fn_fp=5.0)
    assert choice.method == "cost_fn_fp=5"
    assert choice.threshold > 1.0 and choice.expected_cost == pytest.approx(5 / 100)


def test_flag_nothing_holds_for_float32_scores():
    # A caller applies the threshold to float32 model output; numpy and torch compare a Python float in float32.
    p = np.array([0.1, 0.3, 0.9], dtype=np.float32)
    choice = choose_threshold([0, 1, 0], p, cost_fn_fp=0.5)  # flagging anything costs more
    assert not (p >= choice.threshold).any()
    assert not (p.astype(np.float64) >= choice.threshold).any()


def test_float32_scores_round_trip():
    rng = np.random.default_rng(0)
    p = rng.random(1000).astype(np.float32)
    y = (rng.random(1000) < p).astype(int)
    t = choose_threshold(y, p, recall_target=0.9).threshold
    tp, _, fn = counts(y, p, t)
    assert tp / (tp + fn) >= 0.9


@pytest.mark.parametrize(
    ("y", "p", "kwargs", "message"),
    [
        ([0, 0], [0.1, 0.2], {}, "no positives"),
        ([0, 2], [0.1, 0.2], {}, "only 0 and 1"),
        ([0, 1], [0.1], {}, "values"),
        ([0, 1], [0.1, np.nan], {}, "NaN"),
        ([0, 1], [0.1, 0.2], {"recall_target": 0.0}, "recall_target"),
        ([0, 1], [0.1, 0.2], {"recall_target": None}, "recall_target"),
        ([0, 1], [0.1, 0.2], {"cost_fn_fp": -1.0}, "cost_fn_fp"),
    ],
)
def test_bad_input_is_rejected(y, p, kwargs, message):
    with pytest.raises(ValueError, match=message):
        choose_threshold(y, p, **kwargs)
