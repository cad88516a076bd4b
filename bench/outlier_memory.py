"""Peak memory and time of the outlier filter's fit (OutlierFilter.fit, SUOD defaults) against training rows.

    .venv/bin/python bench/outlier_memory.py                          # 200k, 400k, 800k training rows
    .venv/bin/python bench/outlier_memory.py --quick                  # 150k-450k rows, a 50k cap

The rows are the synthetic data's outlier matrix (bench/outliers.py's loader: the generator's files, read, split,
preprocessed; ``--loans`` of them), resampled to each size with a little noise on the continuous columns so that rows
are distinct, as float32 (what a caller with a matrix passes). Each size runs in its own subprocess; the probe hands
freed heap back to the system (malloc_trim, so the fit cannot hide in memory the data loading freed), resets the peak
(/proc/self/clear_refs) right before the fit and reads VmHWM after it, so ``extra_mib`` is what the fit holds above
the matrix and labels it was given. The baseline, in the same run: the same sizes with the cap lifted (SUOD fitted on
every row). ``--compare`` also fits with the cap lifted inside each capped run and reports how many flags differ and
the share of the generator's corrupted rows each flags. ``--caps`` instead fits the ``--loans`` data's own training
rows (no resampling) uncapped and with each cap and compares them the same way:

    .venv/bin/python bench/outlier_memory.py --loans 100000 --caps 10000 20000 35000

``--stage`` measures the training stage instead: ``fit_filters`` (outlier matrix + filter, the preprocessor given) on
the ``--loans`` data's compacted loan table's training rows resampled to each size, peak above that table:

    .venv/bin/python bench/outlier_memory.py --stage --loans 100000 --rows 400000 800000 1600000

Last line JSON: per size (rows, extra MiB, seconds, flagged share), capped and uncapped, ``bytes_per_row`` and
``uncapped_bytes_per_row`` (least-squares slopes of the extra against rows) and ``ratio_vs_uncapped``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from _peak_memory import added_peak  # noqa: E402  (bench/_peak_memory.py: a helper, not a benchmark)


def one(rows: int, loans: int, data_dir: Path, max_fit_rows: int | None, compare: bool) -> dict:
    """Fit the default filter on ``rows`` resampled training rows; peak memory above what existed before the fit."""
    import outliers as bench_outliers  # bench/outliers.py

    from loan_default.training.outliers import OutlierFilter

    base = bench_outliers.load_features(loans, bench_outliers.DATA_SEED, bench_outliers.SPLIT_SEED, data_dir)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(base.X), size=rows)
    X = base.X[idx].astype(np.float32)
    n_scaled = sum(1 for name in base.preprocessor.outlier_names if name not in ("cltv_below_ltv", "dti_zero"))
    X[:, :n_scaled] += rng.normal(scale=0.02, size=(rows, n_scaled)).astype(np.float32)
    y = base.y[idx]
    corrupted = base.kinds[idx] != ""
    del base, idx
    settings = {} if max_fit_rows is None else {"max_fit_rows": max_fit_rows}
    f = OutlierFilter(seed=42, **settings)
    keep, added, seconds = added_peak(lambda: f.fit(X, y))
    flagged = f.scores_ > f.report["threshold"]
    result = {
        "rows": rows,
        "fit_rows": f.report["fit_rows"],
        "extra_mib": round(added / 2**20, 1),
        "seconds": round(seconds, 2),
        "flagged_share": round(float(flagged.mean()), 5),
        "corrupted_flagged": round(float(flagged[corrupted].mean()), 4),
        "kept": int(keep.sum()),
    }
    if compare:
        whole = OutlierFilter(seed=42, max_fit_rows=rows)
        whole.fit(X, y)
        whole_flagged = whole.scores_ > whole.report["threshold"]
        result["uncapped_seconds"] = round(whole.report["fit_seconds"], 2)
        result["uncapped_corrupted_flagged"] = round(float(whole_flagged[corrupted].mean()), 4)
        result["flags_differing"] = int((flagged != whole_flagged).sum())
        result["flags_both"] = int((flagged & whole_flagged).sum())
    return result


def stage(rows: int, loans: int, data_dir: Path, max_fit_rows: int | None) -> dict:
    """Peak of ``fit_filters`` (the outliers stage of setup) over ``rows`` resampled training rows."""
    import outliers as bench_outliers  # bench/outliers.py
    from omegaconf import OmegaConf

    from loan_default.core.preprocess import Preprocessor
    from loan_default.freddie.loans import compact_loan_table, load_loan_table
    from loan_default.synthetic.generate import ensure_synthetic
    from loan_default.training.fitted import fit_filters
    from loan_default.training.splits import split_loans

    folder = data_dir / f"synthetic_{loans}_{bench_outliers.DATA_SEED}"
    ensure_synthetic(folder, loans=loans, seed=bench_outliers.DATA_SEED)
    table = compact_loan_table(load_loan_table(folder=folder)[0])  # as setup holds it
    train = table.iloc[split_loans(table, seed=bench_outliers.SPLIT_SEED)["train"]]
    preprocessor = Preprocessor().fit(train)
    frame = train.iloc[np.random.default_rng(0).integers(0, len(train), size=rows)].reset_index(drop=True)
    del table, train
    config = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "outlier" / "suod.yaml"))
    if max_fit_rows is not None:
        config["max_fit_rows"] = max_fit_rows
    fitted, added, seconds = added_peak(lambda: fit_filters(frame, preprocessor, config, bench_outliers.SPLIT_SEED))
    return {
        "rows": rows,
        "extra_mib": round(added / 2**20, 1),
        "seconds": round(seconds, 2),
        "flagged_share": round(fitted.report["flagged"] / rows, 5),
    }


def quality(loans: int, data_dir: Path, caps: list[int]) -> dict:
    """Capped fits against the uncapped one on the real training rows: flags that differ, corrupted rows caught."""
    import outliers as bench_outliers  # bench/outliers.py

    from loan_default.training.outliers import OutlierFilter

    base = bench_outliers.load_features(loans, bench_outliers.DATA_SEED, bench_outliers.SPLIT_SEED, data_dir)
    X, y, corrupted = base.X.astype(np.float32), base.y, base.kinds != ""
    runs = {}
    for cap in [len(X), *caps]:
        f = OutlierFilter(seed=bench_outliers.SPLIT_SEED, max_fit_rows=cap)
        f.fit(X, y)
        flagged = f.scores_ > f.report["threshold"]
        runs[cap] = flagged
        row = {
            "max_fit_rows": cap,
            "rows": len(X),
            "seconds": round(f.report["fit_seconds"], 2),
            "flagged_share": round(float(flagged.mean()), 5),
            "corrupted_flagged": round(float(flagged[corrupted].mean()), 4),
            "clean_removed": round(float((~f.keep_mask_[~corrupted]).mean()), 5),
            "flags_differing_from_uncapped": int((flagged != runs[len(X)]).sum()),
        }
        print(row, flush=True)
    return {"rows": len(X), "corrupted": int(corrupted.sum()), "flagged_uncapped": int(runs[len(X)].sum())}


def measure(args: argparse.Namespace, max_fit_rows: int | None) -> list[dict]:
    """One subprocess a size (its own peak), with ``max_fit_rows`` (None: the code's default; 0: each size's rows)."""
    results = []
    for rows in args.rows:
        cap = rows if max_fit_rows == 0 else max_fit_rows
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(rows),
            "--loans",
            str(args.loans),
            "--data-dir",
            str(args.data_dir),
        ]
        cmd += [] if cap is None else ["--max-fit-rows", str(cap)]
        cmd += (["--compare"] if args.compare else []) + (["--stage"] if args.stage else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results.append({"max_fit_rows": cap, **json.loads(out)})
        print(results[-1], flush=True)
    return results


def slope(results: list[dict]) -> float:
    """Least-squares bytes a row of the extra peak against rows."""
    rows = np.array([x["rows"] for x in results], dtype=float)
    extra = np.array([x["extra_mib"] for x in results]) * 2**20
    return round(float(np.polyfit(rows, extra, 1)[0]), 1) if len(results) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 400_000, 800_000])
    parser.add_argument("--loans", type=int, default=20_000, help="synthetic loans the rows are resampled from")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data" / "bench")
    parser.add_argument("--max-fit-rows", type=int, default=None, help="outlier.max_fit_rows (default: the code's)")
    parser.add_argument("--compare", action="store_true", help="also fit with the cap lifted; compare the flags")
    parser.add_argument("--caps", type=int, nargs="+", default=None, help="quality of capped fits on real rows")
    parser.add_argument("--stage", action="store_true", help="measure fit_filters on resampled training rows")
    parser.add_argument("--quick", action="store_true", help="150k-450k rows with a 50k cap")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.caps:
        print(json.dumps(quality(args.loans, args.data_dir, args.caps)))
        return
    if args.one is not None:
        if args.stage:
            print(json.dumps(stage(args.one, args.loans, args.data_dir, args.max_fit_rows)))
        else:
            print(json.dumps(one(args.one, args.loans, args.data_dir, args.max_fit_rows, args.compare)))
        return
    if args.quick:
        args.rows, args.max_fit_rows = [150_000, 300_000, 450_000], 50_000  # above the 65,536-row chunks
    capped = measure(args, args.max_fit_rows)
    uncapped = measure(args, 0)  # the baseline, in the same run: SUOD fitted on every row
    ours, baseline = slope(capped), slope(uncapped)
    print(f"bytes a training row: {ours} capped, {baseline} uncapped (SUOD on every row)")
    summary = {"sizes": capped, "uncapped": uncapped, "bytes_per_row": ours, "uncapped_bytes_per_row": baseline}
    print(json.dumps({**summary, "ratio_vs_uncapped": round(ours / baseline, 3) if baseline else None}))


if __name__ == "__main__":
    main()
