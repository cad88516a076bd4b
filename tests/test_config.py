"""Every config group composes and every `_target_` instantiates, so a typo fails here rather than mid-run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from loan_default.training.settings import validate_settings
from tests.conftest import CONF, compose_train_cfg, resolved, tiny_overrides


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("model", options("model"))
def test_models_instantiate_with_plain_hyperparameters(tmp_path, model):
    cfg = compose_train_cfg(tmp_path, tmp_path, [f"model={model}"])
    module = instantiate(cfg.model, n_numeric=5, cat_cardinalities=[3, 4], pos_weight=1.0, _convert_="all")
    out = module(torch.zeros(8, 5), torch.zeros(8, 2, dtype=torch.long))
    assert out.shape == (8, 1)
    for value in module.hparams.values():  # a ListConfig or object here breaks load_from_checkpoint
        assert isinstance(value, int | float | str | bool | list | type(None)), type(value)


def test_large_model_is_clearly_larger(tmp_path):
    sizes = {}
    for model in ("ann_small", "ann_large"):
        cfg = compose_train_cfg(tmp_path, tmp_path, [f"model={model}"])
        module = instantiate(cfg.model, n_numeric=60, cat_cardinalities=[50, 100], pos_weight=1.0, _convert_="all")
        sizes[model] = sum(p.numel() for p in module.parameters())
    assert sizes["ann_large"] > 5 * sizes["ann_small"]


@pytest.mark.parametrize("logger", options("logger"))
def test_loggers_instantiate(tmp_path, logger, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # hydra.job.env_set does this for real runs
    cfg = compose_train_cfg(tmp_path, tmp_path, [f"logger={logger}"])
    for conf in (cfg.logger or {}).values():
        assert instantiate(conf) is not None


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainers_compose_and_cpu_ones_instantiate(tmp_path, trainer):
    cfg = compose_train_cfg(tmp_path, tmp_path, [f"trainer={trainer}"])
    assert cfg.trainer.use_distributed_sampler is False  # the balanced sampler shards by rank itself
    if trainer == "gpu" and not torch.cuda.is_available():
        pytest.skip("no GPU here; the gpu config composed")
    overrides = {"accelerator": "cpu"} if trainer == "ddp" else {}
    assert instantiate(cfg.trainer, enable_progress_bar=False, logger=False, **overrides) is not None


def test_callbacks_instantiate(tmp_path):
    cfg = compose_train_cfg(tmp_path, tmp_path)
    names = {type(instantiate(c)).__name__ for c in cfg.callbacks.values()}
    assert {"ModelCheckpoint", "EarlyStopping"} <= names
    assert cfg.callbacks.model_checkpoint.monitor == "val/auroc_smooth"  # the schedule's smoothed ROC-AUC


@pytest.mark.parametrize("data", options("data"))
def test_datamodules_instantiate(tmp_path, data):
    extra = {"freddie": [f"data.folder={tmp_path}"], "parquet": [f"data.path={tmp_path}"]}.get(data, [])
    cfg = compose_train_cfg(tmp_path, tmp_path, [f"data={data}", *extra])
    dm = instantiate(cfg.data, sampler=dict(cfg.sampler), outlier=dict(cfg.outlier), _convert_="all")
    assert dm.label.horizon_months == 24


def test_real_data_without_files_is_a_clear_error(tmp_path):
    cfg = compose_train_cfg(tmp_path, tmp_path, ["data=freddie"])
    with pytest.raises(Exception, match="data.folder"):
        instantiate(cfg.data, _convert_="all")


def leaves(node, prefix: str = ""):
    """(dotted key, value) of every leaf a config file sets, its defaults list and interpolations left out."""
    for key, value in node.items_ex(resolve=False):
        if (prefix == "" and key == "defaults") or OmegaConf.is_interpolation(node, key):
            continue
        path = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            yield from leaves(value, path + ".")
        else:
            yield path, value


def assert_applied(cfg: DictConfig, group: str, option: str, tmp_path: Path, overrides: list[str] = ()) -> None:
    """Every value the option's file sets is in the composed config (unless a test override shrinks it), and the
    config passes the typed settings check a run starts with."""
    file = CONF / group / f"{option}.yaml"
    package = "" if file.read_text().startswith("# @package _global_") else f"{group}."
    shrunk = {o.split("=")[0].lstrip("+") for o in [*tiny_overrides(tmp_path), *overrides]}
    for key, value in leaves(OmegaConf.load(file)):
        if package + key not in shrunk:
            assert OmegaConf.select(cfg, package + key) == value, f"{group}={option}: {package + key}"
    validate_settings(cfg)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose(tmp_path, experiment):
    cfg = compose_train_cfg(tmp_path, tmp_path, [f"experiment={experiment}"])
    assert resolved(cfg)["task_name"] == experiment
    assert_applied(cfg, "experiment", experiment, tmp_path)


@pytest.mark.parametrize("group", ["sampler", "outlier", "debug", "data"])
def test_other_groups_compose(tmp_path, group):
    extra = {"freddie": [f"data.folder={tmp_path}"], "parquet": [f"data.path={tmp_path}"]}
    for option in options(group):
        cfg = compose_train_cfg(tmp_path, tmp_path, [f"{group}={option}", *extra.get(option, [])])
        assert resolved(cfg)
        assert_applied(cfg, group, option, tmp_path, extra.get(option, []))


def test_resolved_config_has_the_documented_defaults(tmp_path):
    cfg = compose_train_cfg(Path(tmp_path), tmp_path)
    assert cfg.optimized_metric == "val/auroc_best"
    assert cfg.threshold.recall_target == 0.90
    assert cfg.data.label.credit_event_codes == ["02", "03", "09", "15"]
    assert cfg.sampler.name == "balanced" and cfg.outlier.method == "suod"
