"""Worker processes for the synthetic generator and the loan-table reader: 1 worker against N, in the same run.

* generate: ``generate(loans, workers=1)`` and ``workers=N`` into two folders; their files must be the same bytes.
* load:     ``load_loan_table(folder, compact=True)`` with 1 and N workers; the tables must be equal.

Run: .venv/bin/python bench/parallel.py [--loans 1000000] [--workers N]. Last line: one JSON object with seconds and
speed-ups. On a 2-core machine shared with others the speed-up says little; on a 16-core one it is the point.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from loan_default.common.parallel import available_cpus, resolve_workers  # noqa: E402
from loan_default.freddie.loans import load_loan_table  # noqa: E402
from loan_default.synthetic.generate import MANIFEST, generate  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU, at most 8")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    workers = resolve_workers(args.workers, tasks=8)
    with tempfile.TemporaryDirectory(prefix="parallel-bench-") as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        _, gen_one = timed(lambda: generate(one, args.loans, args.seed, workers=1))
        _, gen_many = timed(lambda: generate(many, args.loans, args.seed, workers=workers))
        names = sorted(p.name for p in one.iterdir() if p.name != MANIFEST)
        _, mismatch, errors = filecmp.cmpfiles(one, many, names, shallow=False)
        if mismatch or errors:
            raise SystemExit(f"files differ between 1 and {workers} workers: {mismatch + errors}")
        (table_one, _), load_one = timed(lambda: load_loan_table(folder=one, compact=True, workers=1))
        (table_many, _), load_many = timed(lambda: load_loan_table(folder=one, compact=True, workers=workers))
        pd.testing.assert_frame_equal(table_one, table_many, check_exact=True)
    summary = {
        "loans": args.loans,
        "cpus": available_cpus(),
        "workers": workers,
        "generate_seconds": {"1": gen_one, str(workers): gen_many},
        "generate_speedup": round(gen_one / gen_many, 2),
        "load_seconds": {"1": load_one, str(workers): load_many},
        "load_speedup": round(load_one / load_many, 2),
        "identical": True,
    }
    print(
        f"{args.loans:,} loans, {workers} workers: generate {gen_one} -> {gen_many} s, "
        f"load {load_one} -> {load_many} s; files and table identical",
        file=sys.stderr,
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
