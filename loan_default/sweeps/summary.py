"""Sweep summary: `python -m loan_default.sweeps <sweep dir>` ranks every job of a Hydra multirun.

Writes `summary.md`, `summary.csv` and `summary.png` (the optimised metric across trials) into the sweep folder and
names the best bundle. Each job row carries its overrides, val/test ROC-AUC, recall at the decision threshold, missed
defaults, duration and status (ok, failed with the error's last line, running, interrupted). The sweep callback runs
this after every job and at the end of the sweep, so the summary is current even after a crash.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from loan_default.common.atomic import atomic_write, atomic_write_text
from loan_default.sweeps.status import FAILED, INTERRUPTED, OK, RUNNING, STATUS_FILE, job_records

SWEEP_FILE = "sweep.json"  # the sweep's metric and direction, written by the callback when the sweep starts
DEFAULT_METRIC, DEFAULT_DIRECTION = "val/auroc_best", "maximize"
STATUSES = (OK, FAILED, RUNNING, INTERRUPTED)  # the order of the counts on the summary page
METRIC_KEYS = ("val_auroc", "test_auroc", "recall_at_threshold", "false_negatives")  # from each job's metrics.json


@dataclass
class SweepSummary:
    """The ranked table (one row per job, best first) and where it was written."""

    table: pd.DataFrame
    metric: str
    direction: str
    best_bundle: Path | None
    files: dict[str, Path]


def sweep_settings(sweep_dir: str | Path) -> tuple[str, str]:
    """(metric, direction) the sweep recorded at its start; the project defaults when it recorded none."""
    try:
        saved = json.loads((Path(sweep_dir) / SWEEP_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        saved = {}
    return saved.get("metric") or DEFAULT_METRIC, saved.get("direction") or DEFAULT_DIRECTION


def collect_jobs(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job folder (unranked): its status record joined with its metrics.json."""
    rows = []
    for num, (job_dir, record) in sorted(job_records(sweep_dir).items()):
        metrics = _read_json(job_dir / "metrics.json")
        bundle = metrics.get("bundle") or (str(job_dir / "bundle") if (job_dir / "bundle").is_dir() else None)
        row: dict[str, Any] = {
            "job": num,
            "status": record.get("status"),
            "objective": _as_float(record.get("objective")),
            **{key: metrics.get(key) for key in METRIC_KEYS},
            "duration_s": _duration(record),
            "overrides": list(record.get("overrides") or []),
            "error": record.get("error"),
            "bundle": bundle,
            "job_dir": str(job_dir),
        }
        rows.append(row)
    columns = ["job", "status", "objective", *METRIC_KEYS, "duration_s", "overrides", "error", "bundle", "job_dir"]
    jobs = pd.DataFrame(rows, columns=columns)
    return jobs.astype({"objective": "float64", "false_negatives": "Int64", "duration_s": "float64"})


def rank_jobs(jobs: pd.DataFrame, direction: str = DEFAULT_DIRECTION) -> pd.DataFrame:
    """Best first: finished jobs with a metric by the metric (ties by job number), then the rest by job number."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    scored = (jobs["status"] == OK) & jobs["objective"].notna()
    key = jobs["objective"].where(scored)
    ranked = jobs.assign(_scored=~scored, _key=-key if direction == "maximize" else key)
    ranked = ranked.sort_values(["_scored", "_key", "job"], kind="stable").drop(columns=["_scored", "_key"])
    ranked = ranked.reset_index(drop=True)
    n_scored = int(scored.sum())
    ranked.insert(0, "rank", pd.array([*range(1, n_scored + 1), *[pd.NA] * (len(ranked) - n_scored)], dtype="Int64"))
    return ranked


def write_summary(
    sweep_dir: str | Path, metric: str | None = None, direction: str | None = None, plot: bool = True
) -> SweepSummary:
    """Rank the sweep's jobs and write summary.md, summary.csv and (with ``plot``) summary.png into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    saved_metric, saved_direction = sweep_settings(sweep_dir)
    metric, direction = metric or saved_metric, direction or saved_direction
    table = rank_jobs(collect_jobs(sweep_dir), direction)
    best = table.iloc[0] if len(table) and not pd.isna(table.loc[0, "rank"]) else None
    best_bundle = Path(best["bundle"]) if best is not None and _text(best["bundle"]) else None

    files = {"csv": sweep_dir / "summary.csv", "md": sweep_dir / "summary.md"}
    csv = table.drop(columns=["job_dir"]).rename(columns={"objective": metric})
    csv["overrides"] = csv["overrides"].map(" ".join)
    atomic_write_text(files["csv"], csv.to_csv(index=False))
    if plot and len(table):
        files["png"] = plot_metric(table, metric, direction, sweep_dir / "summary.png")
    atomic_write_text(files["md"], format_markdown(table, sweep_dir, metric, direction, best_bundle, "png" in files))
    return SweepSummary(table=table, metric=metric, direction=direction, best_bundle=best_bundle, files=files)


def format_markdown(
    table: pd.DataFrame, sweep_dir: Path, metric: str, direction: str, best_bundle: Path | None, with_plot: bool
) -> str:
    """The summary page: counts, the best bundle, overrides common to all jobs, then the ranked table."""
    counts = table["status"].value_counts()
    order = [s for s in STATUSES if s in counts.index] + sorted(set(counts.index) - set(STATUSES))
    tally = ", ".join(f"{counts[s]} {s}" for s in order)
    lines = [
        f"# Sweep summary: {sweep_dir}",
        "",
        f"{len(table)} jobs ({tally or 'none'}), ranked by `{metric}` ({direction}).",
    ]
    if len(table) and not pd.isna(table.loc[0, "rank"]):
        best = table.iloc[0]
        bundle = f"Bundle: `{best_bundle}`" if best_bundle is not None else "It wrote no bundle (test=false?)."
        lines += ["", f"**Best: job {best['job']}**, {metric} {_fmt(best['objective'])}, test ROC-AUC "
                      f"{_fmt(best['test_auroc'])}. {bundle}"]  # fmt: skip
    else:
        lines += ["", "**No job finished with a metric**: no best bundle."]
    common, varying = split_overrides(list(table["overrides"]))
    if common:
        lines += ["", "Overrides common to every job: `" + " ".join(common) + "`"]
    columns = {"rank": "---:", "job": "---:", "status": "---", metric: "---:", "val ROC-AUC": "---:",
               "test ROC-AUC": "---:", "recall @ thr": "---:", "missed defaults": "---:", "duration": "---:",
               "overrides": "---"}  # fmt: skip
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "|".join(columns.values()) + "|"]
    for (_, row), own in zip(table.iterrows(), varying, strict=True):
        status = row["status"] if row["status"] != FAILED else f"failed: {_text(row['error']) or 'unknown error'}"
        cells = [
            "" if pd.isna(row["rank"]) else str(row["rank"]),
            str(row["job"]),
            status,
            _fmt(row["objective"]),
            *(_fmt(row[c]) for c in ("val_auroc", "test_auroc", "recall_at_threshold")),
            _fmt(row["false_negatives"], digits=0),
            "" if pd.isna(row["duration_s"]) else f"{row['duration_s']:.0f} s",
            "`" + " ".join(map(_short_override, own)) + "`" if own else "",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    if with_plot:
        lines += ["", f"![{metric} across trials](summary.png)"]
    return "\n".join(lines) + "\n"


def split_overrides(overrides: Sequence[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """(overrides every job shares, each job's own): the table shows only what differs between jobs."""
    if not overrides:
        return [], []
    shared = set(overrides[0]).intersection(*map(set, overrides[1:])) if len(overrides) > 1 else set()
    common = [o for o in overrides[0] if o in shared]
    return common, [[o for o in own if o not in shared] for own in overrides]


def plot_metric(table: pd.DataFrame, metric: str, direction: str, path: Path) -> Path:
    """The metric of every trial in job order, the best so far as a step line, failed jobs as red crosses."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # a standalone Figure: no pyplot state, no display needed
    from matplotlib.ticker import MaxNLocator

    jobs = table.sort_values("job")
    ok = jobs[(jobs["status"] == OK) & jobs["objective"].notna()]
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if len(ok):
        values = ok["objective"].astype(float)
        best = values.cummax() if direction == "maximize" else values.cummin()
        ax.plot(ok["job"], values, "o", color="tab:blue", label=f"{metric} per trial")
        ax.step(ok["job"], best, where="post", color="tab:green", label="best so far")
    failed = jobs[jobs["status"] == FAILED]
    if len(failed):
        floor = float(ok["objective"].min()) if len(ok) else 0.0
        ax.plot(failed["job"], [floor] * len(failed), "x", color="tab:red", markersize=9, label="failed")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("job (trial) number")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} across trials ({direction})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    # A unique temporary name, then one rename: parallel jobs refresh the summary at the same time.
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the summary page and returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m loan_default.sweeps", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder (hydra.sweep.dir)")
    parser.add_argument(
        "--metric", help=f"name shown for the ranked metric (default: the sweep's, or {DEFAULT_METRIC})"
    )
    parser.add_argument("--direction", choices=["maximize", "minimize"], help="default: the sweep's, or maximize")
    parser.add_argument("--no-plot", action="store_true", help="skip summary.png")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder", file=sys.stderr)
        return 2
    summary = write_summary(args.sweep_dir, args.metric, args.direction, plot=not args.no_plot)
    if summary.table.empty:
        print(f"error: no job folder under {args.sweep_dir} holds a {STATUS_FILE}", file=sys.stderr)
        return 1
    print(summary.files["md"].read_text(encoding="utf-8"))
    print("Wrote " + ", ".join(str(p) for p in summary.files.values()))
    print(f"Best bundle: {summary.best_bundle}" if summary.best_bundle else "Best bundle: none (no job finished)")
    return 0


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _as_float(value: Any) -> float | None:
    """The objective as a finite float; the first one for a multi-objective sweep; None when there is none."""
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _duration(record: dict[str, Any]) -> float | None:
    started, ended = record.get("started"), record.get("ended")
    return round(ended - started, 1) if isinstance(started, int | float) and isinstance(ended, int | float) else None


def _short_override(override: str) -> str:
    """`model.lr=0.0011155792840695788` -> `model.lr=0.001116`: Optuna's floats, readable in the table (CSV keeps all)."""
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return f"{key}{sep}{number:.4g}" if len(value) > 8 and not value.isdigit() else override


def _fmt(value: Any, digits: int = 4) -> str:
    return "—" if pd.isna(value) else f"{float(value):.{digits}f}"


def _text(value: Any) -> str:
    """A table cell's text; "" for a missing value (pandas holds it as NaN, which is truthy)."""
    return "" if pd.isna(value) else str(value)


if __name__ == "__main__":
    sys.exit(main())
