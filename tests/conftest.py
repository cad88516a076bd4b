"""Shared fixtures: one small synthetic Freddie Mac data set per test session, and the real Hydra config, shrunk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small but not degenerate: enough defaults per split for ROC-AUC and a recall threshold.
TINY_LOANS = 4000
TINY_SEED = 11

os.environ.setdefault("CI", "true")  # no progress bars in test logs


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A project root whose data/synthetic holds a small generated data set (made once per session)."""
    from loan_default.synthetic.generate import ensure_synthetic

    root = tmp_path_factory.mktemp("root")
    ensure_synthetic(root / "data" / "synthetic", loans=TINY_LOANS, seed=TINY_SEED)
    return root


@pytest.fixture(scope="session")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real bundle (fitted Preprocessor, SUOD, LoanNet) for the API and batch-scoring tests, built once."""
    from demo_bundle import build_demo_bundle

    path = tmp_path_factory.getbasetemp() / "api-demo-bundle"
    build_demo_bundle(path, n_loans=1500, seed=3, detectors=("HBOS", "COPOD"))
    return path


@pytest.fixture(scope="module")
def bundle(bundle_path: Path):
    from loan_default.core.bundle import load_bundle

    return load_bundle(bundle_path)


def tiny_overrides(root: Path, synthetic: bool = True) -> list[str]:
    """Overrides that make a full training run take seconds."""
    data = [f"data.synthetic.loans={TINY_LOANS}", f"data.synthetic.seed={TINY_SEED}"] if synthetic else []
    return [
        f"paths.root_dir={root}",
        *data,
        "trainer.max_epochs=2",
        "data.batch_size=256",
        "logger=csv",
        "evaluation.shap_rows=100",
        "evaluation.shap_background=50",
        "++outlier.max_reference_rows=2000",
    ]


def compose_train_cfg(root: Path, output_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """The real conf/train.yaml composed with `overrides`, outputs pointed at `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        synthetic = not {"data=freddie", "data=parquet"} & set(overrides)  # real-data groups have no generator
        cfg = compose("train", overrides=[*tiny_overrides(root, synthetic), *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} interpolations resolve outside @hydra.main
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.extras.print_config = False
    GlobalHydra.instance().clear()
    return cfg


def resolved(cfg: DictConfig) -> dict:
    """The config without Hydra's own node, fully resolved (Hydra's sweep keys need a running job)."""
    return {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
            for key in cfg if key != "hydra"}  # fmt: skip
