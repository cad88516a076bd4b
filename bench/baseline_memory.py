"""Peak memory and time of the evaluation's baselines (logistic, LightGBM) per training row, against a git revision.

The DataModule's arrays of one synthetic table (x_num as `PackedNumeric`, x_cat int32, y) are saved once; then each
(size, model, code) runs in a fresh subprocess that loads the first ``fraction`` of every split, resets the kernel's
RSS high-water mark (``/proc/self/clear_refs``), runs ``fit_baselines`` for that one model and reports VmHWM minus the
RSS before the call: the memory the baseline adds on top of the data train.py already holds. "code" is the working
tree's baselines.py and the one at ``--ref`` (loaded from git), so both are measured under the same load; their
val/test probabilities are compared too (the change must not move them).

    .venv/bin/python bench/baseline_memory.py --ref 6669b8a          # 400k loans (generated if absent), 4 sizes
    .venv/bin/python bench/baseline_memory.py --loans 20000 --fractions 0.5 1 --ref HEAD   # quick look

Last line JSON: per model and code, bytes per training row (least-squares slope of the added peak against training
rows) and per loan (the same against all rows: what bench/scale.py's bytes_per_loan sees), the added peak and fit
seconds at the largest size, and the largest probability difference between the two codes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from _peak_memory import added_peak  # noqa: E402  (bench/_peak_memory.py: a helper, not a benchmark)

MODULE = "loan_default/training/evaluation/baselines.py"
SPLITS = ("train", "val", "test")


def save_arrays(folder: Path, loans: int, cache: Path, out: Path) -> None:
    """Build the DataModule once (no outlier filter, default split) and save its packed arrays."""
    from loan_default.training.datamodule import LoanDataModule

    dm = LoanDataModule(source="synthetic", folder=str(folder), cache_dir=str(cache),
                        synthetic={"loans": loans, "seed": 7}, outlier={"method": "none"}, seed=42)  # fmt: skip
    dm.prepare_data()
    dm.setup()
    arrays = {"categorical_names": np.array(dm.preprocessor.categorical_names)}
    for split in SPLITS:
        x_num, x_cat, y = dm.arrays[split]
        arrays |= {f"{split}_cont": x_num.continuous, f"{split}_bits": x_num.bits,
                   f"{split}_nbin": np.array(x_num.n_binary), f"{split}_cat": x_cat, f"{split}_y": y}  # fmt: skip
    np.savez(out, **arrays)


def load_splits(path: Path, fraction: float) -> tuple[list, list[str]]:
    """The first ``fraction`` of each split in arrays of their own; a fraction above 1 repeats the rows (a larger
    table without generating one: memory is what is measured, and LightGBM's bin sample is capped at 200k rows)."""
    from loan_default.training.packed import PackedNumeric

    data = np.load(path)
    splits = []
    for split in SPLITS:
        n = round(len(data[f"{split}_y"]) * fraction)
        take = np.arange(n) % len(data[f"{split}_y"])
        x_num = PackedNumeric(0, 0, 0)
        x_num.continuous = data[f"{split}_cont"][take]
        x_num.bits = data[f"{split}_bits"][take]
        x_num.n_binary = int(data[f"{split}_nbin"])
        splits.append((x_num, data[f"{split}_cat"][take], data[f"{split}_y"][take]))
    return splits, [str(c) for c in data["categorical_names"]]


def load_module(ref: str | None):
    """baselines.py from the working tree (``ref`` None) or from git revision ``ref``."""
    if ref is None:
        from loan_default.training.evaluation import baselines

        return baselines
    source = subprocess.run(["git", "show", f"{ref}:{MODULE}"], cwd=ROOT, check=True, capture_output=True, text=True)
    path = Path(tempfile.mkdtemp()) / "baselines_ref.py"
    path.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location("baselines_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def child(arrays: Path, fraction: float, model: str, ref: str | None, proba_out: Path, threads: int | None) -> None:
    module = load_module(ref)
    splits, categorical = load_splits(arrays, fraction)
    import lightgbm  # noqa: F401  (imported before the mark, as train.py has it imported)
    import sklearn.linear_model  # noqa: F401

    fit = partial(module.fit_baselines, *splits, categorical, seed=42, models=(model,), n_jobs=threads)
    results, added, _ = added_peak(fit)  # loading left freed heap behind: it is handed back before the mark
    result = results[model]
    np.savez(proba_out, val=result.val_proba, test=result.test_proba)
    rows = {split: len(s[2]) for split, s in zip(SPLITS, splits, strict=True)}
    print(json.dumps({"added_bytes": added, "seconds": result.fit_seconds, "test_auroc": result.test_auroc, **rows}))


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope (one size: the ratio, which also counts the fixed part)."""
    return float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else y[0] / x[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=400_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "baseline_memory")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--models", nargs="+", default=["logistic", "lightgbm"])
    parser.add_argument("--ref", default=None, help="git revision whose baselines.py to compare with")
    parser.add_argument("--threads", type=int, default=None, help="LightGBM threads (default: every core)")
    parser.add_argument("--child", nargs=4, metavar=("ARRAYS", "FRACTION", "MODEL", "CODE"), help=argparse.SUPPRESS)
    parser.add_argument("--proba-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        arrays, fraction, model, code = args.child
        child(Path(arrays), float(fraction), model, None if code == "work" else code, args.proba_out, args.threads)
        return

    work = args.workdir / f"loans{args.loans}"
    work.mkdir(parents=True, exist_ok=True)
    arrays = work / "arrays.npz"
    if not arrays.exists():
        folder = work / "synthetic"
        if not folder.exists():
            cmd = [sys.executable, "-m", "loan_default.synthetic", "--loans", str(args.loans), "--seed", "7"]
            subprocess.run([*cmd, "--out", str(folder)], check=True, cwd=ROOT, capture_output=True)
        save_arrays(folder, args.loans, work / "cache", arrays)

    codes = ["work"] + ([args.ref] if args.ref else [])
    runs: dict[tuple[str, str], list[dict]] = {}
    max_diff: dict[str, float] = {}
    print(f"{'model':<9} {'code':<8} {'train rows':>10} {'all rows':>9} {'added MiB':>9} {'B/train row':>11} {'s':>6}")
    for fraction in args.fractions:
        for model in args.models:
            probas = {}
            for code in codes:
                out = work / f"proba_{model}_{code}.npz"
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    str(arrays),
                    str(fraction),
                    model,
                    code,
                    "--proba-out",
                    str(out),
                ]
                cmd += ["--threads", str(args.threads)] if args.threads else []
                done = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
                run = json.loads(done.stdout.strip().splitlines()[-1])
                run["all"] = run["train"] + run["val"] + run["test"]
                runs.setdefault((model, code), []).append(run)
                probas[code] = np.load(out)
                print(f"{model:<9} {code:<8} {run['train']:>10,} {run['all']:>9,} {run['added_bytes'] / 2**20:>9.1f} "
                      f"{run['added_bytes'] / run['train']:>11.0f} {run['seconds']:>6.1f}")  # fmt: skip
            if args.ref:
                diff = max(float(np.abs(probas["work"][k] - probas[args.ref][k]).max()) for k in ("val", "test"))
                max_diff[model] = max(max_diff.get(model, 0.0), diff)
    summary = {"loans": args.loans, "fractions": args.fractions}
    for (model, code), rs in runs.items():
        added = [r["added_bytes"] for r in rs]
        summary[f"{model}/{code}"] = {
            "bytes_per_train_row": round(slope([r["train"] for r in rs], added)),
            "bytes_per_loan": round(slope([r["all"] for r in rs], added)),
            "added_mib_largest": round(added[-1] / 2**20, 1),
            "fit_seconds_largest": round(rs[-1]["seconds"], 2),
            "test_auroc_largest": rs[-1]["test_auroc"],
        }
    if args.ref:
        summary["max_abs_proba_diff"] = max_diff
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
