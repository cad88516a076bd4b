"""Benchmark the SUOD outlier stage on the synthetic Freddie Mac data: what it catches, and what it costs.

    .venv/bin/python bench/outliers.py            # 100k loans: the default synthetic data set, ~70k training rows
    .venv/bin/python bench/outliers.py --quick    # 20k loans

The data are the generator's files (made on first use under ``data/bench/``), read and labelled by the loan reader,
split as training splits them (stratified by vintage, ``--seed``) and preprocessed with a Preprocessor fitted on the
training split; the detectors see ``Preprocessor.outlier_matrix`` of the training rows. The generator's truth.csv
says which records it corrupted and how, so recall (share of the corrupted training rows flagged) is shown per
corruption kind, beside the share of clean training rows flagged.

Timings come from this run, on the same matrix: SUOD and the same detectors fitted one after another alternate
``--repeats`` times and the fastest run of each counts. CPU seconds (this process only, so not the n_jobs=2 workers)
are shown beside wall seconds because other jobs on a shared machine inflate wall time but not CPU time. Ablation
rows refit the previous design: the previous outlier matrix (the 10 numeric fields as read, log UPB, standardised)
and the previous detectors (IForest with 256 samples a tree + HBOS + COPOD, averaged). The last line of output is
one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from loan_default.core.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA_SEED = 2024  # the synthetic data's seed in conf/data/synthetic.yaml
SPLIT_SEED = 42  # the training seed in conf/train.yaml (split and detectors)
PREVIOUS_DETECTORS = {
    "detectors": ("IForest", "HBOS", "COPOD"),
    "combination": "average",
    "detector_params": {"IForest": {"max_samples": 256}},
}


@dataclass
class BenchData:
    """The training split's outlier matrix, labels and truth, plus what the serving timings need."""

    X: np.ndarray  # Preprocessor.outlier_matrix of the training rows, float64
    X_previous: np.ndarray  # the previous outlier matrix of the same rows
    y: np.ndarray  # 1 = default
    kinds: np.ndarray  # the generator's corruption kind per row, "" for clean rows
    loans: list[dict]  # a few raw training loans, for end-to-end single-loan timing
    preprocessor: Preprocessor
    n_loans: int


def load_features(n_loans: int, data_seed: int, split_seed: int, data_dir: Path) -> BenchData:
    """Generate (once) and read the synthetic data, split it, fit the Preprocessor on the training split."""
    from loan_default.core.preprocess import Preprocessor
    from loan_default.freddie.loans import load_loan_table
    from loan_default.synthetic.generate import ensure_synthetic
    from loan_default.training.splits import split_loans

    folder = data_dir / f"synthetic_{n_loans}_{data_seed}"
    ensure_synthetic(folder, loans=n_loans, seed=data_seed)
    table, _ = load_loan_table(folder=folder)
    truth = pd.read_csv(folder / "truth.csv", dtype=str, keep_default_na=False)
    kind_of = dict(zip(truth["loan_id"], truth["corruption"], strict=True))
    train = table.iloc[split_loans(table, stratify_vintage=True, seed=split_seed)["train"]]
    preprocessor = Preprocessor().fit(train)
    return BenchData(
        X=preprocessor.outlier_matrix(train).astype(np.float64),
        X_previous=previous_matrix(preprocessor, train),
        y=train["default"].to_numpy(),
        kinds=train["loan_id"].map(kind_of).fillna("").to_numpy(dtype=object),
        loans=[row.to_dict() for _, row in train.sample(256, random_state=split_seed).iterrows()],
        preprocessor=preprocessor,
        n_loans=len(table),
    )


def previous_matrix(preprocessor: Preprocessor, rows: pd.DataFrame) -> np.ndarray:
    """The outlier matrix before this design: every numeric field as read, log UPB, median-imputed, standardised."""
    from loan_default.core import features as ft

    cols = ft.frame_columns(rows)
    stats = {s["name"]: s for s in preprocessor.state()["numeric"]}
    columns = []
    for name, how in ft.NUMERIC_FIELDS.items():
        if name in stats:
            s = stats[name]
            v = ft.signed_log1p(cols[name]) if how == "log" else cols[name]
            columns.append((np.where(np.isnan(v), s["median"], v) - s["mean"]) / s["std"])
    return np.column_stack(columns)


def combined_flags(score_matrix: np.ndarray, combination: str, contamination: float) -> np.ndarray:
    """What SUOD does with base scores: PyOD's standardizer, average or max, flag above the contamination quantile."""
    from pyod.models.combination import average, maximization
    from pyod.utils.utility import standardizer

    combined = (average if combination == "average" else maximization)(standardizer(score_matrix))
    return combined > np.percentile(combined, 100 * (1 - contamination))


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
    parser.add_argument("--quick", action="store_true", help="20k loans instead of 100k")
    parser.add_argument("--loans", type=int, default=None, help="synthetic loans (overrides --quick)")
    parser.add_argument("--data-seed", type=int, default=DATA_SEED, help="the synthetic generator's seed")
    parser.add_argument("--seed", type=int, default=SPLIT_SEED, help="split and detector seed")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data" / "bench", help="where the data are generated")
    parser.add_argument("--repeats", type=int, default=5, help="alternating SUOD / sequential runs")
    parser.add_argument("--skip-parallel", action="store_true", help="skip the SUOD n_jobs=2 run")
    args = parser.parse_args()
    n_loans = args.loans or (20_000 if args.quick else 100_000)
    logging.basicConfig(level=logging.WARNING)

    from pyod.models.ecod import ECOD
    from pyod.models.hbos import HBOS
    from pyod.models.iforest import IForest

    from loan_default.common.progress import progress
    from loan_default.synthetic.loans import CORRUPTIONS
    from loan_default.training.outliers import OutlierFilter, build_detectors, captured_output

    load_start = time.perf_counter()
    data = load_features(n_loans, args.data_seed, args.seed, args.data_dir)
    load_seconds = time.perf_counter() - load_start
    X, X_previous, y, kinds = data.X, data.X_previous, data.y, data.kinds
    corrupted = kinds != ""
    reference = OutlierFilter(seed=args.seed)
    names, contamination = reference.detectors, reference.contamination

    fits: dict[str, OutlierFilter] = {}

    def suod(label: str, matrix: np.ndarray, **kwargs) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            f = OutlierFilter(seed=args.seed, **kwargs)
            f.fit(matrix, y)
            fits[label] = f
            return f.scores_ > f.report["threshold"]

        return run

    def sequential(detectors: Callable[[], list]) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with captured_output("sequential fit"):  # sklearn warns when max_samples exceeds the rows
                scores = np.column_stack([d.fit(X).decision_scores_ for d in detectors()])
            return combined_flags(scores, reference.combination, contamination)

        return run

    def same_detectors() -> list:
        return build_detectors(names, contamination, args.seed, reference.max_reference_rows)

    def stock_detectors() -> list:
        return [
            IForest(contamination=contamination, n_estimators=200, max_samples=2048, random_state=args.seed),
            ECOD(contamination=contamination),
        ]

    def iforest() -> np.ndarray:
        [forest] = build_detectors(["IForest"], contamination, args.seed)
        with captured_output("IForest fit"):
            return forest.fit(X).labels_.astype(bool)

    # Numba compiles HBOS/ECDF kernels on first use in a process; pay that once, outside every timing.
    warmup_start = time.perf_counter()
    with captured_output("warm-up"):
        for d in [*same_detectors(), *stock_detectors(), HBOS(), *build_detectors(["COPOD"], 0.02, 0)]:
            d.fit(X[:2000])
    warmup = time.perf_counter() - warmup_start

    plan: list[tuple[str, Callable[[], np.ndarray]]] = [
        *[
            run
            for _ in range(args.repeats)
            for run in (("suod", suod("suod", X)), ("sequential", sequential(same_detectors)))
        ],
        ("stock_sequential", sequential(stock_detectors)),
        ("iforest", iforest),
        ("previous_detectors", suod("previous_detectors", X, **PREVIOUS_DETECTORS)),
        ("previous_features", suod("previous_features", X_previous)),
        ("previous", suod("previous", X_previous, **PREVIOUS_DETECTORS)),
    ]
    if not args.skip_parallel:
        plan.append(("suod_n_jobs2", suod("suod_n_jobs2", X, n_jobs=2)))
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    flags: dict[str, np.ndarray] = {}
    for label, fn in progress(plan, desc="outlier bench", unit="run"):
        wall, cpu, flagged = timed(fn)
        seconds[label] = min(wall, seconds.get(label, np.inf))
        cpu_seconds[label] = min(cpu, cpu_seconds.get(label, np.inf))
        flags[label] = flagged
    fitted = fits["suod"]

    recall = {label: float(f[corrupted].mean()) for label, f in flags.items()}
    clean_flagged = {label: float(f[~corrupted].mean()) for label, f in flags.items()}
    by_kind = {label: {k: float(f[kinds == k].mean()) for k in CORRUPTIONS} for label, f in flags.items()}
    removed_recall = float((~fitted.keep_mask_[corrupted]).mean())

    scorer = fitted.scorer()
    rows = X[np.random.default_rng(args.seed).choice(len(X), size=256)]
    cursor = iter(range(10**9))
    one_row = median_seconds(lambda: scorer.score(rows[next(cursor) % 256]), 2000)
    previous_scorer, previous_rows = fits["previous"].scorer(), X_previous[:256]
    previous_one_row = median_seconds(lambda: previous_scorer.score(previous_rows[next(cursor) % 256]), 2000)
    pp = data.preprocessor
    one_loan = median_seconds(lambda: scorer.score(pp.outlier_matrix_one(data.loans[next(cursor) % 256])), 500)
    with captured_output("SUOD scoring"):
        suod_one_row = median_seconds(lambda: fitted.detector_.decision_function(rows[:1]), 20)
    with tempfile.TemporaryDirectory() as tmp:
        fitted.export(tmp)
        export_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir())

    print(
        f"\nSUOD outlier stage on synthetic data: {data.n_loans:,} loans (seed {args.data_seed}), {len(X):,} training "
        f"rows x {X.shape[1]} features ({', '.join(pp.outlier_names)}), {corrupted.sum():,} corrupted.\n"
        f"Detectors {', '.join(names)}, {reference.combination}, contamination {contamination}; data load "
        f"{load_seconds:.1f} s and numba warm-up {warmup:.1f} s excluded"
    )
    labels = {
        "suod": "SUOD (defaults: n_jobs=1)",
        "suod_n_jobs2": "SUOD n_jobs=2",
        "sequential": "same detectors, one after another",
        "stock_sequential": "stock PyOD IForest+ECOD, in turn",
        "iforest": "IForest alone",
        "previous_detectors": "previous detectors, this matrix",
        "previous_features": "these detectors, previous matrix",
        "previous": "previous detectors and matrix",
    }
    header = f"{'method':<36}{'seconds':>9}{'vs seq.':>9}{'CPU s':>8}{'CPU ratio':>11}{'recall':>8}{'clean':>8}"
    print(header + "".join(f"{k[:9]:>10}" for k in CORRUPTIONS))
    for label, text in labels.items():
        if label in seconds:
            ratio = seconds[label] / seconds["sequential"]
            cpu_ratio = cpu_seconds[label] / cpu_seconds["sequential"]
            print(
                f"{text:<36}{seconds[label]:>9.2f}{ratio:>8.2f}x{cpu_seconds[label]:>8.2f}{cpu_ratio:>10.2f}x"
                f"{recall[label]:>8.3f}{clean_flagged[label]:>8.4f}"
                + "".join(f"{by_kind[label][k]:>10.2f}" for k in CORRUPTIONS)
            )
    print(f"corrupted training rows per kind: {', '.join(f'{k} {(kinds == k).sum()}' for k in CORRUPTIONS)}")
    print(
        f"SUOD removed {fitted.report['removed']:,} rows ({fitted.report['removed_class_1']} defaults); "
        f"removed {removed_recall:.3f} of the corrupted rows (flagged defaults are kept)"
    )
    print(
        f"serving, one row: exported scorer {one_row * 1e6:.0f} us vs SUOD decision_function "
        f"{suod_one_row * 1e6:.0f} us ({suod_one_row / one_row:.0f}x), previous design's scorer "
        f"{previous_one_row * 1e6:.0f} us; one raw loan, outlier_matrix_one + score {one_loan * 1e6:.0f} us; "
        f"export {export_bytes / 1e6:.1f} MB"
    )

    result = {
        "loans": data.n_loans,
        "data_seed": args.data_seed,
        "seed": args.seed,
        "rows": int(len(X)),
        "features": int(X.shape[1]),
        "corrupted_rows": int(corrupted.sum()),
        "detectors": list(names),
        "combination": reference.combination,
        "contamination": contamination,
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
        "clean_flagged_share": round(clean_flagged["suod"], 5),
        "recall_by_kind": {k: round(v, 4) for k, v in by_kind["suod"].items()},
        "corrupted_removed_recall": round(removed_recall, 4),
        **{f"recall_{label}": round(recall[label], 4) for label in labels if label in recall},
        "recall_by_kind_previous": {k: round(v, 4) for k, v in by_kind["previous"].items()},
        "clean_flagged_share_previous": round(clean_flagged["previous"], 5),
        "warmup_seconds": round(warmup, 3),
        "load_seconds": round(load_seconds, 3),
        "score_one_row_us": round(one_row * 1e6, 1),
        "score_one_loan_us": round(one_loan * 1e6, 1),
        "score_one_row_previous_us": round(previous_one_row * 1e6, 1),
        "suod_score_one_row_us": round(suod_one_row * 1e6, 1),
        "export_bytes": export_bytes,
    }
    if "suod_n_jobs2" in seconds:
        result["suod_n_jobs2_seconds"] = round(seconds["suod_n_jobs2"], 3)
        result["suod_n_jobs2_vs_sequential"] = round(seconds["suod_n_jobs2"] / seconds["sequential"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
