"""Benchmark the SUOD outlier stage against the same detectors fitted one after another, and IForest alone.

    .venv/bin/python bench/outliers.py            # 100k training rows
    .venv/bin/python bench/outliers.py --quick    # 20k rows

All timings come from this run, on the same matrix. SUOD and the sequential baseline alternate ``--repeats`` times
and the fastest run of each counts; CPU seconds (this process only, so not the n_jobs=2 workers) are shown beside
wall seconds because other jobs on a shared machine inflate wall time but not CPU time. Recall = share of the
injected corrupted rows that a method flags. The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONTAMINATION = 0.02
CORRUPT_FRACTION = 0.015
CORRUPTION_KINDS = ("garbage_record", "sentinel_leak", "broken_correlation")


def load_features(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean preprocessed training features ``x_num`` (float64, n_rows x F) and labels ``y`` (1 = default).

    Stand-in for the real synthetic Freddie data (swap this function): 34 columns like the preprocessor emits.
    Standardized heavy-tailed numerics sharing a latent credit factor (credit score, DTI, LTV/CLTV pairs, rates,
    balances), clipped at +-6 as the preprocessor clips; rare 0/1 missing indicators; two one-hot groups.
    """
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n_rows)
    numeric = []
    for i in range(20):
        loading = 0.3 + 0.5 * (i % 4) / 3
        noise = rng.standard_t(3, size=n_rows) if i % 2 else rng.lognormal(0.0, 0.6, size=n_rows)
        numeric.append(loading * risk + noise)
    numeric[1] = numeric[0] + 0.15 * rng.normal(size=n_rows)  # CLTV tracks LTV closely
    numeric = np.column_stack(numeric)
    numeric = np.clip((numeric - numeric.mean(axis=0)) / numeric.std(axis=0), -6.0, 6.0)
    indicators = rng.random((n_rows, 4)) < np.array([0.01, 0.03, 0.05, 0.02])
    groups = [np.eye(k)[rng.choice(k, size=n_rows, p=p)] for k, p in ((5, [0.5, 0.2, 0.15, 0.1, 0.05]),) * 2]
    X = np.column_stack([numeric, indicators, *groups]).astype(np.float64)
    logit = -3.2 + 0.9 * risk + 0.4 * indicators[:, 1]
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return X, y


def inject_corruptions(X: np.ndarray, seed: int, fraction: float = CORRUPT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt ``fraction`` of the preprocessed rows (errors that got past preprocessing) in equal shares of three
    kinds; return (X, kind per row, '' = clean).

    garbage_record: every value x1000 (a unit/shift error over the whole record).
    sentinel_leak: one column at its max + 10 std (a 9999-style code scaled as if it were a number).
    broken_correlation: the most correlated column pair set to contradicting quantiles (e.g. CLTV far below LTV);
    every value stays inside its column's normal range, so detectors that score columns one by one cannot see it.
    """
    rng = np.random.default_rng(seed)
    X = X.copy()
    n_rows, n_cols = X.shape
    rows = rng.choice(n_rows, size=int(round(fraction * n_rows)), replace=False)
    kinds = np.full(n_rows, "", dtype=object)
    for kind, part in zip(CORRUPTION_KINDS, np.array_split(rows, len(CORRUPTION_KINDS)), strict=True):
        kinds[part] = kind
        if kind == "garbage_record":
            X[part] *= 1000.0
        elif kind == "sentinel_leak":
            cols = rng.integers(0, n_cols, size=part.size)
            X[part, cols] = X[:, cols].max(axis=0) + 10.0 * X[:, cols].std(axis=0)
        else:
            corr = np.corrcoef(X, rowvar=False)
            np.fill_diagonal(corr, 0.0)
            a, b = np.unravel_index(np.nanargmax(np.abs(corr)), corr.shape)
            high, low = np.quantile(X[:, a], 0.975), np.quantile(X[:, b], 0.025 if corr[a, b] > 0 else 0.975)
            X[part, a], X[part, b] = high, low
    return X, kinds


def combined_flags(score_matrix: np.ndarray, combination: str) -> np.ndarray:
    """What SUOD does with base scores: PyOD's standardizer, average or max, flag above the contamination quantile."""
    from pyod.models.combination import average, maximization
    from pyod.utils.utility import standardizer

    combined = (average if combination == "average" else maximization)(standardizer(score_matrix))
    return combined > np.percentile(combined, 100 * (1 - CONTAMINATION))


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    """(wall seconds, CPU seconds of this process, result of fn)."""
    wall, cpu = time.perf_counter(), time.process_time()
    flags = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, flags


def median_seconds(fn: Callable[[], object], calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k training rows instead of 100k")
    parser.add_argument("--rows", type=int, default=None, help="training rows (overrides --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="alternating SUOD / sequential runs")
    parser.add_argument("--skip-parallel", action="store_true", help="skip the SUOD n_jobs=2 run")
    args = parser.parse_args()
    n_rows = args.rows or (20_000 if args.quick else 100_000)
    logging.basicConfig(level=logging.WARNING)

    from pyod.models.copod import COPOD
    from pyod.models.hbos import HBOS
    from pyod.models.iforest import IForest

    from loan_default.data.outliers import OutlierFilter, build_detectors, captured_output
    from loan_default.progress import progress

    X, y = load_features(n_rows, args.seed)
    X, kinds = inject_corruptions(X, args.seed + 1)
    corrupted = kinds != ""
    reference = OutlierFilter(contamination=CONTAMINATION, seed=args.seed)
    names = reference.detectors

    fits: dict[int, OutlierFilter] = {}

    def suod(n_jobs: int) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            f = OutlierFilter(contamination=CONTAMINATION, seed=args.seed, n_jobs=n_jobs)
            f.fit(X, y)
            fits[n_jobs] = f
            return f.scores_ > f.report["threshold"]

        return run

    def sequential(detectors: Callable[[], list]) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            scores = np.column_stack([d.fit(X).decision_scores_ for d in detectors()])
            return combined_flags(scores, reference.combination)

        return run

    def same_detectors() -> list:
        return build_detectors(names, CONTAMINATION, args.seed, reference.max_reference_rows)

    def stock_detectors() -> list:
        return [
            IForest(contamination=CONTAMINATION, random_state=args.seed),
            HBOS(contamination=CONTAMINATION),
            COPOD(contamination=CONTAMINATION),
        ]

    def iforest() -> np.ndarray:
        return IForest(contamination=CONTAMINATION, random_state=args.seed).fit(X).labels_.astype(bool)

    # Numba compiles HBOS/ECDF kernels on first use in a process; pay that once, outside every timing.
    warmup_start = time.perf_counter()
    with captured_output("warm-up"):
        for d in [*same_detectors(), *stock_detectors()]:
            d.fit(X[:2000])
    warmup = time.perf_counter() - warmup_start

    plan: list[tuple[str, Callable[[], np.ndarray]]] = [
        *[run for _ in range(args.repeats) for run in (("suod", suod(1)), ("sequential", sequential(same_detectors)))],
        ("stock_sequential", sequential(stock_detectors)),
        ("iforest", iforest),
    ]
    if not args.skip_parallel:
        plan.append(("suod_n_jobs2", suod(2)))
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    flags: dict[str, np.ndarray] = {}
    for label, fn in progress(plan, desc="outlier bench", unit="run"):
        wall, cpu, flagged = timed(fn)
        seconds[label] = min(wall, seconds.get(label, np.inf))
        cpu_seconds[label] = min(cpu, cpu_seconds.get(label, np.inf))
        flags[label] = flagged
    fitted = fits[1]

    recall = {label: float(f[corrupted].mean()) for label, f in flags.items()}
    recall_by_kind = {k: float(flags["suod"][kinds == k].mean()) for k in CORRUPTION_KINDS}
    removed_recall = float((~fitted.keep_mask_[corrupted]).mean())

    scorer = fitted.scorer()
    rows = X[np.random.default_rng(args.seed).choice(n_rows, size=256)]
    cursor = iter(range(10**9))
    one_row = median_seconds(lambda: scorer.score(rows[next(cursor) % 256]), 2000)
    with captured_output("SUOD scoring"):
        suod_one_row = median_seconds(lambda: fitted.detector_.decision_function(rows[:1]), 20)
    with tempfile.TemporaryDirectory() as tmp:
        fitted.export(tmp)
        export_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir())

    print(
        f"\nSUOD outlier stage: {n_rows:,} rows x {X.shape[1]} features, {corrupted.sum():,} corrupted rows "
        f"({', '.join(names)}; contamination {CONTAMINATION}); numba warm-up {warmup:.1f} s excluded"
    )
    print(f"{'method':<34}{'seconds':>9}{'vs sequential':>15}{'CPU s':>8}{'CPU ratio':>11}{'recall':>9}")
    labels = {
        "suod": "SUOD (defaults: n_jobs=1)",
        "suod_n_jobs2": "SUOD n_jobs=2",
        "sequential": "same detectors, one after another",
        "stock_sequential": "stock PyOD IForest+HBOS+COPOD",
        "iforest": "IForest alone",
    }
    for label, text in labels.items():
        if label in seconds:
            ratio = seconds[label] / seconds["sequential"]
            cpu_ratio = cpu_seconds[label] / cpu_seconds["sequential"]
            print(
                f"{text:<34}{seconds[label]:>9.2f}{ratio:>14.2f}x{cpu_seconds[label]:>8.2f}{cpu_ratio:>10.2f}x"
                f"{recall[label]:>9.3f}"
            )
    print("SUOD recall by corruption kind: " + ", ".join(f"{k} {v:.3f}" for k, v in recall_by_kind.items()))
    print(
        f"SUOD removed {fitted.report['removed']:,} rows ({fitted.report['removed_class_1']} defaults); "
        f"removed {removed_recall:.3f} of the corrupted rows (flagged defaults are kept)"
    )
    print(
        f"serving, one row: exported scorer {one_row * 1e6:.0f} us vs SUOD decision_function "
        f"{suod_one_row * 1e6:.0f} us ({suod_one_row / one_row:.0f}x); export {export_bytes / 1e6:.1f} MB"
    )

    result = {
        "rows": n_rows,
        "features": int(X.shape[1]),
        "corrupted_rows": int(corrupted.sum()),
        "detectors": list(names),
        "suod_seconds": round(seconds["suod"], 3),
        "sequential_seconds": round(seconds["sequential"], 3),
        "iforest_seconds": round(seconds["iforest"], 3),
        "stock_sequential_seconds": round(seconds["stock_sequential"], 3),
        "suod_vs_sequential": round(seconds["suod"] / seconds["sequential"], 3),
        "suod_cpu_seconds": round(cpu_seconds["suod"], 3),
        "sequential_cpu_seconds": round(cpu_seconds["sequential"], 3),
        "suod_vs_sequential_cpu": round(cpu_seconds["suod"] / cpu_seconds["sequential"], 3),
        "repeats": args.repeats,
        "corrupted_recall": round(recall["suod"], 4),
        "recall_suod": round(recall["suod"], 4),
        "recall_sequential": round(recall["sequential"], 4),
        "recall_stock_sequential": round(recall["stock_sequential"], 4),
        "recall_iforest": round(recall["iforest"], 4),
        "recall_by_kind": {k: round(v, 4) for k, v in recall_by_kind.items()},
        "corrupted_removed_recall": round(removed_recall, 4),
        "warmup_seconds": round(warmup, 3),
        "score_one_row_us": round(one_row * 1e6, 1),
        "suod_score_one_row_us": round(suod_one_row * 1e6, 1),
        "export_bytes": export_bytes,
    }
    if "suod_n_jobs2" in seconds:
        result["suod_n_jobs2_seconds"] = round(seconds["suod_n_jobs2"], 3)
        result["suod_n_jobs2_vs_sequential"] = round(seconds["suod_n_jobs2"] / seconds["sequential"], 3)
        result["recall_suod_n_jobs2"] = round(recall["suod_n_jobs2"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
