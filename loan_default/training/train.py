"""`train(cfg)`: data -> fit -> best checkpoint -> evaluation report -> model bundle. Called by train.py and tests."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from loan_default.common.memory import release_free_memory
from loan_default.common.progress import progress_enabled
from loan_default.training.config import resolved_yaml
from loan_default.training.imbalance import loss_pos_weight
from loan_default.training.settings import validate_settings
from loan_default.training.shards import distributed_world

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train and evaluate one configuration. Returns (metrics, objects) like lightning-hydra-template's `train`."""
    started = time.time()
    validate_settings(cfg)  # a misspelt key in a dict-shaped block fails here, named, before any data is read
    _apply_extras(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(resolved_yaml(cfg))

    datamodule = make_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    from loan_default.training.cv import cv_folds, train_cv  # here: cv.py builds its fold models with this module

    folds = cv_folds(cfg, datamodule.split_summary)
    if folds:
        return train_cv(cfg, datamodule, folds, started)
    schedule = datamodule.schedule
    model, trainer = make_model_and_trainer(cfg, datamodule)

    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer, "schedule": schedule}
    metrics: dict[str, Any] = {}
    if cfg.get("train", True):
        log.info("Starting training")
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics.update(_scalars(trainer.callback_metrics))

    if cfg.get("test", True) and not trainer.fast_dev_run:
        best = _best_checkpoint(trainer, cfg)
        log.info("Testing the checkpoint %s", best or "in memory")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best)
        metrics.update(_scalars(trainer.callback_metrics))
        if trainer.is_global_zero:
            from loan_default.training.evaluation.evaluate import evaluate_and_bundle

            best_model = type(model).load_from_checkpoint(best) if best else model
            datamodule.use_whole_training_split()  # DDP: the evaluation sees every rank's training rows
            release_free_memory()  # what training and testing freed, before the evaluation's own temporaries
            report = evaluate_and_bundle(cfg, datamodule, best_model, output_dir, started=started)
            metrics.update({k: v for k, v in report.items() if isinstance(v, int | float)})
            objects["report"] = report
    return metrics, objects


def make_datamodule(cfg: DictConfig):
    """The configured `LoanDataModule` (not yet set up)."""
    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    return instantiate(
        cfg.data,
        sampler=OmegaConf.to_container(cfg.sampler, resolve=True),
        outlier=OmegaConf.to_container(cfg.outlier, resolve=True),
        schedule=OmegaConf.to_container(cfg.get("schedule") or {}, resolve=True),
        device_type=device_type(cfg.trainer.get("accelerator", "cpu")),
        **distributed_world(cfg.trainer),  # DDP: rank and world size, so each rank holds its shard (training/shards.py)
        _convert_="all",
    )


def make_model_and_trainer(cfg: DictConfig, datamodule) -> tuple[L.LightningModule, L.Trainer]:
    """The configured model and trainer for a set-up datamodule (its schedule fills the settings left to it)."""
    schedule = datamodule.schedule
    log.info("Instantiating model <%s>", cfg.model._target_)
    model = instantiate(
        cfg.model,
        n_numeric=datamodule.n_numeric,
        cat_cardinalities=datamodule.cat_cardinalities,
        pos_weight=loss_pos_weight(cfg.model.get("pos_weight"), datamodule.batch_pos_fraction),
        **_auto(cfg.model, "val_smoothing", schedule.val_smoothing),
        **_auto(cfg.model, "wide", schedule.wide),
        **_large_batch(cfg.model, schedule),
        _convert_="all",
    )

    loggers = _instantiate_group(cfg.get("logger"), "logger")
    callbacks = _instantiate_group(cfg.get("callbacks"), "callback", {EarlyStopping: {"patience": schedule.patience}})
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer_overrides: dict[str, Any] = {"callbacks": callbacks, "logger": loggers or False}
    trainer_overrides |= _auto(cfg.trainer, "max_epochs", schedule.max_epochs)
    if cfg.trainer.get("enable_progress_bar") is None:
        trainer_overrides["enable_progress_bar"] = progress_enabled()
    log.info("Instantiating trainer <%s>", cfg.trainer._target_)
    trainer: L.Trainer = instantiate(cfg.trainer, **trainer_overrides)
    return model, trainer


def _best_checkpoint(trainer: L.Trainer, cfg: DictConfig) -> str | None:
    ckpt = trainer.checkpoint_callback
    if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path:
        return ckpt.best_model_path
    if cfg.get("train", True):
        log.warning("No best checkpoint (checkpointing off?): evaluating the weights in memory")
        return None
    return cfg.get("ckpt_path")


def device_type(accelerator: str | None) -> str:
    """The torch device kind a Trainer with this ``accelerator`` trains on ("auto" looks for a GPU)."""
    accelerator = str(accelerator or "cpu").lower()
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return {"gpu": "cuda"}.get(accelerator, accelerator)


def _large_batch(model: DictConfig, schedule) -> dict[str, Any]:
    """The learning rate scaled for the schedule's batch size, and its warm-up (`training.schedule`)."""
    if schedule.lr_scale == 1.0:
        return {}
    log.info("Batch %d: learning rate x %.3g, warm-up %d steps", schedule.batch_size, schedule.lr_scale,
             schedule.warmup_steps)  # fmt: skip
    return {
        "lr": float(model.lr) * schedule.lr_scale,
        "warmup_steps": max(schedule.warmup_steps, model.get("warmup_steps") or 0),
    }


def _auto(node: DictConfig, key: str, value: Any) -> dict[str, Any]:
    """``{key: value}`` where the config leaves ``key`` to the adaptive schedule (null or "auto"), else ``{}``."""
    return {key: value} if node.get(key) in (None, "auto") else {}


def _instantiate_group(group: DictConfig | None, kind: str, auto: dict[type, dict] | None = None) -> list:
    """Every entry with a ``_target_``; ``auto`` fills a class's null ("auto") settings from the schedule."""
    objects = []
    for name, conf in (group or {}).items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            log.info("Instantiating %s <%s>", kind, conf._target_)
            fills = {}
            for cls, values in (auto or {}).items():
                if issubclass(get_class(conf._target_), cls):
                    fills = {k: v for k, v in values.items() if _auto(conf, k, v)}
            objects.append(instantiate(conf, **fills, _convert_="all"))
        else:
            log.debug("Skipping %s %s: no _target_", kind, name)
    return objects


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, torch.Tensor) and v.numel() == 1}


def _apply_extras(cfg: DictConfig) -> None:
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
        for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if extras.get("print_config"):
        log.info("Resolved config:\n%s", resolved_yaml(cfg))
