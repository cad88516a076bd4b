"""Speed of the Preprocessor: batch transform and single-loan transform, against baselines measured in the same run.

* batch:  ``Preprocessor.transform`` on N loan-table rows vs an sklearn ColumnTransformer doing the comparable steps
          (median imputation with indicators + standard scaling, one-hot with min_frequency, ordinal ids), which does
          less: no sentinel/range checks, no clipping, no engineered features.
* single: ``Preprocessor.transform_one`` on raw REST-style loan dicts (strings, sentinel codes) vs two baselines that
          serve one loan through a one-row DataFrame: our own batch path and the sklearn ColumnTransformer.

Data: the loan-table builder of tests/test_preprocess.py (origination fields with gaps, sentinels and corrupted
values). Median over repetitions. Run: .venv/bin/python bench/preprocess.py [--quick]. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Runnable as a script from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from loan_default.common.progress import progress
from loan_default.core import features as ft
from loan_default.core.preprocess import Preprocessor
from tests.test_preprocess import make_loans, raw_request

MIN_FREQUENCY = 20


def sklearn_baseline(train: pd.DataFrame) -> ColumnTransformer:
    """Comparable sklearn pipeline, fitted on the same training rows."""
    numeric = [f for f in ft.NUMERIC_FIELDS if f != "orig_upb" and train[f].notna().any()]

    def impute_scale():
        return make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())

    codes = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(min_frequency=MIN_FREQUENCY, handle_unknown="infrequent_if_exist", sparse_output=False),
    )
    ids = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, min_frequency=MIN_FREQUENCY),
    )
    ct = ColumnTransformer(
        [
            ("log_upb", make_pipeline(FunctionTransformer(np.log1p), impute_scale()), ["orig_upb"]),
            ("num", impute_scale(), numeric),
            ("codes", codes, list(ft.ONE_HOT_FIELDS)),
            ("ids", ids, list(ft.CATEGORICAL_FIELDS)),
        ]
    )
    return ct.fit(train.astype({c: object for c in (*ft.ONE_HOT_FIELDS, *ft.CATEGORICAL_FIELDS)}))


def median_seconds(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k rows, 500 single loans, 3 repetitions")
    parser.add_argument("--rows", type=int, default=None)
    args = parser.parse_args()
    rows = args.rows or (20_000 if args.quick else 100_000)
    singles, reps = (500, 3) if args.quick else (2_000, 5)

    table = make_loans(rows, seed=0)
    train = table.iloc[: int(0.7 * rows)]
    start = time.perf_counter()
    pp = Preprocessor(min_frequency=MIN_FREQUENCY).fit(train)
    fit_s = time.perf_counter() - start
    baseline = sklearn_baseline(train)
    typed = table.astype({c: object for c in (*ft.ONE_HOT_FIELDS, *ft.CATEGORICAL_FIELDS)})

    pp.transform(table.iloc[:100])  # warm-up
    batch = {
        "preprocessor": median_seconds(lambda: pp.transform(table), reps),
        "sklearn": median_seconds(lambda: baseline.transform(typed), reps),
        "outlier_matrix": median_seconds(lambda: pp.outlier_matrix(table), reps),
    }

    requests = [raw_request(row) for _, row in table.iloc[:singles].iterrows()]
    # The one-row-DataFrame baselines take 10-30 ms a loan: time them on fewer loans.
    few = requests[: singles // 10]
    typed_rows = [typed.iloc[[i]] for i in range(len(few))]
    cases: dict[str, tuple[Callable[[], object], int]] = {
        "transform_one": (lambda: [pp.transform_one(r) for r in requests], len(requests)),
        "batch_path_1row": (lambda: [pp.transform(pd.DataFrame([r])) for r in few], len(few)),
        "sklearn_1row": (lambda: [baseline.transform(r) for r in typed_rows], len(few)),
    }
    per_loan: dict[str, list[float]] = {name: [] for name in cases}
    for _ in progress(range(reps), desc="repetitions"):
        for name, (fn, count) in cases.items():
            per_loan[name].append(median_seconds(fn, 1) / count)
    single = {k: statistics.median(v) for k, v in per_loan.items()}

    print(f"rows={rows:,} (fit on {len(train):,}), x_num columns={len(pp.numeric_names)}, reps={reps} (median)")
    print(f"fit: {fit_s:.3f} s")
    print(f"{'batch transform':<28}{'seconds':>10}{'rows/s':>14}{'vs sklearn':>12}")
    for name, s in batch.items():
        print(f"{name:<28}{s:>10.3f}{rows / s:>14,.0f}{s / batch['sklearn']:>11.2f}x")
    print(f"{'one loan (raw dict)':<28}{'ms/loan':>10}{'speedup of transform_one':>30}")
    for name, s in single.items():
        print(f"{name:<28}{1e3 * s:>10.3f}{s / single['transform_one']:>29.1f}x")
    print(
        json.dumps(
            {
                "rows": rows,
                "features": len(pp.numeric_names),
                "reps": reps,
                "fit_s": round(fit_s, 4),
                "transform_s": round(batch["preprocessor"], 4),
                "sklearn_transform_s": round(batch["sklearn"], 4),
                "transform_time_vs_sklearn": round(batch["preprocessor"] / batch["sklearn"], 3),
                "outlier_matrix_s": round(batch["outlier_matrix"], 4),
                "transform_one_ms": round(1e3 * single["transform_one"], 4),
                "batch_path_1row_ms": round(1e3 * single["batch_path_1row"], 4),
                "sklearn_1row_ms": round(1e3 * single["sklearn_1row"], 4),
                "transform_one_speedup_vs_batch_path": round(single["batch_path_1row"] / single["transform_one"], 2),
                "transform_one_speedup_vs_sklearn": round(single["sklearn_1row"] / single["transform_one"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
