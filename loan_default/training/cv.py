"""Cross-validation mode (``cv.folds=K``): K fold models instead of one, evaluated and bundled as their ensemble.

The non-test rows (train + val of the configured split; test stays untouched) are cut into K stratified folds with the
run's seed. Fold model k trains on the other K - 1 folds and early-stops and checkpoints on fold k, with the outlier
filter fitted on its own training rows; the preprocessor (unsupervised: category vocabularies, clipping, scaling) is
fitted once on all non-test rows, so the K networks share one feature space and average into one network
(docs/decisions/0057-cv-mode.md). The threshold is chosen on the out-of-fold predictions; the bundle holds
`core.ensemble.FoldEnsemble`; logistic regression and LightGBM run on the same folds.

Fold k's checkpoints and logs go to ``<run>/folds/fold_<k>/``; it trains with seed ``seed + k`` (different
initialisations make a better ensemble), its folds are cut with ``seed``.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict
from scipy.special import expit
from sklearn.model_selection import StratifiedKFold

from loan_default.core.ensemble import FoldEnsemble
from loan_default.core.preprocess import Preprocessor
from loan_default.training.evaluation.cv_summary import FoldResult, cv_section, out_of_fold, pooled_baseline
from loan_default.training.evaluation.metrics import ranking_metrics
from loan_default.training.imbalance import prior_logit_offset
from loan_default.training.settings import ConfigError, CvSettings
from loan_default.training.splits import describe_splits

log = logging.getLogger(__name__)


def cv_folds(cfg: DictConfig, split_summary: dict[str, dict]) -> int | None:
    """The number of folds this run trains, or None for the single model: ``cv.folds``, or under ``auto``
    ``cv.auto_folds`` when the non-test rows (``split_summary``'s train + val, before outlier removal) are fewer than
    ``cv.auto_max_rows``."""
    node = cfg.get("cv")
    settings = CvSettings.model_validate(OmegaConf.to_container(node, resolve=True) if node is not None else {})
    folds, rows = settings.folds, split_summary["train"]["rows"] + split_summary["val"]["rows"]
    out_of_time = OmegaConf.select(cfg, "data.split.method", default="stratified") == "out_of_time"
    if folds == "auto":
        if out_of_time or rows >= settings.auto_max_rows:
            return None
        log.info("cv.folds=auto: %d non-test loans < cv.auto_max_rows=%d, so %d folds", rows, settings.auto_max_rows,
                 settings.auto_folds)  # fmt: skip
        folds = settings.auto_folds
    if folds is None:
        return None
    if out_of_time:
        raise ConfigError("cv.folds: random folds would mix the out-of-time vintages; use cv.folds=null with them")
    if not cfg.get("train", True) or cfg.get("ckpt_path"):
        raise ConfigError("cv.folds: cross-validation trains its fold models from scratch (train=true, no ckpt_path)")
    return int(folds)


def fold_rows(rows: np.ndarray, y: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """``rows`` (with labels ``y``) cut into ``folds`` stratified folds, each sorted; deterministic given ``seed``."""
    cut = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [np.sort(rows[held]) for _, held in cut.split(np.zeros(len(rows)), y)]


def train_cv(cfg: DictConfig, datamodule, folds: int, started: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the fold models on ``datamodule``'s table and split (set up), evaluate and bundle their ensemble.
    Returns (metrics, objects) like `train.train`; objects["folds"] holds each fold's rows, network and offset."""
    from loan_default.training.evaluation.evaluate import evaluate_and_bundle

    table, split = datamodule.table, datamodule.split_index
    test = split["test"]
    rows = np.setdiff1d(np.arange(len(table)), test)  # train + val before outlier removal (stratified: every row)
    labels = table["default"].to_numpy().astype(np.int64)
    held_out = fold_rows(rows, labels[rows], folds, int(cfg.seed))
    log.info("Cross-validation: %d folds of the %d non-test loans; test (%d loans) untouched", folds, len(rows),
             len(test))  # fmt: skip
    preprocessor = Preprocessor().fit(table.iloc[rows])  # unsupervised: shared by every fold (decision 0057)

    results, nets, offsets, fold_objects = [], [], [], []
    for k, held in enumerate(held_out):
        split_k = {"train": np.setdiff1d(rows, held), "val": held, "test": test}
        fold = _train_fold(cfg, k, folds, split_k, preprocessor)
        results.append(fold.pop("result"))
        nets.append(fold["net"])
        offsets.append(fold["offset"])
        fold_objects.append(fold)

    # The bundle's view: trained on every non-test row (its outlier filter, SHAP background and monitoring reference
    # come from them); "val" is every non-test row, scored out of fold.
    everything = _fold_datamodule(cfg, {"train": rows, "val": rows, "test": test}, preprocessor)
    everything.split_summary = describe_splits(table, {**{f"fold {r.fold}": r.val_rows for r in results}, "test": test})
    oof = out_of_fold(rows, results, [r.ann_val_proba for r in results])
    y_oof, y_test = labels[rows], labels[test]
    baselines = {
        name: pooled_baseline(
            name, [r.baselines[name] for r in results],
            out_of_fold(rows, results, [r.baselines[name].val_proba for r in results]),
            y_oof, y_test, OmegaConf.to_container(cfg.threshold, resolve=True),
        )
        for name in results[0].baselines
    }  # fmt: skip
    oof_auroc = {"ann": ranking_metrics(y_oof, oof)["auroc"], **{n: b.val_auroc for n, b in baselines.items()}}
    report = evaluate_and_bundle(
        cfg, everything, None, Path(cfg.paths.output_dir), started=started,
        net=FoldEnsemble(nets), offset=float(np.mean(offsets)), val_proba=oof, baselines=baselines,
        extra_metrics={"cv": cv_section(results, labels, oof_auroc)},
    )  # fmt: skip
    metrics = {k: v for k, v in report.items() if isinstance(v, int | float)}
    metrics["val/auroc_best"] = oof_auroc["ann"]  # what sweeps optimise: the pooled out-of-fold ROC-AUC
    objects = {"cfg": cfg, "datamodule": everything, "folds": fold_objects, "report": report}
    return metrics, objects


def _fold_cfg(cfg: DictConfig, k: int) -> DictConfig:
    """The run's config for fold ``k``: outputs under <run>/folds/fold_<k+1>, seed + k."""
    fold_cfg = copy.deepcopy(cfg)
    with open_dict(fold_cfg):
        fold_cfg.paths.output_dir = str(Path(cfg.paths.output_dir) / "folds" / f"fold_{k + 1}")
        fold_cfg.seed = int(cfg.seed) + k
    return fold_cfg


def _fold_datamodule(cfg: DictConfig, split: dict[str, np.ndarray], preprocessor: Preprocessor):
    from loan_default.training.train import make_datamodule

    datamodule = make_datamodule(cfg)
    datamodule.use_split(split, preprocessor)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def _train_fold(
    cfg: DictConfig, k: int, folds: int, split: dict[str, np.ndarray], preprocessor: Preprocessor
) -> dict[str, Any]:
    """Fit fold ``k``'s model (and the baselines on the same rows); its net, offset, rows and `FoldResult`."""
    from loan_default.training.evaluation.baselines import fit_baselines
    from loan_default.training.evaluation.evaluate import predict_logits
    from loan_default.training.train import _best_checkpoint, make_model_and_trainer

    start = time.time()
    fold_cfg = _fold_cfg(cfg, k)
    L.seed_everything(fold_cfg.seed, workers=True)
    log.info("Fold %d/%d: training on %d loans, early stopping on %d", k + 1, folds, len(split["train"]),
             len(split["val"]))  # fmt: skip
    dm = _fold_datamodule(fold_cfg, split, preprocessor)
    model, trainer = make_model_and_trainer(fold_cfg, dm)
    trainer.fit(model=model, datamodule=dm)
    best = _best_checkpoint(trainer, fold_cfg)
    best_model = type(model).load_from_checkpoint(best) if best else model
    net = best_model.net.cpu().eval()
    offset = prior_logit_offset(float(dm.arrays["train"][2].mean()), dm.batch_pos_fraction,
                                best_model.hparams.get("pos_weight"))  # fmt: skip
    val_proba = expit(predict_logits(net, *dm.arrays["val"][:2]) + offset)

    baselines = {}
    if (cfg.get("evaluation") or {}).get("baselines", True):
        baselines = fit_baselines(
            dm.arrays["train"], dm.arrays["val"], dm.arrays["test"], dm.preprocessor.categorical_names,
            fold_cfg.seed, recall_target=cfg.threshold.recall_target, cost_fn_fp=cfg.threshold.cost_fn_fp,
        )  # fmt: skip
    result = FoldResult(
        fold=k + 1,
        val_rows=dm.split_index["val"],
        ann_val_proba=val_proba,
        best_epoch=_best_epoch(best),
        seconds=time.time() - start,
        val_defaults=int(dm.arrays["val"][2].sum()),
        baselines=baselines,
    )
    log.info("Fold %d: held-out ROC-AUC %.4f (best epoch %s, %.0f s)", k + 1,
             ranking_metrics(dm.arrays["val"][2], val_proba)["auroc"], result.best_epoch, result.seconds)  # fmt: skip
    return {"fold": k + 1, "train_rows": split["train"], "val_rows": result.val_rows, "net": net,
            "offset": offset, "result": result}  # fmt: skip


def _best_epoch(checkpoint: str | None) -> int | None:
    """The epoch of a checkpoint named ``epoch_NNN.ckpt`` (conf/callbacks/default.yaml), else None."""
    name = Path(checkpoint).stem if checkpoint else ""
    return int(name.split("_")[1]) if name.startswith("epoch_") and name.split("_")[1].isdigit() else None
