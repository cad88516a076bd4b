"""The validation report's evidence on loans the model did not train on: discrimination overall, per vintage and per
segment; calibration per risk grade and score decile with the Jeffreys test; stability (PSI/CSI); back-test.

The Jeffreys test is the ECB's PD back-test: with d defaults among n loans of a grade, the default rate has the
posterior Beta(d + 1/2, n - d + 1/2), and the one-sided p-value that the grade's PD is not underestimated is that
distribution's CDF at the mean predicted PD. A small p-value says more loans defaulted than the PD allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logit
from scipy.stats import beta
from sklearn.linear_model import LogisticRegression

from loan_default.core.bundle import default_risk_bands
from loan_default.core.drift import Reference, compare
from loan_default.training.evaluation.metrics import ranking_metrics

SEGMENTS: tuple[str, ...] = ("loan_purpose", "occupancy", "channel", "first_time_homebuyer")


def jeffreys_p_value(defaults: int, n: int, pd_: float) -> float:
    """One-sided p-value of "the PD is not underestimated": Beta(d + 1/2, n - d + 1/2) CDF at the PD."""
    return float(beta.cdf(pd_, defaults + 0.5, n - defaults + 0.5))


def calibration_cell(y: np.ndarray, p: np.ndarray, alpha: float) -> dict[str, Any]:
    """n, defaults, mean predicted PD, observed rate, Jeffreys p-value and pass (p >= alpha) of one group of loans."""
    n, d = int(y.size), int(y.sum())
    if n == 0:
        return {"n": 0, "defaults": 0, "predicted": None, "observed": None, "jeffreys_p": None, "pass": None}
    predicted = float(p.mean())
    p_value = jeffreys_p_value(d, n, predicted)
    return {"n": n, "defaults": d, "predicted": predicted, "observed": d / n, "jeffreys_p": p_value,
            "pass": bool(p_value >= alpha)}  # fmt: skip


def discrimination_cell(y: np.ndarray, p: np.ndarray, min_defaults: int) -> dict[str, Any]:
    """ROC-AUC, Gini and KS of one group; ``small`` marks cells with too few defaults or non-defaults to trust."""
    n, d = int(y.size), int(y.sum())
    ranking = ranking_metrics(y, p) if n else {"auroc": None, "ks": None}
    auc = ranking["auroc"]
    return {"n": n, "defaults": d, "default_rate": d / n if n else None, "auroc": auc,
            "gini": None if auc is None else 2 * auc - 1, "ks": ranking["ks"],
            "small": bool(min(d, n - d) < min_defaults)}  # fmt: skip


def grades(p: np.ndarray, bands: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Grade name per probability, as ``Bundle.risk_bands`` assigns them (a PD equal to an upper bound moves up)."""
    uppers = np.array([b["upper"] for b in bands[:-1]])
    names = np.array([b["name"] for b in bands], dtype=object)
    return names[np.searchsorted(uppers, p, side="right")]


def recalibration(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    """Calibration intercept and slope: the logistic fit of the outcome on the model's logit (ideal: 0 and 1)."""
    if y.min() == y.max():
        return {"intercept": None, "slope": None}
    z = logit(np.clip(p, 1e-12, 1 - 1e-12)).reshape(-1, 1)
    fit = LogisticRegression(C=np.inf, max_iter=1000).fit(z, y)
    return {"intercept": float(fit.intercept_[0]), "slope": float(fit.coef_[0, 0])}


def _by(keys: pd.Series, fn) -> dict[str, Any]:
    """``fn(row positions)`` per distinct key, keys sorted; missing keys grouped as "missing"."""
    text = keys.astype("string").fillna("missing").to_numpy()
    return {str(k): fn(np.flatnonzero(text == k)) for k in sorted(set(text))}


def by_vintage(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, min_defaults: int) -> dict[str, Any]:
    """Discrimination per origination year, and per quarter when the median quarter holds ``min_defaults`` defaults."""
    if "vintage_year" not in frame:
        return {}
    cell = lambda rows: discrimination_cell(y[rows], p[rows], min_defaults)  # noqa: E731
    out = {"year": _by(frame["vintage_year"], cell)}
    if "vintage" in frame:
        per_quarter = pd.Series(y).groupby(frame["vintage"].astype("string").to_numpy()).sum()
        if len(per_quarter) and per_quarter.median() >= min_defaults:
            out["quarter"] = _by(frame["vintage"], cell)
    return out


def calibration(y: np.ndarray, p: np.ndarray, threshold: float, alpha: float, bands=None) -> dict[str, Any]:
    """Per grade (the bundle's risk bands), per score decile and for the portfolio; with recalibration fit."""
    bands = bands or default_risk_bands(threshold)
    grade = grades(p, bands)
    per_grade = {b["name"]: calibration_cell(y[grade == b["name"]], p[grade == b["name"]], alpha) for b in bands}
    edges = np.unique(np.quantile(p, np.linspace(0, 1, 11)))
    decile = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    deciles = [calibration_cell(y[decile == k], p[decile == k], alpha) for k in np.unique(decile)]
    return {
        "grades": per_grade,
        "portfolio": calibration_cell(y, p, alpha),
        "deciles": deciles,
        "fit": recalibration(y, p),
        "alpha": alpha,
        "failing_grades": [name for name, c in per_grade.items() if c["pass"] is False],
    }


def stability(reference: Reference, scores: np.ndarray, frame: pd.DataFrame) -> dict[str, Any]:
    """PSI of the score and CSI per field against the training reference (``loan_default.core.drift``)."""
    result = compare(reference, scores, frame)
    keep = ("psi", "light", "missing_rate_ref", "missing_rate", "out_of_range_share", "new_categories")
    return {
        "psi_score": result["psi_score"],
        "psi_score_light": result["score_light"],
        "csi": {name: {k: c[k] for k in keep} for name, c in result["csi"].items()},
        "fields_red": result["fields_red"],
        "fields_amber": result["fields_amber"],
        "psi_floor": result["psi_floor"],
        "status": result["status"],
    }


def backtest(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, alpha: float, min_defaults: int) -> dict[str, Any]:
    """Observed against predicted default rate per later vintage, with the Jeffreys test and ROC-AUC per vintage."""
    key = "vintage" if "vintage" in frame else "vintage_year"
    return _by(frame[key], lambda rows: {**calibration_cell(y[rows], p[rows], alpha),
                                         "auroc": discrimination_cell(y[rows], p[rows], min_defaults)["auroc"]})  # fmt: skip


def validate(
    frame: pd.DataFrame,
    p: np.ndarray,
    *,
    threshold: float,
    reference: Reference | None = None,
    later: tuple[pd.DataFrame, np.ndarray] | None = None,
    alpha: float = 0.05,
    min_defaults: int = 20,
    segments: Sequence[str] = SEGMENTS,
    label: str = "default",
) -> dict[str, Any]:
    """The ``validation`` entry of metrics.json for the loans in ``frame`` scored ``p`` (the test split).

    ``reference``: training distributions for PSI/CSI. ``later``: out-of-time loans and their scores for the
    back-test per vintage (only under an out-of-time split). ``alpha``: level of the Jeffreys test; a grade fails when
    its p-value is below it. ``min_defaults``: cells with fewer defaults (or non-defaults) are marked ``small``.
    """
    y = frame[label].to_numpy().astype(np.int64)
    p = np.asarray(p, dtype=np.float64)
    if y.size != p.size:
        raise ValueError(f"validation: {y.size} loans but {p.size} scores")
    overall = discrimination_cell(y, p, min_defaults)
    out: dict[str, Any] = {
        "n": overall["n"],
        "defaults": overall["defaults"],
        "auroc": overall["auroc"],
        "gini": overall["gini"],
        "ks": overall["ks"],
        "min_defaults": min_defaults,
        "by_vintage": by_vintage(frame, y, p, min_defaults),
        "by_segment": {
            s: _by(frame[s], lambda rows: discrimination_cell(y[rows], p[rows], min_defaults))
            for s in segments
            if s in frame
        },
    }
    cal = calibration(y, p, threshold, alpha)
    out["calibration"] = cal.pop("grades")  # per grade: n, predicted, observed, jeffreys_p, pass
    out.update({f"calibration_{k}": v for k, v in cal.items()})
    if reference is not None:
        out.update(stability(reference, p, frame))
    if later is not None:
        later_frame, later_p = later
        out["backtest"] = backtest(later_frame, later_frame[label].to_numpy().astype(np.int64),
                                   np.asarray(later_p, dtype=np.float64), alpha, min_defaults)  # fmt: skip
    return out
