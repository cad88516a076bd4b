"""Evaluation plots, one PNG each, drawn on standalone Figures (no pyplot state, so nothing to leak or show)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

# Plots are files written by headless runs; Agg needs no display. shap imports pyplot, so pick the backend first,
# but leave alone a backend the caller's pyplot already chose.
if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

import numpy as np  # noqa: E402
import shap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402

from loan_default.training.evaluation.metrics import binary_metrics, ranking_metrics  # noqa: E402
from loan_default.training.evaluation.threshold import check_binary_inputs, confusion_curve  # noqa: E402

Scores = Mapping[str, ArrayLike] | ArrayLike


def _named(scores: Scores) -> dict[str, np.ndarray]:
    """Accept one score array or ``{model name: scores}``."""
    if isinstance(scores, Mapping):
        return {name: np.asarray(s, dtype=np.float64) for name, s in scores.items()}
    return {"model": np.asarray(scores, dtype=np.float64)}


def _curve(y_true: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, recall, false positive rate, precision)`` at every distinct score; needs both classes."""
    y, s = check_binary_inputs(y_true, p)
    thresholds, tp, fp = confusion_curve(y, s)
    if tp[-1] == 0 or fp[-1] == 0:
        raise ValueError("curves need both defaults and non-defaults in y_true")
    return thresholds, tp / tp[-1], fp / fp[-1], tp / (tp + fp)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_roc(y_true: ArrayLike, scores: Scores, path: str | Path) -> Path:
    """ROC curves of one or several models (e.g. ANN, baselines, oracle) on the same labels, AUC in the legend."""
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    for name, s in _named(scores).items():
        _, recall, fpr, _ = _curve(y_true, s)
        auc = ranking_metrics(y_true, s)["auroc"]
        ax.plot(np.r_[0, fpr], np.r_[0, recall], label=f"{name} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set(xlabel="False positive rate", ylabel="True positive rate (recall)", title="ROC curve")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(y_true: ArrayLike, scores: Scores, path: str | Path) -> Path:
    """Precision-recall curves with average precision in the legend and the default rate as the chance line."""
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    for name, s in _named(scores).items():
        _, recall, _, precision = _curve(y_true, s)
        ap = ranking_metrics(y_true, s)["pr_auc"]
        # Precision at each step covers the recall gained there ("pre"), the area that average precision sums.
        ax.step(recall, precision, where="pre", label=f"{name} (AP = {ap:.3f})")
    rate = float(np.mean(np.asarray(y_true)))
    ax.axhline(rate, color="grey", linestyle="--", linewidth=1, label=f"default rate ({rate:.3f})")
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return _save(fig, path)


def calibration_bins(y_true: ArrayLike, p: ArrayLike, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Quantile bins of ``p`` (defaults are rare, so equal-width bins would put nearly all loans in the first).

    Returns per non-empty bin: ``mean_predicted``, ``observed_rate``, ``count``. Kept by hand: sklearn's
    ``calibration_curve(strategy="quantile")`` gives the same rates but not the per-bin counts the plot annotates.
    """
    y, s = check_binary_inputs(y_true, p)
    edges = np.unique(np.quantile(s, np.linspace(0, 1, n_bins + 1)))
    bin_of = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
    count = np.bincount(bin_of, minlength=len(edges))
    keep = count > 0
    return {
        "mean_predicted": np.bincount(bin_of, weights=s, minlength=len(edges))[keep] / count[keep],
        "observed_rate": np.bincount(bin_of, weights=y, minlength=len(edges))[keep] / count[keep],
        "count": count[keep],
    }


def plot_calibration(y_true: ArrayLike, p: ArrayLike, path: str | Path, n_bins: int = 10) -> Path:
    """Reliability diagram (observed default rate against mean predicted PD per bin, loans per bin annotated)
    above a histogram of the predictions."""
    bins = calibration_bins(y_true, p, n_bins)
    fig = Figure(figsize=(6, 7))
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1))
    hi = float(max(bins["mean_predicted"].max(), bins["observed_rate"].max())) * 1.08 or 1.0
    top.plot([0, hi], [0, hi], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    top.plot(bins["mean_predicted"], bins["observed_rate"], marker="o", label="model")
    for x, y, count in zip(bins["mean_predicted"], bins["observed_rate"], bins["count"], strict=True):
        top.annotate(f"n={count:,}", (x, y), xytext=(4, -10), textcoords="offset points", fontsize=7)
    top.set(
        xlabel="Mean predicted probability of default",
        ylabel="Observed default rate",
        title="Calibration (equal-count bins)",
        xlim=(0, hi),
        ylim=(0, hi),
    )
    top.legend(loc="upper left")
    bottom.hist(np.asarray(p, dtype=np.float64), bins=50, log=True)
    bottom.set(xlabel="Predicted probability of default", ylabel="Loans (log)")
    return _save(fig, path)


def plot_threshold_curves(y_true: ArrayLike, p: ArrayLike, threshold: float, path: str | Path) -> Path:
    """Recall and precision as the threshold moves, with the chosen threshold marked."""
    thresholds, recall, _, precision = _curve(y_true, p)
    at = binary_metrics(y_true, p, threshold)
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    # Value at thresholds[i] holds down to the next lower distinct score: "post" steps on a falling x.
    ax.step(thresholds, recall, where="post", label="recall")
    ax.step(thresholds, precision, where="post", label="precision")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.annotate(
        f"threshold {threshold:.4f}\nrecall {at['recall']:.3f}, precision {at['precision']:.3f}",
        xy=(threshold, 1.0),
        xytext=(6, -28),
        textcoords="offset points",
        fontsize=9,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9},
    )
    ax.set(xlabel="Threshold (flag when p >= threshold)", ylabel="Rate", title="Recall and precision by threshold")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="center right")
    return _save(fig, path)


def plot_confusion_matrix(y_true: ArrayLike, p: ArrayLike, threshold: float, path: str | Path) -> Path:
    """Confusion matrix at the threshold, each cell annotated with its count."""
    m = binary_metrics(y_true, p, threshold)
    cm = np.array(m["confusion_matrix"])
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax)
    labels = ("no default", "default")
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set(xlabel="Predicted", ylabel="Actual", title=f"Confusion matrix at threshold {threshold:.4f}")
    for (i, j), count in np.ndenumerate(cm):
        dark = count > cm.max() / 2
        ax.text(j, i, f"{count:,}", ha="center", va="center", color="white" if dark else "black", fontsize=12)
    return _save(fig, path)


def make_explanation(
    shap_values: ArrayLike,
    feature_values: ArrayLike,
    feature_names: Sequence[str],
    base_value: float | ArrayLike,
    display_names: Mapping[str, str] | None = None,
) -> shap.Explanation:
    """``shap.Explanation`` with readable names (raw explainer output carries neither base values nor names)."""
    values = np.asarray(shap_values, dtype=np.float64)
    data = np.asarray(feature_values, dtype=np.float64)
    if values.ndim != 2 or values.shape != data.shape or values.shape[1] != len(feature_names):
        raise ValueError(
            f"shap_values {values.shape} and feature_values {data.shape} must both be (N, {len(feature_names)})"
        )
    names = display_names or {}
    base = np.broadcast_to(np.asarray(base_value, dtype=np.float64), (values.shape[0],))
    return shap.Explanation(values, base, data, feature_names=[names.get(n, n) for n in feature_names])


def _shap_figure(explanation: shap.Explanation, max_display: int) -> tuple[Figure, object]:
    rows = min(explanation.shape[1], max_display)
    fig = Figure(figsize=(9, 0.45 * rows + 1.8))
    return fig, fig.add_subplot()


def plot_shap_beeswarm(
    shap_values: ArrayLike,
    feature_values: ArrayLike,
    feature_names: Sequence[str],
    base_value: float | ArrayLike,
    path: str | Path,
    *,
    display_names: Mapping[str, str] | None = None,
    max_display: int = 15,
) -> Path:
    """SHAP beeswarm: each loan's contribution per feature, coloured by the feature's value."""
    explanation = make_explanation(shap_values, feature_values, feature_names, base_value, display_names)
    fig, ax = _shap_figure(explanation, max_display)
    shap.plots.beeswarm(explanation, max_display=max_display, ax=ax, show=False, plot_size=None)
    return _save(fig, path)


def plot_shap_bar(
    shap_values: ArrayLike,
    feature_values: ArrayLike,
    feature_names: Sequence[str],
    base_value: float | ArrayLike,
    path: str | Path,
    *,
    display_names: Mapping[str, str] | None = None,
    max_display: int = 15,
) -> Path:
    """Mean |SHAP| per feature: the global importance ranking."""
    explanation = make_explanation(shap_values, feature_values, feature_names, base_value, display_names)
    fig, ax = _shap_figure(explanation, max_display)
    shap.plots.bar(explanation, max_display=max_display, ax=ax, show=False)
    return _save(fig, path)


LIGHT_COLOURS = {"green": "#2e7d32", "amber": "#f9a825", "red": "#c62828", None: "#9e9e9e"}


def plot_grade_calibration(validation: Mapping, path: str | Path) -> Path:
    """Predicted against observed default rate per risk grade; grades failing the Jeffreys test in red."""
    grades = validation["calibration"]
    names = list(grades)
    x = np.arange(len(names))
    predicted = [grades[g]["predicted"] or 0.0 for g in names]
    observed = [grades[g]["observed"] or 0.0 for g in names]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.bar(x - 0.2, predicted, 0.4, label="mean predicted PD", color="#90a4ae")
    colours = ["#c62828" if grades[g]["pass"] is False else "#1565c0" for g in names]
    ax.bar(x + 0.2, observed, 0.4, label="observed default rate (red: Jeffreys test fails)", color=colours)
    for i, g in enumerate(names):
        ax.annotate(f"n={grades[g]['n']:,}", (i, max(predicted[i], observed[i])), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names)
    ax.set(xlabel="Risk grade", ylabel="Default rate", title="Calibration per risk grade (test split)")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_vintage_discrimination(validation: Mapping, path: str | Path) -> Path:
    """Gini per origination vintage (quarters when there are enough defaults); small cells hollow."""
    by = validation["by_vintage"]
    cells = by.get("quarter") or by.get("year") or {}
    names = list(cells)
    gini = np.array([np.nan if cells[v]["gini"] is None else cells[v]["gini"] for v in names], dtype=np.float64)
    small = np.array([cells[v]["small"] for v in names], dtype=bool)
    fig = Figure(figsize=(max(6, 0.35 * len(names) + 2), 4.5))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.plot(x, gini, color="#1565c0", linewidth=1)
    ax.scatter(x[~small], gini[~small], color="#1565c0", label="Gini")
    ax.scatter(x[small], gini[small], facecolors="none", edgecolors="#1565c0", label="small cell (few defaults)")
    if validation.get("gini") is not None:
        ax.axhline(validation["gini"], color="grey", linestyle="--", linewidth=1, label="all test loans")
    ax.set_xticks(x, names, rotation=60, fontsize=8)
    ax.set(xlabel="Origination vintage", ylabel="Gini (2 AUC - 1)", title="Discrimination by vintage")
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_stability(validation: Mapping, path: str | Path) -> Path:
    """PSI of the score and CSI of each field as bars in their traffic-light colours, with the 0.1 / 0.25 bands."""
    rows = [("score (PSI)", validation.get("psi_score"), validation.get("psi_score_light"))]
    csi = validation.get("csi") or {}
    rows += sorted(((f, c["psi"], c["light"]) for f, c in csi.items()), key=lambda r: -(r[1] or 0.0))
    fig = Figure(figsize=(7, 0.28 * len(rows) + 1.5))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [r[1] or 0.0 for r in rows], color=[LIGHT_COLOURS[r[2]] for r in rows])
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    for cut in (0.1, 0.25):
        ax.axvline(cut, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="PSI / CSI (training vs test)", title="Population stability")
    return _save(fig, path)


def plot_backtest(validation: Mapping, path: str | Path) -> Path:
    """Observed against predicted default rate per later vintage (out-of-time back-test); failing vintages red."""
    cells = validation["backtest"]
    names = list(cells)
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6, 0.35 * len(names) + 2), 4.5))
    ax = fig.add_subplot()
    ax.plot(x, [cells[v]["predicted"] for v in names], marker="o", color="#90a4ae", label="mean predicted PD")
    ax.plot(x, [cells[v]["observed"] for v in names], color="#1565c0", label="observed default rate")
    failing = [i for i, v in enumerate(names) if cells[v]["pass"] is False]
    ax.scatter(x, [cells[v]["observed"] for v in names], color=["#c62828" if i in failing else "#1565c0" for i in x])
    ax.set_xticks(x, names, rotation=60, fontsize=8)
    ax.set(
        xlabel="Origination vintage", ylabel="Default rate", title="Back-test on later vintages (red: Jeffreys fails)"
    )
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_validation(out_dir: str | Path, validation: Mapping) -> dict[str, Path]:
    """The validation report's plots for the sections it has."""
    out = Path(out_dir)
    paths = {"grade_calibration": plot_grade_calibration(validation, out / "grade_calibration.png")}
    if validation.get("by_vintage"):
        paths["vintage_gini"] = plot_vintage_discrimination(validation, out / "vintage_gini.png")
    if validation.get("csi") is not None:
        paths["stability"] = plot_stability(validation, out / "stability.png")
    if validation.get("backtest"):
        paths["backtest"] = plot_backtest(validation, out / "backtest.png")
    return paths


def plot_all(
    out_dir: str | Path,
    y_true: ArrayLike,
    p: ArrayLike,
    threshold: float,
    *,
    model_name: str = "ANN",
    others: Mapping[str, ArrayLike] | None = None,
    shap_values: ArrayLike | None = None,
    shap_feature_values: ArrayLike | None = None,
    feature_names: Sequence[str] | None = None,
    base_value: float | ArrayLike = 0.0,
    display_names: Mapping[str, str] | None = None,
    validation: Mapping | None = None,
) -> dict[str, Path]:
    """Write every plot into ``out_dir``; returns ``{plot name: path}``.

    ``others`` are extra test-set scores drawn on the ROC/PR plots (baselines, the synthetic oracle PD).
    The SHAP plots are drawn when ``shap_values``, ``shap_feature_values`` and ``feature_names`` are all given.
    """
    out = Path(out_dir)
    scores = {model_name: p, **(others or {})}
    paths = {
        "roc": plot_roc(y_true, scores, out / "roc.png"),
        "pr": plot_pr(y_true, scores, out / "pr.png"),
        "calibration": plot_calibration(y_true, p, out / "calibration.png"),
        "threshold": plot_threshold_curves(y_true, p, threshold, out / "threshold.png"),
        "confusion_matrix": plot_confusion_matrix(y_true, p, threshold, out / "confusion_matrix.png"),
    }
    if shap_values is not None and shap_feature_values is not None and feature_names is not None:
        args = (shap_values, shap_feature_values, feature_names, base_value)
        paths["shap_beeswarm"] = plot_shap_beeswarm(*args, out / "shap_beeswarm.png", display_names=display_names)
        paths["shap_bar"] = plot_shap_bar(*args, out / "shap_bar.png", display_names=display_names)
    if validation is not None:
        paths.update(plot_validation(out, validation))
    return paths
