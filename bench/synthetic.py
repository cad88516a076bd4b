"""Speed of the synthetic Freddie Mac generator, against baselines measured in the same run.

* total:     ``generate(N loans)`` end to end (default vintages 2004-2011, default cutoff): seconds, rows/s, MB written.
* stages:    one vintage's loans, timed step by step: draw origination fields + true PD, monthly histories, building
             the performance columns, writing them.
* naive:     the same performance rows formatted by a per-row Python loop (Arrow values to Python, ``str``, then
             ``"|".join``), the usual way such files get written; the ratio is what the Arrow column path saves.
* I/O floor: writing the same bytes that ``generate`` wrote, already in memory; the ratio says how far above pure
             disk time the whole generator runs.

Run: .venv/bin/python bench/synthetic.py [--quick] [--loans N]. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

# Runnable as a script from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow.csv as pcsv

from loan_default.common.months import month_number
from loan_default.freddie.schema import PERFORMANCE_LAYOUTS
from loan_default.synthetic.generate import default_cutoff, generate
from loan_default.synthetic.hazard import default_probability
from loan_default.synthetic.loans import draw_loans, mask_missing
from loan_default.synthetic.paths import simulate_histories
from loan_default.synthetic.text import performance_table

NAIVE_ROWS = 100_000  # rows formatted by the per-row loop (it is slow; the rate is per row either way)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def stage_times(n_loans: int, year: int = 2006) -> tuple[dict[str, float], object]:
    """Seconds per step for one vintage of ``n_loans``; returns the performance table too."""
    rng = np.random.default_rng(0)
    times = {}

    def draw():
        loans = draw_loans(year, n_loans, rng)
        mask_missing(loans, year, rng)
        return loans, default_probability({**loans.fields, "vintage_year": np.full(n_loans, year)})

    (loans, pd_true), times["draw loans + true PD"] = timed(draw)
    cutoff = int(month_number(default_cutoff(range(2004, 2012))))
    hist, times["monthly histories"] = timed(lambda: simulate_histories(loans, pd_true, cutoff, year, rng))
    table, times["build columns"] = timed(lambda: performance_table(loans, hist, PERFORMANCE_LAYOUTS["perf32"]))
    options = pcsv.WriteOptions(include_header=False, delimiter="|", quoting_style="none")
    _, times["write rows"] = timed(lambda: pcsv.write_csv(table, io.BytesIO(), options))
    return times, table


def naive_rows_per_s(table) -> float:
    """Rows/s of a per-row Python formatter (values to text, then join) on the first NAIVE_ROWS rows."""
    head = table.slice(0, min(NAIVE_ROWS, table.num_rows))
    buffer = io.StringIO()

    def write():
        columns = [col.to_pylist() for col in head.columns]
        for row in zip(*columns, strict=True):
            buffer.write("|".join("" if v is None else str(v) for v in row))
            buffer.write("\n")

    _, seconds = timed(write)
    return head.num_rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 loans")
    parser.add_argument("--loans", type=int, default=None)
    args = parser.parse_args()
    n_loans = args.loans or (10_000 if args.quick else 100_000)

    with tempfile.TemporaryDirectory() as tmp:
        summary, total = timed(lambda: generate(Path(tmp) / "data", n_loans, seed=2024))
        files = sorted((Path(tmp) / "data").glob("*.t*"))
        payload = [p.read_bytes() for p in files]
        megabytes = sum(len(b) for b in payload) / 1e6

        def write_all():
            for i, data in enumerate(payload):
                (Path(tmp) / f"copy{i}").write_bytes(data)

        _, io_floor = timed(write_all)

    stages, table = stage_times(n_loans // 8)
    vectorised = table.num_rows / (stages["build columns"] + stages["write rows"])
    naive = naive_rows_per_s(table)

    rows = summary["performance_rows"]
    print(f"Synthetic generator: {n_loans:,} loans, {rows:,} performance rows, {megabytes:,.0f} MB")
    print(f"{'measure':<40} {'value':>14}")
    print(f"{'total seconds':<40} {total:>14.2f}")
    print(f"{'loans / s':<40} {n_loans / total:>14,.0f}")
    print(f"{'performance rows / s':<40} {rows / total:>14,.0f}")
    print(f"{'I/O floor seconds (same bytes)':<40} {io_floor:>14.2f}")
    print(f"{'total / I/O floor':<40} {total / io_floor:>14.1f}x")
    print(f"One vintage, {n_loans // 8:,} loans, {table.num_rows:,} rows:")
    for name, seconds in stages.items():
        print(f"  {name:<38} {seconds:>14.3f} s")
    print(f"{'  rows / s, Arrow columns (build+write)':<40} {vectorised:>14,.0f}")
    print(f"{'  rows / s, per-row Python join (baseline)':<40} {naive:>14,.0f}")
    print(f"{'  speed-up over the per-row baseline':<40} {vectorised / naive:>14.1f}x")
    print(
        json.dumps(
            {
                "loans": n_loans,
                "performance_rows": rows,
                "megabytes": round(megabytes, 1),
                "seconds": round(total, 3),
                "loans_per_s": round(n_loans / total),
                "rows_per_s": round(rows / total),
                "io_floor_seconds": round(io_floor, 3),
                "ratio_to_io_floor": round(total / io_floor, 2),
                "stage_seconds": {k: round(v, 4) for k, v in stages.items()},
                "arrow_rows_per_s": round(vectorised),
                "naive_rows_per_s": round(naive),
                "speedup_vs_naive": round(vectorised / naive, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
