"""Optuna sweeper that resumes a study, survives failed trials, and keeps one job folder per trial.

hydra-optuna-sweeper 1.2 (the release that works with optuna < 3) restarts job numbering at 0 on every run, so
rerunning a sweep against the same sqlite study overwrites the first trials' folders; it ran `n_trials` *more* trials
each time; it left a killed sweep's trials RUNNING forever; a failed trial (or a NaN) ended the whole sweep; and a
seeded sampler replayed the same first suggestions after a resume. Here:

- job folder number == trial number, so every trial keeps its own folder across runs;
- ``n_trials`` is the size of the finished study: a rerun runs only the trials still missing (a finished study runs
  none and just rewrites `optimization_results.yaml`);
- a trial left RUNNING by a killed sweep is completed from its job's `status.json` when the job had finished, else
  marked FAIL (its folder's status becomes `interrupted`); interrupted trials do not count towards ``n_trials``;
- a failed job, or a NaN/None objective, is a FAIL trial and the sweep goes on; if no trial of the study completed,
  the sweep ends with an error;
- the sampler is reseeded with ``seed + trials already in the study``: a resumed sweep is reproducible and does not
  repeat the first run's suggestions;
- ``n_jobs`` (trials asked per batch) <= 0 means as many as the machine has cores, like joblib's ``n_jobs``.

One sweep process per study: a RUNNING trial is taken to be left over from a killed sweep.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import TrialState

from loan_default.sweeps.status import FAILED, OK, job_records, mark_interrupted

log = logging.getLogger(__name__)


class ResumableOptunaSweeperImpl(OptunaSweeperImpl):
    """`OptunaSweeperImpl` with resumable numbering, study-sized ``n_trials`` and failure tolerance."""

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        self._process_searchspace_config()
        space, fixed = create_params_from_overrides(self._parse_sweeper_params_config() + list(arguments))
        is_grid = isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler
        if is_grid:
            grid = {name: self._to_grid_sampler_choices(dist) for name, dist in space.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        for name in fixed:
            space.pop(name, None)
        directions = self._get_directions()

        Path(self.sweep_dir).mkdir(parents=True, exist_ok=True)  # sqlite creates its file, not the folder
        study = optuna.create_study(
            study_name=self.study_name, storage=self.storage, sampler=self.sampler, directions=directions,
            load_if_exists=True,
        )  # fmt: skip
        settle_unfinished_trials(study, self.sweep_dir)
        if study.trials and not is_grid:
            study.sampler = self._reseeded_sampler(len(study.trials)) or study.sampler
        remaining = max(0, self.n_trials - count_finished(study, self.sweep_dir))
        # The storage URL is not logged: a database URL may hold a password.
        log.info(
            "Study %s in %s: %d trials so far, %d to run to reach n_trials=%d", study.study_name, self.sweep_dir,
            len(study.trials), remaining, self.n_trials,
        )  # fmt: skip

        batch_size = _batch_size(self.n_jobs)
        while remaining > 0:
            trials = [study.ask() for _ in range(min(batch_size, remaining))]
            overrides = self._configure_trials(trials, space, fixed)
            # One process asks, so a batch's trials are numbered consecutively: job folder number == trial number.
            assert [t.number for t in trials] == list(range(trials[0].number, trials[0].number + len(trials)))
            returns = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            for trial, ret in zip(trials, returns, strict=True):
                values = trial_values(ret, len(directions))
                if values is None:
                    log.warning("Trial %d failed: FAIL in the study", trial.number)
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    _tell_complete(study, trial, values, is_grid)
            remaining -= len(trials)
        self._save_results(study, directions)

    def _reseeded_sampler(self, n_existing: int) -> Any | None:
        """A fresh sampler seeded with ``seed + n_existing``; None when the sampler has no seed."""
        sampler_cfg = OmegaConf.select(self.config, "hydra.sweeper.sampler")
        if sampler_cfg is None or sampler_cfg.get("seed") is None:
            return None
        return instantiate(sampler_cfg, seed=int(sampler_cfg.seed) + n_existing)

    def _save_results(self, study: optuna.Study, directions: Sequence[str]) -> None:
        """`optimization_results.yaml` as the upstream sweeper writes it; an error when no trial completed."""
        completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not completed:
            raise RuntimeError(
                f"No trial of study {study.study_name!r} completed ({len(study.trials)} trials): see "
                f"{self.sweep_dir}/summary.md and the failed jobs' error.txt"
            )
        if len(directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info("Best trial %d: value %s, params %s", best.number, best.value, best.params)
        else:
            front = [{"params": t.params, "values": t.values} for t in study.best_trials]
            results = {"name": "optuna", "solutions": front}
            log.info("%d Pareto-optimal trials", len(front))
        OmegaConf.save(OmegaConf.create(results), Path(self.sweep_dir) / "optimization_results.yaml")


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
        # GridSampler stops the study once the grid is exhausted, which `tell` reports outside `optimize`.
        if not (is_grid and "`Study.stop` is supposed to be invoked" in str(err)):
            raise


def _batch_size(n_jobs: int) -> int:
    """Trials per batch; n_jobs <= 0 counts back from the number of cores, as joblib's n_jobs=-1 means all."""
    if n_jobs == 0:
        raise ValueError("hydra.sweeper.n_jobs must be a positive number of trials per batch, or negative (-1 = cores)")
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)
