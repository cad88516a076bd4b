"""Batches/s of BalancedBatchSampler against torch's BatchSampler(RandomSampler), measured in the same run.

Three comparisons over the same tensors (rows x 40 float features, 5% positives, batch 1024, num_workers=0), each a
full epoch per repetition (so the sampler's per-epoch plan is paid), repetitions interleaved, median reported:

* per_item:  DataLoader(TensorDataset, batch_sampler=...): one ``__getitem__`` per row plus default_collate, the
             DataLoader's ordinary path and the like-for-like comparison the goal (>= 0.8x torch) refers to.
* batched:   DataLoader(TensorBatchDataset, batch_sampler=..., collate_fn=passthrough_collate): one index_select
             per batch, for both samplers.
* sampler:   iterating the batch sampler alone (index generation only).

Run: .venv/bin/python bench/sampler.py [--quick]. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

# Runnable as a script from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from loan_default.common.progress import progress
from loan_default.training.sampler import BalancedBatchSampler
from loan_default.training.tensors import TensorBatchDataset, passthrough_collate

FEATURES = 40
POS_RATE = 0.05
BATCH = 1024


def batches_per_s(make_iterable: Callable[[], Iterable]) -> float:
    """Batches per second over one full pass of a freshly made iterable."""
    start = time.perf_counter()
    n = sum(1 for _ in make_iterable())
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50k rows, 3 repetitions")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args()
    rows = args.rows or (50_000 if args.quick else 500_000)
    reps = args.reps or (3 if args.quick else 5)

    torch.manual_seed(0)
    x = torch.randn(rows, FEATURES)
    labels = np.random.default_rng(0).random(rows) < POS_RATE
    y = torch.from_numpy(labels.astype(np.float32))
    per_item_ds, batched_ds = TensorDataset(x, y), TensorBatchDataset(x, y)
    # One sampler of each kind, reused across repetitions: the balanced one reseeds itself every epoch.
    balanced = BalancedBatchSampler(labels, BATCH, pos_fraction=0.5, seed=0)
    baseline = BatchSampler(RandomSampler(per_item_ds, generator=torch.Generator().manual_seed(0)), BATCH, False)

    cases: dict[str, Callable[[], Iterable]] = {
        "per_item/balanced": lambda: DataLoader(per_item_ds, batch_sampler=balanced),
        "per_item/torch": lambda: DataLoader(per_item_ds, batch_sampler=baseline),
        "batched/balanced": lambda: DataLoader(batched_ds, batch_sampler=balanced, collate_fn=passthrough_collate),
        "batched/torch": lambda: DataLoader(batched_ds, batch_sampler=baseline, collate_fn=passthrough_collate),
        "sampler/balanced": lambda: balanced,
        "sampler/torch": lambda: baseline,
    }
    for make in cases.values():  # warm-up: first-call allocations and lazy imports
        batches_per_s(make)
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in progress(range(reps), desc="repetitions"):
        for name, make in cases.items():
            timings[name].append(batches_per_s(make))
    median = {name: statistics.median(v) for name, v in timings.items()}

    print(f"rows={rows:,} features={FEATURES} positives={labels.mean():.1%} batch={BATCH} reps={reps} (median)")
    print(f"batches/epoch: balanced={len(balanced)} torch={len(baseline)}")
    print(f"{'path':<10}{'balanced b/s':>14}{'torch b/s':>12}{'ratio':>8}")
    ratios = {}
    for path in ("per_item", "batched", "sampler"):
        b, t = median[f"{path}/balanced"], median[f"{path}/torch"]
        ratios[path] = b / t
        print(f"{path:<10}{b:>14,.0f}{t:>12,.0f}{b / t:>7.2f}x")
    print(
        f"batched balanced vs per_item torch: {median['batched/balanced'] / median['per_item/torch']:.1f}x "
        "(what switching the DataModule to TensorBatchDataset buys)"
    )
    print(
        json.dumps(
            {
                "rows": rows,
                "features": FEATURES,
                "batch_size": BATCH,
                "reps": reps,
                "fraction_of_torch": round(ratios["per_item"], 3),
                "balanced_batches_per_s": round(median["per_item/balanced"], 1),
                "torch_batches_per_s": round(median["per_item/torch"], 1),
                "fraction_of_torch_batched": round(ratios["batched"], 3),
                "balanced_batched_batches_per_s": round(median["batched/balanced"], 1),
                "torch_batched_batches_per_s": round(median["batched/torch"], 1),
                "fraction_of_torch_sampler_only": round(ratios["sampler"], 3),
                "balanced_sampler_batches_per_s": round(median["sampler/balanced"], 1),
                "torch_sampler_batches_per_s": round(median["sampler/torch"], 1),
                "batched_speedup_vs_per_item_torch": round(median["batched/balanced"] / median["per_item/torch"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
