"""Train the default model: `python train.py [model=ann_large] [data=freddie data.folder=...] [-m sweeps ...]`.

Thin entry point: Hydra composes `conf/train.yaml`, `loan_default.training.train.train` does the work. The `__main__` guard is
required: the SUOD outlier stage and DataLoader workers spawn processes that re-import this file.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from loan_default.training.train import train  # imported here so `--help` and config errors stay fast

    metrics, _ = train(cfg)
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
