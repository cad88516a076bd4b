"""Registers `ResumableOptunaSweeper` with Hydra (`hydra/sweeper: optuna_study`, i.e. `conf/hydra/sweeper/optuna_study.yaml`).

Hydra instantiates sweepers only from the `hydra_plugins` namespace package and imports every module in it at start,
so this file stays thin (no optuna import) and the work is in `loan_default.sweeps.optuna_sweeper`. `hydra_plugins` must stay
a namespace package (no `__init__.py`), or it would hide the installed joblib launcher plugin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ResumableOptunaSweeper(Sweeper):
    """Hydra's public `Sweeper` interface over `loan_default.sweeps.optuna_sweeper.OptunaStudySweeper`."""

    def __init__(
        self,
        sampler: Mapping[str, Any],
        direction: str | Sequence[str],
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        from loan_default.sweeps.optuna_sweeper import OptunaStudySweeper

        self.sweeper = OptunaStudySweeper(sampler, direction, storage, study_name, n_trials, n_jobs, params)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
