"""Serve the newest model bundle over REST: `python serve.py [bundle=<path>] [port=8080] [workers=2] ...`.

Thin entry point: Hydra composes `conf/serve.yaml`, `loan_default.serving.server.serve` checks the bundle and starts
uvicorn. Without a bundle it exits with a message saying to run `python train.py` first.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from loan_default.serving.server import serve  # imported here so `--help` and config errors stay fast

    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("paths", None)
    serve(config)


if __name__ == "__main__":
    main()
