"""Hydra callback for multiruns: a status record per job, failure tolerance, and the sweep summary.

Registered by `conf/hydra/callbacks/sweep_summary.yaml`; does nothing in single runs. Per job it writes `status.json`
(running, then ok/failed with the error's last line, start/end times, the objective, torch threads) and, for a failed
job, `error.txt` with the traceback. Hydra's sweepers stop at a failed job (the basic sweeper raises after its batch,
before the summary could run); this callback records the failure and hands the sweeper NaN instead, so the other jobs
go on. The resumable Optuna sweeper records NaN as a failed trial. The summary is refreshed after every job and at the
end; the multirun then exits with an error if every job failed or more than ``max_failure_rate`` of them did.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from loan_default.common.atomic import atomic_write_text
from loan_default.sweeps.status import FAILED, OK, RUNNING, read_status, write_status
from loan_default.sweeps.summary import SWEEP_FILE, SweepSummary, write_summary

log = logging.getLogger(__name__)


class SweepSummaryCallback(Callback):
    """Status files, failure tolerance and summary for `python train.py -m ...`."""

    def __init__(
        self,
        metric: str = "val/auroc_best",
        direction: str | list[str] = "maximize",
        max_failure_rate: float = 1.0,
        plot: bool = True,
    ) -> None:
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"max_failure_rate must be in [0, 1], got {max_failure_rate}")
        # A multi-objective Optuna study gives a list of directions; the summary ranks by the first objective.
        self.direction = str(direction[0] if isinstance(direction, list | tuple) else direction)
        self.metric = metric
        self.max_failure_rate = float(max_failure_rate)
        self.plot = plot

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        settings = {"metric": self.metric, "direction": self.direction, "sweeper": config.hydra.sweeper.get("_target_")}
        atomic_write_text(sweep_dir / SWEEP_FILE, json.dumps(settings, indent=2) + "\n")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        write_status(
            config.hydra.runtime.output_dir,
            {
                "num": int(config.hydra.job.num),
                "status": RUNNING,
                "overrides": list(config.hydra.overrides.task),
                "metric": self.metric,
                "started": time.time(),
                "pid": os.getpid(),
            },
        )

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        record = read_status(job_dir) or {
            "num": int(config.hydra.job.num),
            "overrides": list(config.hydra.overrides.task),
        }
        record.update(ended=time.time(), torch_threads=_torch_threads())
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the exception; `.return_value` would re-raise it
            lines = traceback.format_exception(type(error), error, error.__traceback__)
            atomic_write_text(job_dir / "error.txt", "".join(lines))
            record.update(status=FAILED, error=error_line(error))
            log.error("Job %s failed (%s); recorded in %s. The sweep goes on.", record["num"], record["error"], job_dir)
            # Hand the sweeper a NaN instead of the exception: the basic sweeper would abort the multirun after the
            # batch (the Optuna sweeper takes either as a FAIL trial). run_job returns this same JobReturn object.
            job_return.status = JobStatus.COMPLETED
            job_return.return_value = float("nan")
        else:
            record.update(status=OK, objective=_objective(job_return.return_value))
        write_status(job_dir, record)
        self._refresh_summary(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summary = self._refresh_summary(config)
        if summary is None or summary.table.empty:
            return
        table = summary.table
        failed = int((table["status"] == FAILED).sum())
        log.info("Sweep summary: %s (%d jobs, %d failed)", summary.files["md"], len(table), failed)
        if summary.best_bundle is not None:
            log.info("Best job %s: %s %.4f, bundle %s", table.loc[0, "job"], self.metric, table.loc[0, "objective"],
                     summary.best_bundle)  # fmt: skip
        if failed and (failed == len(table) or failed / len(table) > self.max_failure_rate):
            raise RuntimeError(
                f"{failed} of {len(table)} sweep jobs failed (max_failure_rate {self.max_failure_rate}); "
                f"see {summary.files['md']} and each failed job's error.txt"
            )

    def _refresh_summary(self, config: DictConfig) -> SweepSummary | None:
        """Rewrite the summary; a problem here is logged, never allowed to fail a finished job."""
        try:
            return write_summary(config.hydra.sweep.dir, self.metric, self.direction, plot=self.plot)
        except Exception:  # noqa: BLE001 - the summary is a report; the job's own result must survive
            log.warning("Could not write the sweep summary", exc_info=True)
            return None


def error_line(error: BaseException, limit: int = 300) -> str:
    """One line naming the root cause: `ValueError: dropout must be in [0, 1), got 1.5`, not Hydra's wrapper of it."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = " ".join("".join(traceback.format_exception_only(type(error), error)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


def _objective(value: Any) -> float | list[float] | None:
    """The task's return value as JSON numbers (NaN becomes null when written)."""
    try:
        return [float(v) for v in value] if isinstance(value, list | tuple) else float(value)
    except (TypeError, ValueError):
        return None


def _torch_threads() -> int | None:
    """Intra-op threads torch used in this job: shows whether parallel jobs shared the cores or fought over them."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
