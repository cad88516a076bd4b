"""The run's configuration as it is saved with every run and bundle."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def resolved_yaml(cfg: DictConfig) -> str:
    """The run's config, fully resolved, without Hydra's own node (Hydra keeps that in .hydra/)."""
    return OmegaConf.to_yaml({k: cfg[k] for k in cfg if k != "hydra"}, resolve=True)
