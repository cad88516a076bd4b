"""Scale benchmark: `train.py` end to end at three data sizes, with per-stage time and peak memory.

Each size runs `train.py` in its own subprocess on its own synthetic files (generated first, not timed) and a fresh
cache, so reading and labelling always happen. This process samples the child's resident memory (VmRSS, every 50 ms)
and cuts the run into stages at the child's own log lines; the whole run's peak is the child's ru_maxrss. Between the
runs, bench/ingest.py's single-file read+label ("ours") is measured on a file of `--ingest-rows` rows: the baseline
for the pipeline's read+label rate, taken under the same load.

    .venv/bin/python bench/scale.py                                   # 200k, 400k, 800k loans, short training
    .venv/bin/python bench/scale.py --sizes 250000 500000 1000000     # the issue's sizes

Below ~200k loans fixed-size buffers (65,536-row batches, reader chunks) are still filling, so a slope measured there
overstates what a loan costs.

Short training means: trainer.max_epochs=1, evaluation.shap=false, evaluation.plots=false, logger=none (baselines
stay on unless --no-baselines). Last line JSON: bytes_per_loan (least-squares slope of peak RSS against loans),
label_rows_per_s (the pipeline's read+label rate at the largest size), label_vs_ingest_bench (that rate over the
ingest benchmark's; label_vs_ingest_bench_cpu the same per CPU second, steadier when other processes load the CPUs), projected_full_hours (47 M loans, 2.5 B rows on this machine, from the largest run: read+label
scaled by rows, everything else by loans) and the goals with pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import ingest  # noqa: E402  (bench/ingest.py: its file writer and its measured "ours" worker)

FULL_LOANS, FULL_ROWS = 47_000_000, 2_500_000_000
GOAL_BYTES_PER_LOAN, GOAL_LABEL_VS_INGEST = 400, 0.8
SEED = 7
SHORT = ["trainer.max_epochs=1", "evaluation.shap=false", "evaluation.plots=false", "logger=none"]

# (log text that starts a stage, stage name), in the order train() logs them.
STAGES = [
    ("Instantiating datamodule", "read+label"),
    ("Read and labelled", "cache+split+prep"),
    ("Preprocessor fitted", "outliers"),
    ("Outlier filter:", "tensors"),
    ("Training schedule", "model+trainer"),
    ("Starting training", "fit"),
    ("Testing the checkpoint", "test+evaluate"),
]
_RATE = re.compile(r"Read and labelled ([\d,]+) performance rows of ([\d,]+) loans in ([\d.]+) s")


def generate(folder: Path, loans: int) -> None:
    cmd = [sys.executable, "-m", "loan_default.synthetic", "--loans", str(loans), "--out", str(folder)]
    subprocess.run([*cmd, "--seed", str(SEED)], check=True, cwd=ROOT, capture_output=True, text=True)


def _rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, all its threads, plus those of its finished child processes (the
    read+label workers, reaped before the stage's log line) (from /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def run_train(loans: int, data: Path, work: Path, baselines: bool) -> dict:
    """One train.py run: per-stage seconds and peak RSS, the whole run's peak, and the read+label rate it logged."""
    overrides = [
        f"data.folder={data}",
        f"data.synthetic.loans={loans}",
        f"data.synthetic.seed={SEED}",
        f"data.cache_dir={work / 'cache'}",
        f"hydra.run.dir={work / 'run'}",
        f"evaluation.baselines={str(baselines).lower()}",
        *SHORT,
    ]
    env = {**os.environ, "CI": "true", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "train.py", *overrides], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    stages: list[dict] = [{"stage": "startup", "start": 0.0, "cpu": 0.0, "peak_mib": 0.0}]
    lines: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = _rss_mib(child.pid)
            if rss is not None:
                with lock:
                    stages[-1]["peak_mib"] = max(stages[-1]["peak_mib"], rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    next_stage = 0
    assert child.stdout is not None
    for line in child.stdout:
        lines.append(line)
        if next_stage < len(STAGES) and STAGES[next_stage][0] in line:
            now, cpu, rss = time.perf_counter() - started, _cpu_seconds(child.pid), _rss_mib(child.pid) or 0.0
            with lock:  # a stage shorter than the sampling interval still gets the RSS at its start
                stages.append({"stage": STAGES[next_stage][1], "start": now, "cpu": cpu, "peak_mib": rss})
            next_stage += 1
    _, status, usage = os.wait4(child.pid, 0)
    total = time.perf_counter() - started
    done.set()
    sampler.join()
    if status != 0:
        sys.stderr.write("".join(lines[-40:]))
        raise SystemExit(f"train.py failed at {loans:,} loans (status {status})")
    cpu_total = (usage.ru_utime + usage.ru_stime) if status == 0 else float("nan")
    for stage, following in zip(stages, [*stages[1:], {"start": total, "cpu": cpu_total}], strict=True):
        stage["seconds"] = round(following["start"] - stage.pop("start"), 2)
        stage["cpu_seconds"] = round(following["cpu"] - stage.pop("cpu"), 2)
        stage["peak_mib"] = round(stage["peak_mib"], 1)
    found = [m for line in lines if (m := _RATE.search(line))]
    if not found:
        raise SystemExit("train.py did not log its read+label rate (loan_default.freddie.loans)")
    rows, _, seconds = found[-1].groups()
    return {
        "loans": loans,
        "seconds": round(total, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "performance_rows": int(rows.replace(",", "")),
        "label_seconds": float(seconds),
        "label_rows_per_s": int(rows.replace(",", "")) / max(float(seconds), 1e-9),
        "label_rows_per_cpu_s": int(rows.replace(",", "")) / max(_stage(stages, "read+label")["cpu_seconds"], 1e-9),
        "stages": stages,
    }


def _stage(stages: list[dict], name: str) -> dict:
    return next(stage for stage in stages if stage["stage"] == name)


def ingest_rate(folder: Path) -> tuple[float, float]:
    """bench/ingest.py's own measurement ("ours": read + label one performance file): rows/s and rows/CPU-s."""
    result = ingest.measure("ours", folder / "sample_orig_2019.txt", folder / "sample_svcg_2019.txt")
    return result["rows"] / result["seconds"], result["rows"] / result["cpu_seconds"]


def slope(x: list[float], y: list[float]) -> float:
    return float(np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=3, default=[200_000, 400_000, 800_000], help="loans per run")
    parser.add_argument("--ingest-rows", type=int, default=2_000_000, help="rows of the ingest benchmark's file")
    parser.add_argument("--no-baselines", action="store_true", help="skip the logistic and LightGBM baselines")
    args = parser.parse_args()

    runs, ingest_rates = [], []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        bench_files = Path(tmp) / "ingest"
        bench_files.mkdir()
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "ingest.py"), "--write", str(bench_files), str(args.ingest_rows)],
            check=True, capture_output=True,
        )  # fmt: skip
        for loans in args.sizes:
            data, work = Path(tmp) / f"data_{loans}", Path(tmp) / f"work_{loans}"
            start = time.perf_counter()
            generate(data, loans)
            print(f"{loans:,} loans: files written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            ingest_rates.append(ingest_rate(bench_files))  # taken between runs, under the same load
            run = run_train(loans, data, work, baselines=not args.no_baselines)
            runs.append(run)
            print(
                f"{loans:,} loans: {run['seconds']:.0f} s, peak RSS {run['peak_rss_mib']:,.0f} MiB, read+label "
                f"{run['label_rows_per_s'] / 1e6:.2f} M rows/s (ingest bench {ingest_rates[-1][0] / 1e6:.2f}), "
                f"{run['label_rows_per_cpu_s'] / 1e6:.2f} M rows/CPU-s (ingest bench {ingest_rates[-1][1] / 1e6:.2f})",
                file=sys.stderr,
            )
            for stage in run["stages"]:
                print(
                    f"    {stage['stage']:<16} {stage['seconds']:>7.1f} s {stage['cpu_seconds']:>7.1f} CPU-s  "
                    f"peak {stage['peak_mib']:>8,.0f} MiB"
                )
        ingest_rates.append(ingest_rate(bench_files))

    loans = [r["loans"] for r in runs]
    bytes_per_loan = slope(loans, [r["peak_rss_mib"] * 2**20 for r in runs])
    base_mib = runs[0]["peak_rss_mib"] - bytes_per_loan * loans[0] / 2**20
    peaks = [{stage["stage"]: stage["peak_mib"] * 2**20 for stage in r["stages"]} for r in runs]
    stage_slopes = {
        name: round(slope(loans, [p[name] for p in peaks])) for name in peaks[0] if all(name in p for p in peaks)
    }
    largest = runs[-1]
    label_rate = largest["label_rows_per_s"]
    ingest_bench = float(np.median([wall for wall, _ in ingest_rates]))
    ingest_bench_cpu = float(np.median([cpu for _, cpu in ingest_rates]))
    other_seconds = largest["seconds"] - largest["label_seconds"]
    projected = (FULL_ROWS / label_rate + other_seconds * FULL_LOANS / largest["loans"]) / 3600
    summary = {
        "sizes": loans,
        "short_training": SHORT + ([] if not args.no_baselines else ["evaluation.baselines=false"]),
        "peak_rss_mib": [r["peak_rss_mib"] for r in runs],
        "seconds": [r["seconds"] for r in runs],
        "bytes_per_loan": round(bytes_per_loan),
        "base_mib": round(base_mib),
        "stage_peak_bytes_per_loan": stage_slopes,
        "label_rows_per_s": round(label_rate),
        "label_rows_per_s_by_size": [round(r["label_rows_per_s"]) for r in runs],
        "ingest_bench_rows_per_s": round(ingest_bench),
        "label_vs_ingest_bench": round(label_rate / ingest_bench, 3),
        "label_rows_per_cpu_s": round(largest["label_rows_per_cpu_s"]),
        "ingest_bench_rows_per_cpu_s": round(ingest_bench_cpu),
        "label_vs_ingest_bench_cpu": round(largest["label_rows_per_cpu_s"] / ingest_bench_cpu, 3),
        "projected_full_hours": round(projected, 2),
        "projected_full_peak_gib": round((base_mib * 2**20 + bytes_per_loan * FULL_LOANS) / 2**30, 1),
        "goals": {
            "bytes_per_loan<=400": bool(bytes_per_loan <= GOAL_BYTES_PER_LOAN),
            "label_vs_ingest_bench>=0.8": bool(label_rate / ingest_bench >= GOAL_LABEL_VS_INGEST),
        },
    }
    print(
        f"\n{summary['bytes_per_loan']} bytes/loan (goal <= {GOAL_BYTES_PER_LOAN}), read+label at "
        f"{summary['label_vs_ingest_bench']} of the ingest benchmark (goal >= {GOAL_LABEL_VS_INGEST}), "
        f"whole dataset ~{summary['projected_full_hours']} h and ~{summary['projected_full_peak_gib']} GiB here"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
