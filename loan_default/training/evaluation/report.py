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
    if metrics.get("cv"):
        how = f"chosen on the out-of-fold predictions of the {metrics['cv']['folds']} fold models"
    if method.startswith("recall_target="):
        target = float(method.split()[0].split("=")[1])
        how += f" as the highest threshold that still catches at least {100 * target:g}% of defaults"
        if "confidence=" in method:
            level = float(method.split("confidence=")[1].split()[0])
            how += f" with {100 * level:g}% confidence (Wilson lower bound on recall)"
            how += ", a target the validation defaults could not prove" if method.endswith("not met") else ""
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
    chosen_on = "its out-of-fold predictions (Val: out of fold)" if metrics.get("cv") else "validation"
    lines = [
        f"## Model comparison (test split, each model's threshold chosen on {chosen_on} by the same rule)",
        "",
        "| Model | Val ROC-AUC | Test ROC-AUC | Test ROC-AUC 95% CI | Test PR-AUC | Recall at threshold "
        "| False negatives |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in rows:
        ci = m.get("test_auroc_ci")
        interval = f"{_fmt(ci['low'])} to {_fmt(ci['high'])}" if ci else "n/a"
        lines.append(
            f"| {_cell(name)} | {_fmt(m.get('val_auroc'))} | {_fmt(m.get('test_auroc'))} | {interval} "
            f"| {_fmt(m.get('test_pr_auc'))} | {_pct(m.get('recall_at_threshold'))} | {_fmt(m.get('false_negatives'))} |"
        )
    if metrics.get("oracle_auroc") is not None:
        lines.append(f"| Oracle (true PD, synthetic data) | | {_fmt(metrics['oracle_auroc'])} | | | | |")
    return [*lines, ""]


def _cv_section(metrics: Mapping[str, Any]) -> list[str]:
    """Each fold's ROC-AUC on its held-out loans for the ANN and every baseline, then mean ± sd and pooled OOF."""
    cv = metrics.get("cv")
    if not cv:
        return []
    names = [n for n in cv["summary"] if n.endswith("_auroc")]
    titles = ["ANN" if n == "ann_auroc" else MODEL_NAMES.get(n[: -len("_auroc")], n) for n in names]
    lines = [
        f"## Cross-validation ({cv['folds']} folds)",
        "",
        f"The non-test loans were cut into {cv['folds']} stratified folds; each fold model trained on the others and "
        "was early-stopped on its own fold. Below: ROC-AUC on each fold's held-out loans, their mean ± sd, and "
        "pooled over every held-out prediction (out of fold). Test figures above are the fold ensemble's (the mean of "
        "the fold models' logits); the baselines ran on the same folds.",
        "",
        "| Fold | Loans | Defaults | " + " | ".join(titles) + " | Best epoch |",
        "|---:|---:|---:|" + "---:|" * len(names) + "---:|",
    ]
    for f in cv["per_fold"]:
        cells = " | ".join(_fmt(f.get(n)) for n in names)
        lines.append(
            f"| {f['fold']} | {_fmt(f['rows'])} | {_fmt(f['defaults'])} | {cells} | {_fmt(f.get('best_epoch'))} |"
        )
    spread = " | ".join(f"{_fmt(cv['summary'][n]['mean'])} ± {_fmt(cv['summary'][n]['sd'])}" for n in names)
    pooled = " | ".join(_fmt(cv["oof_auroc"].get(n[: -len("_auroc")])) for n in names)
    lines += [f"| mean ± sd | | | {spread} | |", f"| out of fold | | | {pooled} | |", ""]
    return lines


def ci_text(ci: Mapping[str, Any] | None, key: str, digits: int = 4, pct: bool = False) -> str:
    """``0.8123 (95% CI 0.80-0.82)`` from an interval dict of ``uncertainty``; "n/a" without one."""
    if not ci:
        return "n/a"
    f = _pct if pct else (lambda v: _fmt(v, digits))
    level = f"{100 * ci.get('level', 0.95):g}%"
    return f"{f(ci[key])} ({level} CI {f(ci['low'])} to {f(ci['high'])})"


def _uncertainty_lines(metrics: Mapping[str, Any]) -> list[str]:
    diff = metrics.get("auroc_diff_vs_best_ci")
    lines = []
    if metrics.get("test_auroc_ci"):
        lines.append(f"Test ROC-AUC (DeLong): {ci_text(metrics['test_auroc_ci'], 'auroc')}.")
    if metrics.get("recall_at_threshold_ci"):
        lines.append(f"Recall at threshold (Wilson): {ci_text(metrics['recall_at_threshold_ci'], 'recall', pct=True)}.")
    if diff:
        name = MODEL_NAMES.get(diff["baseline"], diff["baseline"])
        lines.append(
            f"ANN minus {name} (best baseline on validation), paired on the same test loans: "
            f"{ci_text(diff, 'diff')}, p = {diff['p_value']:.3g}."
        )
    return [" ".join(lines), ""] if lines else []


def _cell_row(name: str, c: Mapping[str, Any]) -> str:
    mark = " (small)" if c.get("small") else ""
    return (
        f"| {_cell(name)}{mark} | {_fmt(c['n'])} | {_fmt(c['defaults'])} | {_fmt(c['auroc'])} | {_fmt(c['gini'])} "
        f"| {_fmt(c['ks'])} |"
    )


def _validation_sections(metrics: Mapping[str, Any]) -> list[str]:
    v = metrics.get("validation")
    if not v:
        return []
    head = ["| Cell | Loans | Defaults | ROC-AUC | Gini | KS |", "|---|---:|---:|---:|---:|---:|"]
    lines = [
        "## Discrimination",
        "",
        f"All test loans: ROC-AUC {_fmt(v['auroc'])}, Gini {_fmt(v['gini'])}, KS {_fmt(v['ks'])}. "
        f"Cells with fewer than {v['min_defaults']} defaults (or non-defaults) are marked small.",
        "",
    ]
    for unit, cells in (v.get("by_vintage") or {}).items():
        lines += [f"By origination {unit}:", "", *head, *(_cell_row(k, c) for k, c in cells.items()), ""]
    for field, cells in (v.get("by_segment") or {}).items():
        lines += [f"By {field.replace('_', ' ')}:", "", *head, *(_cell_row(k, c) for k, c in cells.items()), ""]
    fit = v.get("calibration_fit") or {}
    lines += [
        "## Calibration (Jeffreys test per risk grade)",
        "",
        f"A grade fails when its one-sided Jeffreys p-value is below {v.get('calibration_alpha')} (PD underestimated). "
        f"Calibration intercept {_fmt(fit.get('intercept'))}, slope {_fmt(fit.get('slope'))} (ideal 0 and 1).",
        "",
        "| Grade | Loans | Defaults | Mean predicted PD | Observed rate | Jeffreys p | Result |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    grades = {**v["calibration"], "portfolio": v.get("calibration_portfolio")}
    for name, c in grades.items():
        if c is None:
            continue
        result = "n/a" if c["pass"] is None else "pass" if c["pass"] else "**FAIL**"
        lines.append(
            f"| {_cell(name)} | {_fmt(c['n'])} | {_fmt(c['defaults'])} | {_pct(c['predicted'])} "
            f"| {_pct(c['observed'])} | {_fmt(c['jeffreys_p'], 3)} | {result} |"
        )
    lines.append("")
    if v.get("csi") is not None:
        lines += [
            f"## Stability (training vs {v.get('stability_against', 'test')}; < 0.1 green, 0.1-0.25 amber, > 0.25 red)",
            "",
            f"Score PSI {_fmt(v.get('psi_score'))} ({v.get('psi_score_light')}). "
            f"Red fields: {', '.join(v.get('fields_red') or []) or 'none'}; "
            f"amber: {', '.join(v.get('fields_amber') or []) or 'none'}.",
            "",
        ]
    if v.get("backtest"):
        lines += [
            "## Back-test on later vintages",
            "",
            "| Vintage | Loans | Defaults | Mean predicted PD | Observed rate | Jeffreys p | ROC-AUC |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, c in v["backtest"].items():
            lines.append(
                f"| {_cell(name)} | {_fmt(c['n'])} | {_fmt(c['defaults'])} | {_pct(c['predicted'])} "
                f"| {_pct(c['observed'])} | {_fmt(c['jeffreys_p'], 3)} | {_fmt(c['auroc'])} |"
            )
        lines.append("")
    return lines


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
        *_uncertainty_lines(metrics),
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
        *_cv_section(metrics),
        *_validation_sections(metrics),
        *_shap_section(metrics, top_features),
        *_plots_section(run_dir, plot_paths or {}),
    ]
    return atomic_write_text(run_dir / "report.md", "\n".join(lines))
