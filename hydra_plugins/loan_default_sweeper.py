"""Registers `ResumableOptunaSweeper` with Hydra (`hydra.sweeper._target_` in `conf/hparams_search/optuna.yaml`).

Hydra instantiates sweepers only from the `hydra_plugins` namespace package and imports every module in it at start,
so this file stays thin (no optuna import) and the work is in `loan_default.sweeps.optuna_sweeper`. `hydra_plugins` must stay
a namespace package (no `__init__.py`), or it would hide the installed Optuna and joblib plugins.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig


class ResumableOptunaSweeper(OptunaSweeper):
    """Takes the upstream sweeper's settings unchanged; see `loan_default.sweeps.optuna_sweeper` for what differs."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        search_space: DictConfig | None,
        custom_search_space: str | None,
        params: DictConfig | None,
    ) -> None:
        from loan_default.sweeps.optuna_sweeper import ResumableOptunaSweeperImpl

        self.sweeper = ResumableOptunaSweeperImpl(
            sampler, direction, storage, study_name, n_trials, n_jobs, search_space, custom_search_space, params
        )
