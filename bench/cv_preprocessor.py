"""Cross-validation: fit the preprocessor once on all non-test rows (what `training.cv` does) or per fold?

The preprocessor never sees labels, but fitted on all non-test rows it has seen the held-out fold's inputs (category
counts for the vocabulary, quantiles for clipping and scaling). This bench trains every fold model twice on the same
rows and seed, once with the shared preprocessor and once with one fitted on the fold's training rows only, and
reports the held-out fold's ROC-AUC (what the out-of-fold estimate is made of) and the test ROC-AUC of each fold
model. If sharing made the out-of-fold figures optimistic, held-out minus test would be larger with it.

    nice -n 10 .venv/bin/python bench/cv_preprocessor.py --seeds 2            # 2 seeds x 2 regimes x 5 folds x 2

Last line JSON: mean held-out and test ROC-AUC per variant, and the paired differences shared - per fold.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_quality import BLANK_FIELDS, compose_cfg  # noqa: E402


def fold_figures(cfg, k: int, split: dict, preprocessor) -> dict[str, float]:
    """Train fold ``k`` with ``preprocessor``; ROC-AUC on its held-out rows and on test."""
    import lightning as L

    from loan_default.training.cv import _fold_cfg, _fold_datamodule
    from loan_default.training.evaluation.evaluate import predict_logits
    from loan_default.training.evaluation.metrics import ranking_metrics
    from loan_default.training.train import _best_checkpoint, make_model_and_trainer

    fold_cfg = _fold_cfg(cfg, k)
    L.seed_everything(fold_cfg.seed, workers=True)
    dm = _fold_datamodule(fold_cfg, split, preprocessor)
    model, trainer = make_model_and_trainer(fold_cfg, dm)
    trainer.fit(model=model, datamodule=dm)
    best = _best_checkpoint(trainer, fold_cfg)
    net = (type(model).load_from_checkpoint(best) if best else model).net.cpu().eval()
    out = {}
    for name in ("val", "test"):
        x_num, x_cat, y = dm.arrays[name]
        out[name] = ranking_metrics(y, expit(predict_logits(net, x_num, x_cat)))["auroc"]
    return out


def run(root: Path, loans: int, seed: int, hazard: str, blank: str | None, folds: int) -> list[dict]:
    from loan_default.core.preprocess import Preprocessor
    from loan_default.training.cv import fold_rows
    from loan_default.training.train import make_datamodule

    tag = f"{hazard}-{loans}-{seed}" + ("-blank" if blank else "")
    overrides = [
        f"paths.root_dir={root}", f"data.folder={root}/data/{tag}", f"data.synthetic.loans={loans}",
        f"data.synthetic.seed={seed}", f"++data.synthetic.hazard={hazard}", f"seed={seed}", "logger=none",
        *([f"++data.synthetic.blank_fields=[{blank}]"] if blank else []),
    ]  # fmt: skip
    cfg = compose_cfg(root, root / "runs" / tag, overrides)
    base = make_datamodule(cfg)
    base.prepare_data()
    base.setup("fit")
    table, test = base.table, base.split_index["test"]
    rows = np.setdiff1d(np.arange(len(table)), test)
    shared = Preprocessor().fit(table.iloc[rows])
    results = []
    for k, held in enumerate(fold_rows(rows, table["default"].to_numpy()[rows], folds, seed)):
        split = {"train": np.setdiff1d(rows, held), "val": held, "test": test}
        own = Preprocessor().fit(table.iloc[split["train"]])
        results.append({"shared": fold_figures(cfg, k, split, shared), "per_fold": fold_figures(cfg, k, split, own)})
        print(f"{tag} fold={k + 1} " + " ".join(f"{v}_{s}={r[s]:.4f}" for v, r in results[-1].items() for s in r),
              flush=True)  # fmt: skip
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--loans", type=int, default=2000)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("CI", "true")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    for name in ("lightning", "loan_default", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="cv_preprocessor_"))
    started = time.perf_counter()
    runs = []
    for hazard, blank in (("linear", BLANK_FIELDS), ("nonlinear", None)):
        for seed in range(args.seeds):
            runs += run(root, args.loans, seed, hazard, blank, args.folds)
    figures: dict = {"folds_trained": len(runs)}
    for split in ("val", "test"):
        for variant in ("shared", "per_fold"):
            figures[f"{variant}_{split}_mean"] = round(statistics.fmean(r[variant][split] for r in runs), 4)
        diff = [r["shared"][split] - r["per_fold"][split] for r in runs]
        figures[f"shared_minus_per_fold_{split}_mean"] = round(statistics.fmean(diff), 4)
        figures[f"shared_minus_per_fold_{split}_sd"] = round(statistics.stdev(diff), 4)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
