"""Spark preparation benchmark: the Spark job in local mode against the local engine, on the same synthetic files.

Both build the same Parquet loan table (checked here: equal frames) from files the synthetic generator writes; the
measure is performance rows read, labelled and written per second. Spark's session start-up is timed apart and left
out of its rate (a cluster pays it once per job, not per file). On one small machine Spark is expected to be slower:
it earns its place on a cluster; this ratio tells how much a single node gives up.

    .venv/bin/python bench/spark_prep.py                 # 20,000 loans
    .venv/bin/python bench/spark_prep.py --loans 100000  # larger
Last line: JSON with spark_rows_per_s, local_rows_per_s and spark_vs_local.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loans", type=int, default=20_000)
    p.add_argument("--master", default="local[2]")
    args = p.parse_args()

    import pandas as pd

    from loan_default.prep.local import prepare_local
    from loan_default.prep.spark import prepare_spark, session
    from loan_default.prep.table import read_loan_table
    from loan_default.synthetic.generate import ensure_synthetic

    with tempfile.TemporaryDirectory(prefix="spark-prep-bench-") as tmp:
        raw = Path(tmp) / "raw"
        ensure_synthetic(raw, loans=args.loans, seed=2024)

        started = time.perf_counter()
        prepare_local(raw, Path(tmp) / "local")
        local_s = time.perf_counter() - started

        started = time.perf_counter()
        spark = session(args.master)
        spark.range(1).count()  # the JVM and the first job are up
        startup_s = time.perf_counter() - started
        started = time.perf_counter()
        prepare_spark(str(raw), str(Path(tmp) / "spark"), master=args.master)
        spark_s = time.perf_counter() - started
        spark.stop()

        local, manifest = read_loan_table(Path(tmp) / "local")
        spark_table, _ = read_loan_table(Path(tmp) / "spark")
        pd.testing.assert_frame_equal(spark_table, local, check_exact=True)
        rows = manifest["report"]["performance_rows"]

    result = {
        "loans": args.loans,
        "performance_rows": rows,
        "local_s": round(local_s, 2),
        "spark_s": round(spark_s, 2),
        "spark_startup_s": round(startup_s, 2),
        "local_rows_per_s": round(rows / local_s),
        "spark_rows_per_s": round(rows / spark_s),
        "spark_vs_local": round(local_s / spark_s, 3),
        "tables_equal": True,
        "master": args.master,
    }
    print(f"local engine {local_s:.1f} s, Spark ({args.master}) {spark_s:.1f} s + {startup_s:.1f} s start-up, "
          f"{rows:,} performance rows: Spark at {result['spark_vs_local']:.3f}x the local engine's rate")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
