"""Serve the newest model bundle over REST: `python serve.py [bundle=<path>] [port=8080] [workers=2] ...`.

Thin entry point: Hydra composes `conf/serve.yaml` over the defaults of `ServeSettings` (one home for them),
`loan_default.serving.server.serve` checks the bundle and starts uvicorn. Without a bundle it exits with a message
saying to run `python train.py` first.
"""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from loan_default.serving.settings import HYDRA_NODE, defaults

# The keys and defaults under conf/serve.yaml are ServeSettings' own: Hydra refuses an override of any other key
# (``port=8080`` works, ``prot=8080`` fails naming it).
ConfigStore.instance().store(name=HYDRA_NODE, node=defaults())


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from loan_default.serving.server import serve  # imported here so `--help` and config errors stay fast

    serve(OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
