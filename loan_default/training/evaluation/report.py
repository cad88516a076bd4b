"""The run's metrics.json and a short report.md for a credit committee, both written atomically."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from loan_default.common.atomic import atomic_write_text
from loan_default.training.evaluation.threshold import ThresholdChoice


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays to Python, paths to str, NaN/inf to None (strict JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as indented strict JSON, atomically."""
    return atomic_write_text(path, json.dumps(to_jsonable(metrics), indent=2, allow_nan=False) + "\n")


def build_metrics(
    test_metrics: Mapping[str, Any],
    threshold: ThresholdChoice,
    *,
    val_auroc: float | None = None,
    splits: Mapping[str, Mapping[str, Any]] | None = None,
    baselines: Mapping[str, Any] | None = None,
    shap_top_features: list[dict[str, Any]] | None = None,
    oracle_auroc: float | None = None,
) -> dict[str, Any]:
    """Assemble the fixed metrics layout from ``binary_metrics`` on test and the threshold chosen on val.

    ``baselines`` maps a name to a ``BaselineResult`` (its ``summary()`` is used) or to a ready summary dict.
    """
    out: dict[str, Any] = {
        "test_auroc": test_metrics["auroc"],
        "test_pr_auc": test_metrics["pr_auc"],
        "test_ks": test_metrics["ks"],
        "test_brier": test_metrics["brier"],
        "test_log_loss": test_metrics["log_loss"],
        "recall_at_threshold": test_metrics["recall"],
        "precision_at_threshold": test_metrics["precision"],
        "threshold": threshold.threshold,
        "threshold_method": threshold.method,
        "val_recall_at_threshold": threshold.recall,
        "val_precision_at_threshold": threshold.precision,
        "false_negatives": test_metrics["false_negatives"],
        "confusion_matrix": test_metrics["confusion_matrix"],
        "val_auroc": val_auroc,
        "baselines": {name: b.summary() if hasattr(b, "summary") else dict(b) for name, b in (baselines or {}).items()},
        "splits": {name: dict(s) for name, s in (splits or {}).items()},
        "shap_top_features": list(shap_top_features or []),
    }
    if threshold.expected_cost is not None:
        out["val_expected_cost"] = threshold.expected_cost
    if oracle_auroc is not None:
        out["oracle_auroc"] = oracle_auroc
    return out


MODEL_NAMES = {"logistic": "Logistic regression", "lightgbm": "LightGBM"}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return str(value)


def _cell(text: Any) -> str:
    """Escape a name for a Markdown table cell."""
    return str(text).replace("|", "\\|")


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _data_section(metrics: Mapping[str, Any]) -> list[str]:
    splits = metrics.get("splits") or {}
    if not splits:
        return []
    lines = ["## Data", "", "| Split | Loans | Default rate |", "|---|---:|---:|"]
    for name, s in splits.items():
        lines.append(f"| {_cell(name)} | {_fmt(s.get('rows'))} | {_pct(s.get('default_rate'))} |")
    return [*lines, ""]


def _threshold_sentence(metrics: Mapping[str, Any]) -> str:
    method = str(metrics.get("threshold_method", ""))
    how = "chosen on the validation split"
    if method.startswith("recall_target="):
        how += (
            f" as the highest threshold that still catches at least {100 * float(method.split('=')[1]):g}% of defaults"
        )
    elif method.startswith("cost_fn_fp="):
        how += f" to minimise expected cost, a missed default costing {method.split('=')[1]}x a false alarm"
    elif method:
        how += f" ({method})"
    return f"A loan is flagged when its predicted probability of default is at least {_fmt(metrics.get('threshold'))}, {how}; it is applied unchanged to the test split."


def _confusion_section(metrics: Mapping[str, Any]) -> list[str]:
    cm = metrics.get("confusion_matrix")
    if not cm:
        return []
    (tn, fp), (fn, tp) = cm
    return [
        "| | Predicted no default | Predicted default |",
        "|---|---:|---:|",
        f"| **Actual no default** | {_fmt(tn)} | {_fmt(fp)} |",
        f"| **Actual default** | {_fmt(fn)} | {_fmt(tp)} |",
        "",
    ]


def _comparison_section(metrics: Mapping[str, Any]) -> list[str]:
    rows = [("ANN", metrics)]
    rows += [(MODEL_NAMES.get(name, name), b) for name, b in (metrics.get("baselines") or {}).items()]
    lines = [
        "## Model comparison (test split, each model's threshold chosen on validation by the same rule)",
        "",
        "| Model | Val ROC-AUC | Test ROC-AUC | Test PR-AUC | Recall at threshold | False negatives |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in rows:
        lines.append(
            f"| {_cell(name)} | {_fmt(m.get('val_auroc'))} | {_fmt(m.get('test_auroc'))} | {_fmt(m.get('test_pr_auc'))} "
            f"| {_pct(m.get('recall_at_threshold'))} | {_fmt(m.get('false_negatives'))} |"
        )
    if metrics.get("oracle_auroc") is not None:
        lines.append(f"| Oracle (true PD, synthetic data) | | {_fmt(metrics['oracle_auroc'])} | | | |")
    return [*lines, ""]


def _shap_section(metrics: Mapping[str, Any], top: int) -> list[str]:
    features = (metrics.get("shap_top_features") or [])[:top]
    if not features:
        return []
    lines = [
        "## What drives the predictions (mean absolute SHAP value)",
        "",
        "| Rank | Feature | Mean abs. SHAP |",
        "|---:|---|---:|",
    ]
    lines += [f"| {i} | {_cell(f['feature'])} | {_fmt(f['mean_abs_shap'])} |" for i, f in enumerate(features, 1)]
    return [*lines, ""]


def _plots_section(run_dir: Path, plot_paths: Mapping[str, str | Path]) -> list[str]:
    if not plot_paths:
        return []
    lines = ["## Plots", ""]
    for name, p in plot_paths.items():
        # Relative links keep the report readable after the run folder is moved or downloaded.
        link = Path(os.path.relpath(p, run_dir)).as_posix()
        lines.append(f"- [{name.replace('_', ' ')}]({link})")
    return [*lines, ""]


def write_report_md(
    run_dir: str | Path,
    metrics: Mapping[str, Any],
    plot_paths: Mapping[str, str | Path] | None = None,
    *,
    top_features: int = 10,
) -> Path:
    """Write ``run_dir/report.md`` from the metrics layout of ``build_metrics``; missing optional keys are skipped."""
    run_dir = Path(run_dir)
    lines = [
        "# Mortgage default model: evaluation report",
        "",
        *_data_section(metrics),
        "## Test performance",
        "",
        "| Measure | Value |",
        "|---|---:|",
        f"| ROC-AUC (ranking of defaulters above non-defaulters) | {_fmt(metrics.get('test_auroc'))} |",
        f"| PR-AUC (average precision) | {_fmt(metrics.get('test_pr_auc'))} |",
        f"| KS statistic | {_fmt(metrics.get('test_ks'))} |",
        f"| Brier score (lower is better) | {_fmt(metrics.get('test_brier'))} |",
        "",
        "## Decision threshold",
        "",
        _threshold_sentence(metrics),
        "",
        f"On test it catches {_pct(metrics.get('recall_at_threshold'))} of defaults (recall) "
        f"with precision {_pct(metrics.get('precision_at_threshold'))}; "
        f"**{_fmt(metrics.get('false_negatives'))} defaults are missed** (false negatives).",
        "",
        *_confusion_section(metrics),
        *_comparison_section(metrics),
        *_shap_section(metrics, top_features),
        *_plots_section(run_dir, plot_paths or {}),
    ]
    return atomic_write_text(run_dir / "report.md", "\n".join(lines))
