"""metrics.json is strict JSON written atomically; report.md carries the key numbers."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from loan_default.training.evaluation.metrics import binary_metrics, mean_abs_shap
from loan_default.training.evaluation.report import build_metrics, write_metrics, write_report_md
from loan_default.training.evaluation.threshold import choose_threshold


@pytest.fixture
def metrics():
    rng = np.random.default_rng(0)
    p = rng.beta(1, 12, 3000)
    y = (rng.random(3000) < p).astype(int)
    val, test = slice(0, 1500), slice(1500, 3000)
    choice = choose_threshold(y[val], p[val], recall_target=0.9)
    baselines = {
        "logistic": {"test_auroc": 0.7123, "val_auroc": 0.7011, "test_pr_auc": 0.2, "recall_at_threshold": 0.88,
                     "false_negatives": 17},
        "lightgbm": {"test_auroc": 0.7456, "val_auroc": 0.7333, "test_pr_auc": 0.25, "recall_at_threshold": 0.9,
                     "false_negatives": 14},
    }  # fmt: skip
    shap_values = rng.normal(size=(50, 3)) * [1, 5, 2]
    return build_metrics(
        binary_metrics(y[test], p[test], choice.threshold),
        choice,
        val_auroc=binary_metrics(y[val], p[val], 0.5)["auroc"],
        splits={
            name: {"rows": int(y[part].size), "default_rate": float(y[part].mean())}
            for name, part in (("train", slice(None)), ("val", val), ("test", test))
        },
        baselines=baselines,
        shap_top_features=mean_abs_shap(shap_values, ["fico", "ltv", "dti|x"], display_names={"ltv": "Loan-to-value"}),
        oracle_auroc=0.7891,
    )


FIXED_KEYS = {
    "test_auroc", "test_pr_auc", "test_ks", "test_brier", "recall_at_threshold", "precision_at_threshold", "threshold",
    "threshold_method", "false_negatives", "confusion_matrix", "val_auroc", "oracle_auroc", "baselines", "splits",
    "shap_top_features",
}  # fmt: skip


def test_metrics_layout_and_json_round_trip(tmp_path, metrics):
    assert FIXED_KEYS <= set(metrics)
    path = write_metrics(tmp_path / "metrics.json", {**metrics, "extra": np.float32(0.5), "bad": float("nan")})
    loaded = json.loads(path.read_text())
    assert loaded["test_auroc"] == metrics["test_auroc"]
    assert loaded["confusion_matrix"] == metrics["confusion_matrix"]
    assert loaded["baselines"]["lightgbm"]["false_negatives"] == 14
    assert loaded["extra"] == 0.5 and loaded["bad"] is None  # numpy scalars converted, NaN made strict-JSON null
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_failed_write_keeps_old_file_and_leaves_no_tmp(tmp_path):
    path = write_metrics(tmp_path / "metrics.json", {"a": 1})
    with pytest.raises(TypeError):
        write_metrics(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_report_contains_the_key_numbers(tmp_path, metrics):
    plot = tmp_path / "plots" / "roc.png"
    path = write_report_md(tmp_path, metrics, {"roc": plot, "shap_bar": tmp_path / "plots" / "shap_bar.png"})
    text = path.read_text()
    assert path == tmp_path / "report.md" and sorted(os.listdir(tmp_path)) == ["report.md"]
    for key in ("test_auroc", "test_pr_auc", "test_ks", "test_brier", "threshold", "val_auroc"):
        assert f"{metrics[key]:.4f}" in text, key
    tn, fp, fn, tp = (f"{v:,}" for row in metrics["confusion_matrix"] for v in row)
    assert (
        f"| **Actual default** | {fn} | {tp} |" in text
        and f"{metrics['false_negatives']:,} defaults are missed" in text
    )
    assert f"{100 * metrics['recall_at_threshold']:.2f}%" in text
    assert "at least 90% of defaults" in text  # how the threshold was chosen
    assert "| LightGBM | 0.7333 | 0.7456 |" in text and "| Logistic regression | 0.7011 | 0.7123 |" in text
    assert "0.7891" in text  # oracle
    assert "| 1 | Loan-to-value |" in text and "| 2 | dti\\|x |" in text
    assert "](plots/roc.png)" in text and "](plots/shap_bar.png)" in text
    assert f"| test | {metrics['splits']['test']['rows']:,} |" in text


def test_report_tolerates_missing_optional_keys(tmp_path):
    minimal = {"test_auroc": 0.7, "threshold": 0.1, "threshold_method": "cost_fn_fp=5", "false_negatives": 3}
    text = write_report_md(tmp_path, minimal).read_text()
    assert "0.7000" in text and "a missed default costing 5x a false alarm" in text
    assert "Oracle" not in text and "SHAP" not in text and "## Data" not in text


def test_report_shows_intervals_and_the_validation_sections(tmp_path, metrics):
    from loan_default.training.evaluation.validation import validate

    rng = np.random.default_rng(1)
    p = rng.beta(1, 12, 4000)
    frame = pd.DataFrame({"default": (rng.random(4000) < 2 * p).astype(int), "vintage_year": 2010, "channel": "R"})
    metrics = {
        **metrics,
        "test_auroc_ci": {"auroc": 0.71, "low": 0.6812, "high": 0.7388, "se": 0.01, "level": 0.95},
        "recall_at_threshold_ci": {"recall": 0.9, "low": 0.85, "high": 0.93, "level": 0.95},
        "auroc_diff_vs_best_ci": {"baseline": "lightgbm", "diff": -0.02, "low": -0.05, "high": 0.01, "p_value": 0.2},
        "validation": validate(frame, p, threshold=0.1),  # PDs half the true rate: the portfolio fails
    }
    text = write_report_md(tmp_path, metrics).read_text()
    assert "0.7100 (95% CI 0.6812 to 0.7388)" in text and "90.00% (95% CI 85.00% to 93.00%)" in text
    assert "ANN minus LightGBM (best baseline on validation)" in text and "-0.0500 to 0.0100" in text
    assert "## Discrimination" in text and "By origination year:" in text and "By channel:" in text
    portfolio = next(line for line in text.splitlines() if line.startswith("| portfolio |"))
    assert portfolio.endswith("| **FAIL** |")
    assert "## Stability" not in text and "## Back-test" not in text  # no reference, not out-of-time
