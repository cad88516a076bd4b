"""Optuna search as a Hydra sweeper: a resumable study driven through Optuna's public ask/tell API.

Hydra's `Sweeper` interface (`setup`, `sweep`) and its launchers are public; the sweeper asks the study for a batch of
trials, launches one job per trial through whatever launcher is configured (basic, joblib), and tells the study each
job's result. What it promises:

- job folder number == trial number, so every trial keeps its own folder across reruns;
- ``n_trials`` is the size of the finished study: a rerun runs only the trials still missing (a finished study runs
  none and just rewrites `optimization_results.yaml`);
- a trial left RUNNING by a killed sweep is completed from its job's `status.json` when the job had finished, else
  marked FAIL (its folder's status becomes `interrupted`); interrupted trials do not count towards ``n_trials``;
- a failed job, or a NaN/None objective, is a FAIL trial and the sweep goes on; if no trial of the study completed,
  the sweep ends with an error;
- the sampler is seeded with ``seed + trials already in the study``: a resumed sweep is reproducible and does not
  repeat the first run's suggestions;
- ``n_jobs`` trials are asked per batch (<= 0: as many as the machine has cores, like joblib's ``n_jobs``).

Optuna's storage heartbeat (`fail_stale_trials`) only tracks trials run by `study.optimize` in this process; our
trials run in launcher jobs, and a finished job's result must be kept, not failed. So a lock file next to the study
makes the sweep the study's only writer, and every RUNNING trial found at start is left over from a killed sweep.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock, Timeout
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from loan_default.common.atomic import atomic_write_text
from loan_default.sweeps.search_space import grid_values, search_space
from loan_default.sweeps.status import FAILED, OK, job_records, mark_interrupted

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
LOCK_FILE = "sweep.lock"
DIRECTIONS = ("minimize", "maximize")


class OptunaStudySweeper:
    """The work behind `hydra_plugins.loan_default_sweeper.ResumableOptunaSweeper` (keys of `hydra.sweeper`)."""

    def __init__(
        self,
        sampler: Mapping[str, Any],
        direction: str | Sequence[str],
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: Mapping[str, Any] | None,
    ) -> None:
        self.sampler_cfg = OmegaConf.create(
            OmegaConf.to_container(sampler, resolve=True) if OmegaConf.is_config(sampler) else dict(sampler)
        )
        if "_target_" not in self.sampler_cfg:
            raise ValueError("hydra.sweeper.sampler needs a _target_ (an optuna.samplers class)")
        self.directions = _directions(direction)
        self.storage = storage
        self.study_name = study_name
        if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 0:
            raise ValueError(f"hydra.sweeper.n_trials must be a whole number >= 0, got {n_trials!r}")
        self.n_trials = n_trials
        self.batch_size = _batch_size(n_jobs)
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.sweep_dir: Path | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: Sequence[str]) -> None:
        assert self.launcher is not None and self.sweep_dir is not None, "setup() first"
        space, fixed = search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        grid = None
        n_trials = self.n_trials
        if issubclass(get_class(self.sampler_cfg._target_), optuna.samplers.GridSampler):
            grid = {name: grid_values(name, dist) for name, dist in space.items()}
            n_trials = min(n_trials, math.prod(len(v) for v in grid.values()))

        self.sweep_dir.mkdir(parents=True, exist_ok=True)  # sqlite creates its file, not the folder
        with sole_sweep(self.sweep_dir):
            study = optuna.create_study(
                study_name=self.study_name, storage=self.storage, directions=self.directions, load_if_exists=True
            )
            settle_unfinished_trials(study, self.sweep_dir)
            study.sampler = self._sampler(len(study.trials), grid)
            remaining = max(0, n_trials - count_finished(study, self.sweep_dir))
            # The storage URL is not logged: a database URL may hold a password.
            log.info(
                "Study %s in %s: %d trials so far, %d to run to reach n_trials=%d", study.study_name, self.sweep_dir,
                len(study.trials), remaining, n_trials,
            )  # fmt: skip
            while remaining > 0:
                remaining -= self._run_batch(study, space, fixed, min(self.batch_size, remaining), grid is not None)
            save_results(study, self.sweep_dir)

    def _run_batch(
        self, study: optuna.Study, space: dict[str, BaseDistribution], fixed: dict[str, str], size: int, is_grid: bool
    ) -> int:
        """Ask ``size`` trials, run their jobs, tell the results; the number of trials run."""
        assert self.launcher is not None
        trials = [study.ask(fixed_distributions=space) for _ in range(size)]
        for trial in trials:
            for name, value in fixed.items():
                trial.set_user_attr(name, value)  # the study shows what a trial did not search
        first = trials[0].number
        # One process asks, so a batch's trials are numbered consecutively: job folder number == trial number.
        assert [t.number for t in trials] == list(range(first, first + len(trials)))
        overrides = [[f"{name}={value}" for name, value in {**t.params, **fixed}.items()] for t in trials]
        returns = self.launcher.launch(overrides, initial_job_idx=first)
        for trial, ret in zip(trials, returns, strict=True):
            values = trial_values(ret, len(self.directions))
            if values is None:
                log.warning("Trial %d failed: FAIL in the study", trial.number)
                study.tell(trial, state=TrialState.FAIL)
            else:
                _tell_complete(study, trial, values, is_grid)
        return len(trials)

    def _sampler(self, n_existing: int, grid: dict[str, list[Any]] | None) -> optuna.samplers.BaseSampler:
        """The configured sampler, its seed (when it has one) moved on by the trials already in the study."""
        kwargs: dict[str, Any] = {}
        if self.sampler_cfg.get("seed") is not None:
            kwargs["seed"] = int(self.sampler_cfg.seed) + n_existing
        if grid is not None:
            kwargs["search_space"] = grid
        return instantiate(self.sampler_cfg, **kwargs)


@contextmanager
def sole_sweep(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep folder's lock: a second sweep of the same study would fail the first one's running trials."""
    lock = FileLock(sweep_dir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RuntimeError(
            f"Another sweep is running in {sweep_dir} (it holds {sweep_dir / LOCK_FILE}); run one sweep at a time per "
            "study, or pass hydra.sweeper.study_name=<name> to start another study"
        ) from None
    except OSError as err:  # a file system without locks (some network mounts): go on, as before the lock existed
        log.warning("Cannot lock %s (%s): make sure no other sweep runs this study", sweep_dir / LOCK_FILE, err)
        yield
        return
    try:
        yield
    finally:
        lock.release()


def settle_unfinished_trials(study: optuna.Study, sweep_dir: str | Path) -> None:
    """Close trials a killed sweep left RUNNING: COMPLETE from the job's recorded objective, else FAIL."""
    records = job_records(sweep_dir)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        job_dir, record = records.get(trial.number, (None, {}))
        values = _as_values(record.get("objective"), len(study.directions)) if record.get("status") == OK else None
        if values is not None:
            log.info("Trial %d had finished before the sweep stopped: completing it with %s", trial.number, values)
            study.tell(trial.number, values=values)
        else:
            log.info("Trial %d was interrupted: marking it FAIL", trial.number)
            study.tell(trial.number, state=TrialState.FAIL)
            if job_dir is not None:
                mark_interrupted(job_dir)


def count_finished(study: optuna.Study, sweep_dir: str | Path) -> int:
    """Trials that count towards ``n_trials``: completed, pruned, or failed after their job ran to its end.

    A FAIL trial whose job never recorded an end (interrupted, or killed before it started) does not count.
    """
    records = job_records(sweep_dir)
    done = 0
    for trial in study.trials:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            done += 1
        elif trial.state == TrialState.FAIL:
            done += records.get(trial.number, (None, {}))[1].get("status") in (OK, FAILED)
    return done


def save_results(study: optuna.Study, sweep_dir: Path) -> Path:
    """`optimization_results.yaml` in the upstream plugin's format; an error when no trial completed."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise RuntimeError(
            f"No trial of study {study.study_name!r} completed ({len(study.trials)} trials): see "
            f"{sweep_dir}/summary.md and the failed jobs' error.txt"
        )
    if len(study.directions) == 1:
        best = study.best_trial
        results: dict[str, Any] = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        log.info("Best trial %d: value %s, params %s", best.number, best.value, best.params)
    else:
        front = [{"params": t.params, "values": t.values} for t in study.best_trials]
        results = {"name": "optuna", "solutions": front}
        log.info("%d Pareto-optimal trials", len(front))
    return atomic_write_text(sweep_dir / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(results)))


def trial_values(ret: JobReturn, n_objectives: int) -> list[float] | None:
    """The job's objective values, or None when the job failed or returned nothing usable (None, NaN, inf)."""
    if ret.status != JobStatus.COMPLETED:
        return None  # without the sweep callback the exception arrives here; run_job has logged it
    return _as_values(ret.return_value, n_objectives)


def _as_values(value: Any, n_objectives: int) -> list[float] | None:
    try:
        values = [float(v) for v in value] if n_objectives > 1 else [float(value)]
    except (TypeError, ValueError):
        return None
    return values if len(values) == n_objectives and all(math.isfinite(v) for v in values) else None


def _tell_complete(study: optuna.Study, trial: optuna.Trial, values: list[float], is_grid: bool) -> None:
    try:
        study.tell(trial, values=values)
    except RuntimeError as err:
        # GridSampler stops the study once the grid is exhausted, which Optuna reports as an error outside
        # `optimize`; the trial's result is stored before that.
        if not (is_grid and "`Study.stop` is supposed to be invoked" in str(err)):
            raise


def _directions(direction: str | Sequence[str]) -> list[str]:
    directions = [direction] if isinstance(direction, str) else [str(d) for d in direction]
    bad = [d for d in directions if d not in DIRECTIONS]
    if not directions or bad:
        raise ValueError(f"hydra.sweeper.direction must be minimize, maximize or a list of them, got {direction!r}")
    return directions


def _batch_size(n_jobs: int) -> int:
    """Trials per batch; n_jobs <= 0 counts back from the number of cores, as joblib's n_jobs=-1 means all."""
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ValueError(
            f"hydra.sweeper.n_jobs must be a positive number of trials per batch, or negative (-1 = cores), got {n_jobs!r}"
        )
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)
