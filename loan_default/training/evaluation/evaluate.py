"""After training: threshold on validation, metrics on test, baselines, SHAP, plots, report.md and the model bundle."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from loan_default.common.memory import release_free_memory
from loan_default.core.bundle import load_bundle, write_bundle
from loan_default.core.drift import build_reference
from loan_default.training.config import resolved_yaml
from loan_default.training.evaluation.baselines import fit_baselines
from loan_default.training.evaluation.metrics import binary_metrics, mean_abs_shap, ranking_metrics
from loan_default.training.evaluation.plots import plot_all
from loan_default.training.evaluation.report import build_metrics, ci_text, write_metrics, write_report_md
from loan_default.training.evaluation.report_html import write_report_html
from loan_default.training.evaluation.threshold import choose_threshold
from loan_default.training.evaluation.uncertainty import report_intervals
from loan_default.training.evaluation.validation import validate
from loan_default.training.imbalance import prior_logit_offset
from loan_default.training.resident import eval_batch_rows

log = logging.getLogger(__name__)


def predict_logits(
    net: torch.nn.Module, x_num: np.ndarray, x_cat: np.ndarray, batch: int | None = None,
    device: torch.device | None = None,
) -> np.ndarray:  # fmt: skip
    """Raw logits (N,) in eval mode, batched so memory stays bounded on big splits, computed on ``device`` (the
    training device: a GPU scores a million rows in well under a second) and the network left where it was."""
    home = next(net.parameters()).device
    device = torch.device(device or home)
    batch = batch or eval_batch_rows(device)
    net.to(device).eval()
    out = np.empty(len(x_num), dtype=np.float64)  # written in place: no small results left between batches' blocks
    with torch.inference_mode():
        for start in range(0, len(x_num), batch):
            rows = slice(start, start + batch)
            part = net(torch.from_numpy(x_num[rows]).to(device), torch.from_numpy(x_cat[rows]).to(device))
            out[rows] = part[:, 0].double().cpu().numpy()
    net.to(home)
    return out


def evaluate_and_bundle(
    cfg: DictConfig, dm, model, output_dir: Path, started: float, *, net: torch.nn.Module | None = None,
    offset: float | None = None, val_proba: np.ndarray | None = None, baselines: dict | None = None,
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Write metrics.json, report.md, plots/ and bundle/ into `output_dir`; return the metrics dict.

    Cross-validation (`training.cv`) passes its fold ensemble as ``net`` with its ``offset`` (``model`` is then
    unused), the out-of-fold probabilities of ``dm``'s val rows as ``val_proba`` (the threshold is chosen on them),
    the ``baselines`` fitted on the same folds, and ``extra_metrics`` (its ``cv`` section).
    """
    net = (model.net if net is None else net).cpu().eval()
    trainer = getattr(dm, "trainer", None)
    device = trainer.strategy.root_device if trainer is not None else None  # predictions on the training device
    train_y = dm.arrays["train"][2]
    if offset is None:
        offset = prior_logit_offset(float(train_y.mean()), dm.batch_pos_fraction, model.hparams.get("pos_weight"))
    proba = {} if val_proba is None else {"val": val_proba}
    for split in ("val", "test")[len(proba) :]:
        x_num, x_cat, _ = dm.arrays[split]
        proba[split] = expit(predict_logits(net, x_num, x_cat, device=device) + offset)
    y_val, y_test = dm.arrays["val"][2], dm.arrays["test"][2]

    choice = choose_threshold(y_val, proba["val"], **OmegaConf.to_container(cfg.threshold, resolve=True))
    test_metrics = binary_metrics(y_test, proba["test"], choice.threshold)
    log.info(
        "Threshold %.4f (%s): test recall %.3f, precision %.3f, %d defaults missed of %d",
        choice.threshold, choice.method, test_metrics["recall"], test_metrics["precision"],
        test_metrics["false_negatives"], test_metrics["positives"],
    )  # fmt: skip

    evaluation = cfg.get("evaluation") or {}
    fit = baselines is None and evaluation.get("baselines", True)
    baselines = baselines or {}
    if fit:
        baselines = fit_baselines(
            dm.arrays["train"], dm.arrays["val"], dm.arrays["test"], dm.preprocessor.categorical_names, cfg.seed,
            recall_target=cfg.threshold.recall_target, cost_fn_fp=cfg.threshold.cost_fn_fp,
        )  # fmt: skip
        for name, result in baselines.items():
            log.info("Baseline %-9s test ROC-AUC %.4f (%.1f s)", name, result.test_auroc, result.fit_seconds)

    test_frame = dm.frame("test")
    oracle = None
    others = {name: r.test_proba for name, r in baselines.items()}
    if "true_pd" in test_frame and test_frame["true_pd"].notna().all():
        oracle = float(roc_auc_score(y_test, test_frame["true_pd"].to_numpy()))
        others["oracle (true PD)"] = test_frame["true_pd"].to_numpy()
        log.info("Oracle ROC-AUC from the generator's true default probabilities: %.4f", oracle)

    names = dm.preprocessor.numeric_names + dm.preprocessor.categorical_names
    shap_values = shap_data = None
    background = _background(dm, int(evaluation.get("shap_background", 200)), cfg.seed)
    top_features: list[dict] = []
    if evaluation.get("shap", True):
        from loan_default.core.explain import ShapExplainer

        rows = np.random.default_rng(cfg.seed).permutation(len(y_test))[: int(evaluation.get("shap_rows", 1000))]
        x_num, x_cat, _ = dm.arrays["test"]
        explainer = ShapExplainer(
            net, torch.from_numpy(background[0]), torch.from_numpy(background[1]), names,
            max_background=len(background[0]),
        )  # fmt: skip
        shap_values, base = explainer.explain(torch.from_numpy(x_num[rows]), torch.from_numpy(x_cat[rows]))
        shap_data = np.concatenate([x_num[rows], x_cat[rows]], axis=1)
        top_features = mean_abs_shap(shap_values, names, top_k=15, display_names=dm.preprocessor.display_names)

    metrics = build_metrics(
        test_metrics,
        choice,
        val_auroc=ranking_metrics(y_val, proba["val"])["auroc"],
        splits=dm.split_summary,
        baselines=baselines,
        shap_top_features=top_features,
        oracle_auroc=oracle,
    )
    metrics["data"] = {"labels": dm.load_report, "outliers": dm.outlier_report}
    metrics["model"] = {"target": cfg.model._target_, "hidden_sizes": list(cfg.model.hidden_sizes)}
    metrics["train_seconds"] = round(time.time() - started, 1)
    metrics.update(extra_metrics or {})
    intervals = report_intervals(
        y_test, proba["test"], test_metrics, baselines, float(evaluation.get("ci_level", 0.95))
    )
    for name, extra in intervals.pop("baselines").items():
        metrics["baselines"][name].update(extra)
    metrics.update(intervals)

    # Monitoring reference: training rows' score and raw field distributions (bins and shares, no rows).
    train_proba = expit(predict_logits(net, *dm.arrays["train"][:2], device=device) + offset)
    reference = build_reference(train_proba, dm.table, rows=dm.split_index["train"])  # no copy of the rows
    release_free_memory()  # the per-field temporaries over every training row (common/memory.py)
    metrics["validation"] = _validation(cfg, dm, proba, choice.threshold, reference)

    plots = {}
    if evaluation.get("plots", True):
        plots = plot_all(
            output_dir / "plots", y_test, proba["test"], choice.threshold, others=others,
            shap_values=shap_values, shap_feature_values=shap_data, feature_names=names if shap_values is not None
            else None, base_value=base + offset if shap_values is not None else 0.0,
            display_names=dm.preprocessor.display_names, validation=metrics["validation"],
        )  # fmt: skip

    bundle_path = write_bundle(
        output_dir / "bundle",
        net=net,
        net_kwargs=net.config(),
        preprocessor=dm.preprocessor,
        outlier_filter=dm.outlier_filter,
        logit_offset=offset,
        decision={**choice.to_dict(), "recall_target": cfg.threshold.recall_target,
                  "cost_fn_fp": cfg.threshold.cost_fn_fp},
        background=background,
        config_yaml=resolved_yaml(cfg),
        metrics=metrics,
        monitoring=reference,
    )  # fmt: skip
    _check_bundle(bundle_path, dm, proba["test"])
    metrics["bundle"] = str(bundle_path)
    write_metrics(output_dir / "metrics.json", metrics)
    write_report_md(output_dir, metrics, plots)
    write_report_html(output_dir, metrics, plots)
    log.info("Report: %s (and report.html)  Bundle: %s", output_dir / "report.md", bundle_path)
    diff = metrics["auroc_diff_vs_best_ci"]
    log.info(
        "Test ROC-AUC %s | LightGBM %s | logistic %s | oracle %s | ANN - %s %s | recall %s",
        ci_text(metrics["test_auroc_ci"], "auroc"),
        _get(metrics, "lightgbm"), _get(metrics, "logistic"),
        f"{oracle:.4f}" if oracle is not None else "n/a",
        diff["baseline"] if diff else "best baseline", ci_text(diff, "diff"),
        ci_text(metrics["recall_at_threshold_ci"], "recall", pct=True),
    )  # fmt: skip
    return metrics


def _validation(cfg: DictConfig, dm, proba: dict[str, np.ndarray], threshold: float, reference) -> dict[str, Any]:
    """The validation section on the test split; under an out-of-time split, the back-test on val + test vintages."""
    settings = (cfg.get("evaluation") or {}).get("validation") or {}
    later = None
    if OmegaConf.select(cfg, "data.split.method", default=None) == "out_of_time":
        later = (pd.concat([dm.frame("val"), dm.frame("test")]), np.r_[proba["val"], proba["test"]])
    result = validate(
        dm.frame("test"), proba["test"], threshold=threshold, reference=reference, later=later,
        alpha=float(settings.get("alpha", 0.05)), min_defaults=int(settings.get("min_defaults", 20)),
    )  # fmt: skip
    result["stability_against"] = "test (the out-of-time vintages)" if later is not None else "test"
    return result


def _background(dm, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SHAP background: a seeded sample of transformed training rows (stored in the bundle for serving)."""
    x_num, x_cat, _ = dm.arrays["train"]
    pick = np.sort(np.random.default_rng(seed).permutation(len(x_num))[:rows])
    return x_num[pick], x_cat[pick]


def _check_bundle(path: Path, dm, expected: np.ndarray) -> None:
    """Reload the bundle and score raw test rows through it: it must reproduce the in-training probabilities."""
    bundle = load_bundle(path)
    sample = dm.frame("test").iloc[:256]
    got = bundle.predict_proba(sample)
    gap = float(np.max(np.abs(got - expected[: len(sample)]))) if len(sample) else 0.0
    if gap > 1e-5:
        raise RuntimeError(f"the bundle at {path} scores test loans differently from training (max gap {gap:.2e})")


def _get(metrics: dict, name: str) -> str:
    value = metrics.get("baselines", {}).get(name, {}).get("test_auroc")
    return f"{value:.4f}" if value is not None else "n/a"
