"""Typed settings for the config blocks that travel as plain dicts, checked once when a run starts.

Hydra composes `threshold`, `evaluation`, `sampler`, `outlier`, `schedule`, `cv`, `data.label`, `data.split` and
`data.synthetic` and hands them on as dicts (``**cfg.threshold``, ``OmegaConf.to_container(cfg.sampler)``). A
misspelt key there (from an experiment file, a ``+key=`` override or a local config) used to be ignored or to fail
only after the data was read.
`validate_settings` checks them before anything runs and names the key: ``threshold.recal_target: unknown key``.

Where a block is passed as keyword arguments to one function, its model is built from that function's signature
(`signature_model`), so the function stays the one home of the keys, their types and their defaults: add a parameter
and the config key is accepted. Blocks read key by key (`evaluation`, `sampler`) have a model written out here; add a
field when you add a key to conf/.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import is_dataclass
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from loan_default.freddie.labels import LabelConfig
from loan_default.training.evaluation.threshold import choose_threshold
from loan_default.training.outliers import OutlierFilter
from loan_default.training.schedule import plan_schedule
from loan_default.training.splits import split_loans


class ConfigError(ValueError):
    """A config block with an unknown key or a value of the wrong type; the message names each key."""


class Block(BaseModel):
    """Base of every settings model: unknown keys are errors; YAML's unquoted codes (02 -> 2) may stand for text."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True, arbitrary_types_allowed=True)


def signature_model(name: str, target: Callable, skip: Collection[str] = ()) -> type[Block]:
    """A `Block` whose fields are ``target``'s keyword parameters (a function, a class's ``__init__`` or a
    dataclass), with their annotations and defaults; ``skip`` names parameters the caller fills in, not the config."""
    function = target.__init__ if isinstance(target, type) and not is_dataclass(target) else target
    hints = typing.get_type_hints(target if is_dataclass(target) else function)
    fields: dict[str, Any] = {}
    for p in inspect.signature(target).parameters.values():
        if p.name in ("self", *skip) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        fields[p.name] = (hints.get(p.name, Any), ... if p.default is p.empty else p.default)
    return create_model(name, __base__=Block, __doc__=f"Keyword arguments of {target.__qualname__}.", **fields)


# Blocks passed whole to one function: that function's signature is the schema.
ThresholdSettings = signature_model("ThresholdSettings", choose_threshold, skip=("y_true", "p"))
OutlierSettings = signature_model("OutlierSettings", OutlierFilter, skip=("seed",))
LabelSettings = signature_model("LabelSettings", LabelConfig)
SplitSettings = signature_model("SplitSettings", split_loans, skip=("df", "seed", "label"))
# The data module fills in the split's sizes, the sampler's share, data.batch_size and the training device.
_SCHEDULE_SKIP = ("n_rows", "n_pos", "n_val_pos", "pos_fraction", "balanced", "batch_size", "device_type")
ScheduleSettings = signature_model("ScheduleSettings", plan_schedule, skip=_SCHEDULE_SKIP)


def _synthetic_settings() -> type[Block]:
    # Imported here: the generator is only loaded by runs that check (or generate) synthetic data.
    from loan_default.synthetic.generate import ensure_synthetic

    return signature_model("SyntheticSettings", ensure_synthetic, skip=("folder",))


class ValidationSettings(Block):
    """`evaluation.validation`: the validation report's test level and small-cell rule."""

    alpha: float = Field(0.05, gt=0, lt=1)  # Jeffreys test level per risk grade
    min_defaults: int = Field(20, ge=1)  # cells with fewer defaults or non-defaults are marked small


class EvaluationSettings(Block):
    """`evaluation`: what the final report computes besides the model's own metrics (values: conf/train.yaml)."""

    baselines: bool  # logistic regression and LightGBM on the same split and features
    shap: bool  # SHAP plots
    shap_rows: int = Field(ge=1)  # test rows explained for the plots
    shap_background: int = Field(ge=1)  # training rows used as SHAP background
    plots: bool
    ci_level: float = Field(0.95, gt=0, lt=1)  # level of the report's confidence intervals
    validation: ValidationSettings = ValidationSettings()


class SamplerSettings(Block):
    """`sampler`: how training batches are drawn (read by `LoanDataModule.train_dataloader`; values: conf/sampler/)."""

    name: Literal["balanced", "shuffle"]
    pos_fraction: float | None = Field(gt=0, lt=1)  # share of defaults in every batch
    pos_to_neg_ratio: float | None = Field(gt=0)  # alternative to pos_fraction


class CvSettings(Block):
    """`cv`: cross-validation mode (`loan_default.training.cv`; values and the measurement: conf/train.yaml)."""

    folds: Annotated[int, Field(ge=2)] | Literal["auto"] | None = None  # null: off; K: K folds; auto: see below
    auto_max_rows: int = Field(0, ge=0)  # auto: on when the non-test rows are fewer than this
    auto_folds: int = Field(5, ge=2)  # auto: this many folds


class Settings(Block):
    """The typed view of a training config's dict-shaped blocks (the rest is checked by Hydra's instantiate)."""

    threshold: ThresholdSettings  # type: ignore[valid-type]
    evaluation: EvaluationSettings
    sampler: SamplerSettings
    outlier: OutlierSettings  # type: ignore[valid-type]
    label: LabelSettings | None = None  # type: ignore[valid-type]  # data.label; null: the prepared table's label
    split: SplitSettings | None = None  # type: ignore[valid-type]  # data.split
    schedule: ScheduleSettings | None = None  # type: ignore[valid-type]  # null: the schedule's own defaults
    cv: CvSettings = CvSettings()  # absent: cross-validation off


# Where each Settings field lives in the composed config.
_PATHS: dict[str, str] = {
    "threshold": "threshold",
    "evaluation": "evaluation",
    "sampler": "sampler",
    "outlier": "outlier",
    "label": "data.label",
    "split": "data.split",
    "schedule": "schedule",
    "cv": "cv",
}


def validate_settings(cfg: DictConfig | Mapping[str, Any]) -> Settings:
    """Check the dict-shaped blocks of a composed training config; raise `ConfigError` naming every bad key."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    raw = {name: _container(cfg, path) for name, path in _PATHS.items()}
    problems: list[str] = []
    settings = None
    try:
        settings = Settings.model_validate({k: v for k, v in raw.items() if v is not None or k in _REQUIRED})
    except ValidationError as err:
        problems += [_describe(error) for error in err.errors()]
    synthetic = _container(cfg, "data.synthetic")
    if synthetic is not None:
        problems += _check(_synthetic_settings(), synthetic, "data.synthetic")
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    assert settings is not None
    return settings


_REQUIRED = {name for name, field in Settings.model_fields.items() if field.is_required()}


def _container(cfg: DictConfig, path: str) -> Any:
    node = OmegaConf.select(cfg, path, default=None)
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _check(model: type[Block], value: Any, path: str) -> list[str]:
    try:
        model.model_validate(value)
    except ValidationError as err:
        return [_describe(error, prefix=path) for error in err.errors()]
    return []


def _describe(error: Mapping[str, Any], prefix: str | None = None) -> str:
    """One pydantic error as ``dotted.key: what is wrong``, with the config path of the block in front."""
    loc = [str(part) for part in error["loc"]]
    if prefix is None and loc:
        loc = [*_PATHS.get(loc[0], loc[0]).split("."), *loc[1:]]
    elif prefix is not None:
        loc = [*prefix.split("."), *loc]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (known: {', '.join(_known(loc))})"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {error['msg']} (got {error.get('input')!r:.60})"


def _known(loc: list[str]) -> list[str]:
    """The keys the block holding ``loc`` accepts (for the unknown-key message), nested blocks included."""
    path = ".".join(loc[:-1])
    if path.startswith("data.synthetic"):
        model: Any = _synthetic_settings()
        rest = loc[2:-1]
    else:
        block = next((n for n, p in _PATHS.items() if path == p or path.startswith(p + ".")), None)
        if block is None:
            return []
        model, rest = Settings, [block, *loc[len(_PATHS[block].split(".")) : -1]]
    for key in rest:
        field = model.model_fields.get(key) if _is_model(model) else None
        model = None if field is None else _unwrap(field.annotation)
    return sorted(model.model_fields) if _is_model(model) else []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def _is_model(model: Any) -> bool:
    return isinstance(model, type) and issubclass(model, BaseModel)
