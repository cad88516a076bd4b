"""DDP benchmark: `train.py` as one process and as N CPU ranks (`trainer=ddp`) on the same synthetic files.

Both runs read the same table cache (filled by a first, untimed data-only step), train the same number of epochs
without early stopping, and skip baselines, SHAP and plots. This process samples every process of each run's tree
(VmRSS, every 100 ms) for its peak and reads the ranks' own log lines for the rows each held and the one fit.

    .venv/bin/python bench/ddp.py                      # 100k loans, 2 ranks, 4 epochs
    .venv/bin/python bench/ddp.py --loans 400000 --epochs 2

On a machine with fewer free cores than ranks the DDP run is slower, not faster: the number to read there is the
memory per rank and the ROC-AUC. Last line JSON: seconds and peak RSS per process for both runs, rows per rank,
fits, test ROC-AUC of each, and ddp_vs_single_seconds (DDP wall time over the single process's).
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

import psutil

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["data=freddie", "~callbacks.early_stopping", "evaluation.baselines=false", "evaluation.shap=false",
         "evaluation.plots=false", "extras.print_config=false", "logger=none"]  # fmt: skip


def run(root: Path, name: str, overrides: list[str]) -> dict:
    """One train.py run: wall seconds, peak RSS (MiB) of each process in its tree, metrics.json, log text."""
    env = {**os.environ, "LOAN_DEFAULT_ROOT": str(root), "CI": "true"}
    out = root / name
    cmd = [sys.executable, "train.py", *QUIET, f"data.folder={root / 'freddie'}", *overrides, f"hydra.run.dir={out}"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}

    def sample() -> None:
        top = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                for p in [top, *top.children(recursive=True)]:
                    peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    thread.join()
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{err[-3000:]}")
    logs = "\n".join(p.read_text() for p in sorted(out.glob("*.log")))
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    big = sorted((rss for rss in peaks.values() if rss > 200 * 2**20), reverse=True)  # the ranks, not helpers
    return {"seconds": round(seconds, 1), "peak_rss_mib": [round(r / 2**20) for r in big],
            "test_auroc": round(metrics.get("test_auroc", float("nan")), 4), "logs": logs}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loans", type=int, default=100_000)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        root = Path(tmp)
        generate = [sys.executable, "-m", "loan_default.synthetic", "--loans", str(args.loans), "--seed", "2024"]
        subprocess.run([*generate, "--out", str(root / "freddie")], cwd=ROOT, check=True, capture_output=True)
        common = [f"trainer.max_epochs={args.epochs}"]
        run(root, "warm", ["trainer.max_epochs=1", "train=false", "test=false"])  # fills the table cache, untimed
        single = run(root, "single", common)
        ddp = run(root, "ddp", [*common, "trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={args.ranks}"])
    held = re.findall(r"DDP shard: rank (\d+) of \d+ holds (\d+) of (\d+) training rows", ddp["logs"])
    result = {
        "loans": args.loans, "ranks": args.ranks, "epochs": args.epochs,
        "single_seconds": single["seconds"], "ddp_seconds": ddp["seconds"],
        "ddp_vs_single_seconds": round(ddp["seconds"] / single["seconds"], 3),
        "single_peak_rss_mib": single["peak_rss_mib"], "ddp_peak_rss_mib_per_process": ddp["peak_rss_mib"],
        "training_rows": int(held[0][2]) if held else None,
        "rows_per_rank": {int(rank): int(rows) for rank, rows, _ in held},
        "fits": ddp["logs"].count("Fit once: fitted"), "loads": ddp["logs"].count("Fit once: loaded"),
        "single_test_auroc": single["test_auroc"], "ddp_test_auroc": ddp["test_auroc"],
    }  # fmt: skip
    for key, value in result.items():
        print(f"{key:>30}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
