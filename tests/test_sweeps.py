"""Hydra sweeps: grids, Optuna search that resumes after a kill, failure tolerance, joblib parallelism, the summary.

The end-to-end tests run `python train.py -m ...` in a subprocess on tiny data, as a user would; the others exercise
the summary and the resumable Optuna sweeper in-process against hand-made job folders and a fake launcher.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import optuna
import pandas as pd
import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from loan_default.sweeps.callbacks import error_line
from loan_default.sweeps.optuna_sweeper import (
    LOCK_FILE,
    OptunaStudySweeper,
    count_finished,
    settle_unfinished_trials,
)
from loan_default.sweeps.search_space import grid_values, search_space
from loan_default.sweeps.status import FAILED, INTERRUPTED, OK, RUNNING, read_status, write_status
from loan_default.sweeps.summary import main as summary_main
from loan_default.sweeps.summary import rank_jobs, split_overrides, write_summary

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
# A training job in a few seconds.
TINY = [
    "data.synthetic.loans=3000",
    "trainer.max_epochs=1",
    "evaluation.baselines=false",
    "evaluation.shap=false",
    "evaluation.plots=false",
    "outlier=none",
    "logger=csv",
    "extras.print_config=false",
]
OPTUNA_TINY = ["hparams_search=optuna", "hydra.sweeper.n_trials=3"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One project root per module, so the synthetic data is generated once."""
    return tmp_path_factory.mktemp("sweep_root")


def train_command(root: Path, sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "train.py", "-m", *TINY, f"paths.root_dir={root}", f"hydra.sweep.dir={sweep_dir}",
            *overrides]  # fmt: skip


def run_sweep(root: Path, sweep_dir: Path, *overrides: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        train_command(root, sweep_dir, *overrides), cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "CI": "true"},
    )  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def markdown_rows(sweep_dir: Path) -> list[str]:
    return [
        line for line in (sweep_dir / "summary.md").read_text().splitlines() if re.match(r"^\| \d* \| \d+ \|", line)
    ]


def logged_best(job_dir: Path, metric: str = "val/auroc_best") -> float:
    """Independent reference: the best value of `metric` the CSV logger recorded during training."""
    return float(pd.read_csv(job_dir / "csv" / "metrics.csv")[metric].max())


# ---------------------------------------------------------------------------------------------- end to end (fast)


def test_grid_2x2_gives_four_job_folders_and_a_ranked_summary(root, tmp_path):
    sweep = tmp_path / "grid"
    run_sweep(root, sweep, "model=ann_small,ann_large", "sampler=balanced,shuffle")

    for job in range(4):
        job_dir = sweep / str(job)
        assert (job_dir / "report.md").is_file() and (job_dir / "bundle" / "manifest.json").is_file()
        assert read_status(job_dir)["status"] == OK
    rows = summary_rows(sweep)
    assert len(rows) == 4 and len(markdown_rows(sweep)) == 4
    grid = {tuple(o for o in row["overrides"].split() if o.startswith(("model=", "sampler="))) for row in rows}
    assert grid == {(f"model={m}", f"sampler={s}") for m in ("ann_small", "ann_large") for s in ("balanced", "shuffle")}

    values = [float(row["val/auroc_best"]) for row in rows]
    assert values == sorted(values, reverse=True) and [row["rank"] for row in rows] == ["1", "2", "3", "4"]
    for row in rows:
        assert float(row["val/auroc_best"]) == pytest.approx(logged_best(sweep / row["job"]), abs=1e-9)
        assert float(row["test_auroc"]) == json.loads((sweep / row["job"] / "metrics.json").read_text())["test_auroc"]
    best = sweep / rows[0]["job"] / "bundle"
    assert rows[0]["bundle"] == str(best)
    assert f"Bundle: `{best}`" in (sweep / "summary.md").read_text()
    assert (sweep / "summary.png").read_bytes().startswith(PNG)


# ---------------------------------------------------------------------------------------------- end to end (slow)


@pytest.mark.slow
def test_failed_job_is_recorded_and_the_others_complete(root, tmp_path):
    sweep = tmp_path / "fail"
    run_sweep(root, sweep, "model.dropout=0.1,1.5")  # exit status 0: one failure does not fail the sweep

    rows = {
        next(o for o in row["overrides"].split() if o.startswith("model.dropout=")): row for row in summary_rows(sweep)
    }
    good, bad = rows["model.dropout=0.1"], rows["model.dropout=1.5"]
    assert good["status"] == OK and good["rank"] == "1" and Path(good["bundle"]).is_dir()
    assert (
        bad["status"] == FAILED
        and bad["rank"] == ""
        and bad["error"] == "ValueError: dropout must be in [0, 1), got 1.5"
    )
    assert "Traceback" in (sweep / bad["job"] / "error.txt").read_text()
    assert "failed: ValueError: dropout must be in [0, 1), got 1.5" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_optuna_sweep_where_every_trial_fails_exits_with_an_error(root, tmp_path):
    sweep = tmp_path / "allfail"
    proc = run_sweep(root, sweep, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "model.dropout=1.5", ok=False)

    assert proc.returncode != 0 and "No trial of study" in proc.stdout + proc.stderr
    study = optuna.load_study(study_name="train", storage=f"sqlite:///{sweep}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert [row["status"] for row in summary_rows(sweep)] == [FAILED, FAILED]
    assert not (sweep / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_optuna_sweep_killed_mid_trial_resumes_when_rerun(root, tmp_path):
    sweep = tmp_path / "optuna"
    storage = f"sqlite:///{sweep}/optuna.db"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(
            train_command(root, sweep, *OPTUNA_TINY), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "CI": "true"},
        )  # fmt: skip
        deadline = time.time() + 400
        # Trial 1's job has started, so trial 0 is complete and told to the study: kill the sweep now.
        while not (sweep / "1" / "status.json").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    before = optuna.load_study(study_name="train", storage=storage).trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    first_record = read_status(sweep / "0")

    run_sweep(root, sweep, *OPTUNA_TINY)  # the same command again

    trials = optuna.load_study(study_name="train", storage=storage).trials
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert (trials[0].params, trials[0].value) == (before[0].params, before[0].value)  # continued, not restarted
    assert trials[2].params != trials[0].params  # the resumed sampler does not replay the first suggestions
    assert read_status(sweep / "0") == first_record  # trial 0's folder was not overwritten
    assert read_status(sweep / "1")["status"] == INTERRUPTED
    for t in (trials[0], trials[2], trials[3]):  # job folder number == trial number
        assert read_status(sweep / str(t.number))["objective"] == pytest.approx(t.value)
        assert t.value == pytest.approx(logged_best(sweep / str(t.number)), abs=1e-9)
        assert f"model.lr={t.params['model.lr']}" in read_status(sweep / str(t.number))["overrides"]

    results = OmegaConf.load(sweep / "optimization_results.yaml")
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert results.best_value == pytest.approx(best.value) and dict(results.best_params) == best.params
    rows = summary_rows(sweep)
    assert [row["status"] for row in rows] == [OK, OK, OK, INTERRUPTED]
    assert rows[0]["job"] == str(best.number) and rows[0]["bundle"] == str(sweep / str(best.number) / "bundle")


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_at_once(root, tmp_path):
    sweep = tmp_path / "joblib"
    run_sweep(root, sweep, "model.dropout=0.1,0.2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")

    records = [read_status(sweep / str(job)) for job in (0, 1)]
    assert all(r["status"] == OK for r in records)
    assert max(r["started"] for r in records) < min(r["ended"] for r in records)  # the two jobs overlapped in time
    assert records[0]["pid"] != records[1]["pid"]
    # joblib sets each worker's OMP_NUM_THREADS to cores // n_jobs (unless already set), so the jobs share the cores.
    threads = int(os.environ.get("OMP_NUM_THREADS", max(1, joblib.cpu_count() // 2)))
    assert all(r["torch_threads"] == threads for r in records)
    assert len(summary_rows(sweep)) == 2


@pytest.mark.slow
def test_optuna_search_with_joblib_runs_a_batch_of_n_jobs_trials_at_once(root, tmp_path):
    sweep = tmp_path / "optuna_joblib"
    run_sweep(root, sweep, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra/launcher=joblib",
              "hydra.launcher.n_jobs=2")  # fmt: skip

    trials = optuna.load_study(study_name="train", storage=f"sqlite:///{sweep}/optuna.db").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    records = [read_status(sweep / str(t.number)) for t in trials]  # job folder number == trial number
    assert [r["objective"] for r in records] == pytest.approx([t.value for t in trials])
    assert max(r["started"] for r in records) < min(r["ended"] for r in records)  # one batch of two, in parallel
    assert records[0]["pid"] != records[1]["pid"]
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_value == pytest.approx(max(t.value for t in trials))


# ---------------------------------------------------------------------------------------------- configs (fast)


def compose_train(tmp_path: Path, *overrides: str):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=[f"paths.root_dir={tmp_path}", *overrides], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def test_optuna_search_space_is_valid_and_every_choice_composes(tmp_path):
    cfg = compose_train(tmp_path, "hparams_search=optuna", f"hydra.sweep.dir={tmp_path}/s")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.loan_default_sweeper.ResumableOptunaSweeper"
    assert sweeper.storage == f"sqlite:///{tmp_path}/s/optuna.db"
    assert (sweeper.direction, cfg.optimized_metric, sweeper.sampler.seed) == ("maximize", "val/auroc_best", cfg.seed)
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.n_jobs == 1
    assert sweeper.sampler.n_startup_trials == 10
    assert cfg.hydra.callbacks.sweep_summary.direction == "maximize"

    space, fixed = search_space([f"{k}={v}" for k, v in sweeper.params.items()])
    assert not fixed
    assert set(space) == {"model.lr", "model.weight_decay", "model.hidden_sizes", "model.dropout",
                          "model.pos_weight", "sampler.pos_fraction"}  # fmt: skip
    assert space["model.lr"] == FloatDistribution(0.0003, 0.01, log=True)
    for sizes in space["model.hidden_sizes"].choices:  # strings that Hydra turns back into lists of ints
        composed = compose_train(tmp_path, f"model.hidden_sizes={sizes}").model.hidden_sizes
        assert list(composed) == json.loads(sizes)
    for weight in space["model.pos_weight"].choices:
        assert compose_train(tmp_path, f"model.pos_weight={weight}").model.pos_weight == weight


def test_sweep_dir_of_a_search_does_not_depend_on_the_time(tmp_path):
    """Rerunning the same command must find the same study, so no ${now:} in the search's sweep folder."""
    cfg = compose_train(tmp_path, "hparams_search=optuna")
    assert OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["dir"].count("now:") == 0
    assert (
        compose_train(tmp_path, "hparams_search=optuna", "hydra.sweeper.study_name=wide").hydra.sweeper.study_name
        == "wide"
    )


# ---------------------------------------------------------------------------------------------- summary (fast)


def fake_job(sweep: Path, num: int, status: str, objective=None, overrides=(), error=None, metrics=None) -> Path:
    job_dir = sweep / str(num)
    job_dir.mkdir(parents=True)
    record = {"num": num, "status": status, "overrides": list(overrides), "started": 100.0 + num, "ended": 110.0 + num}
    write_status(job_dir, {**record, "objective": objective, "error": error})
    if metrics is not None:
        (job_dir / "bundle").mkdir()
        (job_dir / "metrics.json").write_text(json.dumps(metrics))
    return job_dir


def test_summary_ranks_finished_jobs_and_lists_the_rest(tmp_path):
    common = ["data.synthetic.loans=3000"]
    fake_job(
        tmp_path,
        0,
        OK,
        0.70,
        ["model.lr=0.0011155792840695788", *common],
        metrics={"val_auroc": 0.69, "test_auroc": 0.68, "recall_at_threshold": 0.9, "false_negatives": 3},
    )
    fake_job(tmp_path, 1, FAILED, None, ["model.lr=0.5", *common], error="ValueError: boom | bang")
    fake_job(
        tmp_path,
        2,
        OK,
        0.80,
        ["model.lr=0.002", *common],
        metrics={"val_auroc": 0.79, "test_auroc": 0.77, "recall_at_threshold": 0.85, "false_negatives": 4},
    )
    fake_job(tmp_path, 3, RUNNING, None, ["model.lr=0.003", *common])
    (tmp_path / "not_a_job").mkdir()

    summary = write_summary(tmp_path)
    assert list(summary.table["job"]) == [2, 0, 1, 3]
    assert [None if pd.isna(rank) else rank for rank in summary.table["rank"]] == [1, 2, None, None]
    assert summary.best_bundle == tmp_path / "2" / "bundle"
    assert summary.table.loc[0, "duration_s"] == 10.0
    rows = summary_rows(tmp_path)
    assert rows[0]["false_negatives"] == "4" and rows[2]["error"] == "ValueError: boom | bang"
    md = (tmp_path / "summary.md").read_text()
    assert "4 jobs (2 ok, 1 failed, 1 running)" in md and "`data.synthetic.loans=3000`" in md
    assert "failed: ValueError: boom \\| bang" in md  # a pipe in an error must not break the table
    assert "`model.lr=0.001116`" in md and "model.lr=0.0011155792840695788" in rows[1]["overrides"]
    assert len(markdown_rows(tmp_path)) == 4 and (tmp_path / "summary.png").read_bytes().startswith(PNG)

    assert list(write_summary(tmp_path, direction="minimize").table["job"]) == [0, 2, 1, 3]


def test_best_job_without_a_bundle_is_named_without_one(tmp_path):
    fake_job(tmp_path, 0, OK, 0.7, ["x=1"])  # trained with test=false: no metrics.json, no bundle
    fake_job(tmp_path, 1, OK, None, ["x=2"])  # finished without returning the metric
    summary = write_summary(tmp_path, plot=False)
    assert summary.best_bundle is None and list(summary.table["job"]) == [0, 1]
    assert "**Best: job 0**" in (tmp_path / "summary.md").read_text()


def test_rank_jobs_puts_ties_in_job_order_and_rejects_unknown_directions():
    jobs = pd.DataFrame({"job": [3, 1, 2], "status": [OK, OK, OK], "objective": [0.5, 0.5, math.nan]})
    assert list(rank_jobs(jobs)["job"]) == [1, 3, 2]
    with pytest.raises(ValueError, match="direction"):
        rank_jobs(jobs, "max")


def test_split_overrides_keeps_only_what_differs():
    common, own = split_overrides([["a=1", "b=1", "c=1"], ["a=1", "b=2", "c=1"]])
    assert common == ["a=1", "c=1"] and own == [["b=1"], ["b=2"]]
    assert split_overrides([["a=1"]]) == ([], [["a=1"]])  # a single job: show its overrides in its row


def test_summary_cli(tmp_path, capsys):
    assert summary_main([str(tmp_path)]) == 1  # no jobs
    fake_job(tmp_path, 0, OK, 0.7, ["x=1"], metrics={"test_auroc": 0.6})
    assert summary_main([str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "| 1 | 0 | ok | 0.7000 |" in out and f"Best bundle: {tmp_path / '0' / 'bundle'}" in out
    assert not (tmp_path / "summary.png").exists()


def test_error_line_names_the_root_cause():
    try:
        try:
            raise ValueError("dropout must be in [0, 1), got 1.5")
        except ValueError as inner:
            raise RuntimeError("Error in call to target\nfull_key: model") from inner
    except RuntimeError as err:
        assert error_line(err) == "ValueError: dropout must be in [0, 1), got 1.5"
    assert error_line(KeyError("a\n  b")) == "KeyError: 'a\\n b'"


# ---------------------------------------------------------------------------------------------- Optuna sweeper (fast)


class FakeLauncher:
    """Runs "jobs" in-process: the objective is x unless y == 'bad' (the job raises) or x < 0.1 (it returns NaN).

    Each job writes the status record the sweep callback would write, into <sweep>/<job number>.
    """

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = sweep_dir
        self.launched: list[int] = []
        self.batches: list[list[list[str]]] = []

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        self.batches.append([list(o) for o in job_overrides])
        returns = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            params = dict(o.split("=", 1) for o in overrides)
            x = float(params["x"])
            ret = JobReturn(overrides=list(overrides))
            if params.get("y") == "bad":
                ret.status, ret.return_value, record = JobStatus.FAILED, ValueError("bad y"), {"status": FAILED}
            else:
                value = math.nan if x < 0.1 else x
                ret.status, ret.return_value, record = JobStatus.COMPLETED, value, {"status": OK, "objective": value}
            write_status(self.sweep_dir / str(num), {"num": num, "overrides": list(overrides), **record})
            self.launched.append(num)
            returns.append(ret)
        return returns


PARAMS = {"x": "interval(0.0, 1.0)", "y": "choice(good, good, bad)"}


def make_sweeper(
    sweep_dir: Path, n_trials: int, n_jobs: int = 1, seed: int = 3, sampler: str = "RandomSampler", params=None
) -> OptunaStudySweeper:
    sweeper = OptunaStudySweeper(
        sampler={"_target_": f"optuna.samplers.{sampler}", "seed": seed}, direction="maximize",
        storage=f"sqlite:///{sweep_dir}/optuna.db", study_name="s", n_trials=n_trials, n_jobs=n_jobs,
        params=OmegaConf.create(PARAMS if params is None else params),
    )  # fmt: skip
    sweeper.launcher = FakeLauncher(sweep_dir)
    sweeper.sweep_dir = sweep_dir
    return sweeper


def load(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=f"sqlite:///{sweep_dir}/optuna.db")


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_failed_and_nan_trials_are_fail_and_the_sweep_goes_on(tmp_path):
    sweeper = make_sweeper(tmp_path, n_trials=12, n_jobs=2)
    sweeper.sweep([])
    trials = load(tmp_path).trials
    assert len(trials) == 12 and sweeper.launcher.launched == list(range(12))
    assert [len(batch) for batch in sweeper.launcher.batches] == [2] * 6  # n_jobs trials per launch
    for t in trials:
        broken = t.params["y"] == "bad" or t.params["x"] < 0.1
        assert t.state == (TrialState.FAIL if broken else TrialState.COMPLETE), t
    assert {t.state for t in trials} == {TrialState.FAIL, TrialState.COMPLETE}  # the seed gives both kinds
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert results.best_value == best.value and dict(results.best_params) == best.params
    assert oct((tmp_path / "optimization_results.yaml").stat().st_mode & 0o777) == "0o644"


def test_last_batch_is_cut_to_the_trials_still_missing(tmp_path):
    sweeper = make_sweeper(tmp_path, n_trials=5, n_jobs=2)
    sweeper.sweep([])
    assert [len(batch) for batch in sweeper.launcher.batches] == [2, 2, 1] and len(load(tmp_path).trials) == 5


def test_rerun_continues_numbering_and_runs_only_the_missing_trials(tmp_path):
    make_sweeper(tmp_path, n_trials=3).sweep([])
    first = load(tmp_path).trials

    again = make_sweeper(tmp_path, n_trials=5)
    again.sweep([])
    trials = load(tmp_path).trials
    assert again.launcher.launched == [3, 4]  # job folders 0-2 untouched, new trials in 3 and 4
    assert [(t.params, t.state) for t in trials[:3]] == [(t.params, t.state) for t in first]
    assert [t.params for t in trials[3:]] != [t.params for t in first[:2]]  # reseeded: no replay of trials 0 and 1

    finished = make_sweeper(tmp_path, n_trials=5)
    (tmp_path / "optimization_results.yaml").unlink()
    finished.sweep([])
    assert finished.launcher.launched == [] and len(load(tmp_path).trials) == 5
    assert (tmp_path / "optimization_results.yaml").is_file()  # a finished study's rerun rewrites the results


def test_resumed_sampler_is_seeded_with_seed_plus_trials_in_the_study(tmp_path):
    make_sweeper(tmp_path / "run", n_trials=2, seed=3).sweep([])
    make_sweeper(tmp_path / "run", n_trials=4, seed=3).sweep([])
    resumed = [t.params["x"] for t in load(tmp_path / "run").trials[2:]]
    # Independent reference: Optuna's own RandomSampler seeded with 3 + 2, asked twice for x on its own.
    reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    dists = {"x": FloatDistribution(0.0, 1.0), "y": CategoricalDistribution(["good", "good", "bad"])}
    expected = [reference.ask(fixed_distributions=dists).params["x"] for _ in range(2)]
    assert resumed == expected


def test_resumed_suggestions_are_reproducible(tmp_path):
    suggestions = []
    for copy in ("a", "b"):
        sweep = tmp_path / copy
        make_sweeper(sweep, n_trials=2).sweep([])
        make_sweeper(sweep, n_trials=4).sweep([])
        suggestions.append([t.params for t in load(sweep).trials])
    assert suggestions[0] == suggestions[1]


def test_trials_left_running_by_a_killed_sweep_are_settled(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db", direction="maximize")
    for _ in range(3):
        study.ask()
    write_status(tmp_path / "0", {"num": 0, "status": OK, "objective": 0.7})  # done, but the tell was lost
    write_status(tmp_path / "1", {"num": 1, "status": RUNNING})  # killed mid-job; job 2 never started
    settle_unfinished_trials(study, tmp_path)

    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert trials[0].value == 0.7
    assert read_status(tmp_path / "1")["status"] == INTERRUPTED
    assert count_finished(study, tmp_path) == 1  # interrupted trials do not use up n_trials


def test_rerun_after_a_kill_settles_then_runs_only_the_missing_trials(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db", direction="maximize")
    study.ask({"x": FloatDistribution(0.0, 1.0)})
    study.ask({"x": FloatDistribution(0.0, 1.0)})
    write_status(tmp_path / "0", {"num": 0, "status": OK, "objective": 0.7})
    write_status(tmp_path / "1", {"num": 1, "status": RUNNING})

    sweeper = make_sweeper(tmp_path, n_trials=3)
    sweeper.sweep([])
    trials = load(tmp_path).trials
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL]
    assert sweeper.launcher.launched == [2, 3]  # 1 finished + 2 new = 3; the interrupted trial 1 is not counted
    assert len(trials) == 4


def test_command_line_replaces_or_fixes_a_searched_parameter(tmp_path):
    sweeper = make_sweeper(tmp_path, n_trials=3)
    sweeper.sweep(["x=0.5", "y=choice(good)"])
    trials = load(tmp_path).trials
    assert all(t.value == 0.5 and "x" not in t.params and t.user_attrs == {"x": "0.5"} for t in trials)
    assert all(t.params["y"] == "good" for t in trials)
    assert all("x=0.5" in batch[0] and "y=good" in batch[0] for batch in sweeper.launcher.batches)


def test_grid_sampler_runs_each_point_once_and_caps_n_trials(tmp_path):
    params = {"x": "choice(0.2, 0.4, 0.6)", "y": "range(1, 2)"}  # range includes its stop, as Optuna's plugin has it
    sweeper = make_sweeper(tmp_path, n_trials=10, sampler="GridSampler", params=params)
    sweeper.sweep([])
    points = sorted((t.params["x"], t.params["y"]) for t in load(tmp_path).trials)
    assert points == [(x, y) for x in (0.2, 0.4, 0.6) for y in (1, 2)]

    again = make_sweeper(tmp_path, n_trials=10, sampler="GridSampler", params=params)
    again.sweep([])
    assert again.launcher.launched == []  # the grid is done


def test_a_second_sweep_of_the_same_study_is_refused(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db", direction="maximize")
    study.ask()  # the running sweep's trial: a second sweep must not mark it FAIL
    with FileLock(tmp_path / LOCK_FILE):
        with pytest.raises(RuntimeError, match="Another sweep is running"):
            make_sweeper(tmp_path, n_trials=3).sweep([])
    assert [t.state for t in load(tmp_path).trials] == [TrialState.RUNNING]


def test_every_trial_failing_is_an_error_and_writes_no_results(tmp_path):
    with pytest.raises(RuntimeError, match="No trial of study 's' completed"):
        make_sweeper(tmp_path, n_trials=2).sweep(["y=bad"])
    assert [t.state for t in load(tmp_path).trials] == [TrialState.FAIL, TrialState.FAIL]
    assert not (tmp_path / "optimization_results.yaml").exists()


class TwoObjectiveLauncher(FakeLauncher):
    """Jobs return (x, y): maximise x, minimise y."""

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        returns = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            params = dict(o.split("=", 1) for o in overrides)
            values = [float(params["x"]), float(params["y"])]
            returns.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=values))
            write_status(self.sweep_dir / str(num), {"num": num, "status": OK, "objective": values})
        return returns


def test_two_objectives_give_the_pareto_front(tmp_path):
    sweeper = OptunaStudySweeper(
        sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 1}, direction=["maximize", "minimize"],
        storage=None, study_name="s", n_trials=8, n_jobs=1,
        params={"x": "interval(0.0, 1.0)", "y": "interval(0.0, 1.0)"},
    )  # fmt: skip
    sweeper.launcher, sweeper.sweep_dir = TwoObjectiveLauncher(tmp_path), tmp_path
    sweeper.sweep([])  # storage=None: an in-memory study
    results = OmegaConf.to_container(OmegaConf.load(tmp_path / "optimization_results.yaml"))
    points = [tuple(read_status(tmp_path / str(n))["objective"]) for n in range(8)]
    # Independent reference: the points no other point beats on both objectives.
    front = {p for p in points if not any(q != p and q[0] >= p[0] and q[1] <= p[1] for q in points)}
    assert {tuple(s["values"]) for s in results["solutions"]} == front
    assert all(s["values"] == [s["params"]["x"], s["params"]["y"]] for s in results["solutions"])


def test_search_space_syntax():
    space, fixed = search_space([
        "a=choice([64,32], [128,64])", "b=choice(auto, 1.0)", "c=tag(log, interval(0.001, 0.1))",
        "d=int(interval(1, 4))", "e=tag(log, int(interval(1, 64)))", "f=range(0, 10, 5)", "g=range(0.5, 1.5, 0.5)",
        "h=shuffle(range(1, 9))", "i=0.2", "j=interval(0.0, 1.0)", "j=0.3", "i=choice(x)", "k=interval(1, 4)",
    ])  # fmt: skip
    assert space == {
        "a": CategoricalDistribution(["[64,32]", "[128,64]"]),
        "b": CategoricalDistribution(["auto", 1.0]),
        "c": FloatDistribution(0.001, 0.1, log=True),
        "d": IntDistribution(1, 4),
        "e": IntDistribution(1, 64, log=True),
        "f": IntDistribution(0, 10, step=5),
        "g": FloatDistribution(0.5, 1.5, step=0.5),
        "h": CategoricalDistribution(list(range(1, 9))),  # Hydra's values of the range, stop excluded, unshuffled
        "i": CategoricalDistribution(["x"]),  # a later override replaces an earlier one of the same name
        "k": FloatDistribution(1.0, 4.0),  # Hydra reads interval() ends as floats unless cast with int()
    }
    assert fixed == {"j": "0.3"}
    assert grid_values("f", space["f"]) == [0, 5, 10] and grid_values("g", space["g"]) == [0.5, 1.0, 1.5]
    with pytest.raises(ValueError, match="discrete"):
        grid_values("c", space["c"])


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [("n_jobs", 0, "n_jobs"), ("n_trials", -1, "n_trials"), ("direction", "max", "direction")],
)
def test_bad_sweeper_settings_name_the_key(tmp_path, key, value, match):
    settings = {"sampler": {"_target_": "optuna.samplers.RandomSampler"}, "direction": "maximize", "storage": None,
                "study_name": None, "n_trials": 1, "n_jobs": 1, "params": None}  # fmt: skip
    with pytest.raises(ValueError, match=f"hydra.sweeper.{match}"):
        OptunaStudySweeper(**{**settings, key: value})


def test_hydra_builds_the_configured_sweeper_and_n_jobs_follows_joblib(tmp_path):
    cfg = compose_train(tmp_path, "hparams_search=optuna", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                        "hydra/sweeper/optuna_sampler@hydra.sweeper.sampler=random")  # fmt: skip
    plugin = instantiate(cfg.hydra.sweeper)  # every configured key is an argument of the plugin
    sweeper = plugin.sweeper
    assert sweeper.batch_size == 2 and sweeper.directions == ["maximize"] and sweeper.n_trials == 30
    assert dict(sweeper.sampler_cfg) == {"_target_": "optuna.samplers.RandomSampler", "seed": cfg.seed}
    assert isinstance(sweeper._sampler(0, None), optuna.samplers.RandomSampler)
