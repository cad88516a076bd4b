"""Training throughput through Lightning vs a plain PyTorch loop over the same batches.

Both sides train the same `LoanNet` (same size, same seed) on the same in-memory tensors, with the same batch
sampler and the same batch fetch (``TensorBatchDataset.__getitems__``), so the ratio isolates what Lightning and the
module add: the Trainer loop, hooks, loss logging, torchmetrics updates and the LR scheduler. The module and the
network are built from conf/model/<--model>.yaml as train.py builds them (training metrics from every 4th batch). The plain loop does only
forward, loss, backward and an AdamW step. Runs alternate (plain, Lightning, plain, ...) so background load hits both
alike; figures are medians. Wall time and process CPU time are both recorded: on a machine shared with other jobs the
CPU-time ratio is the steadier one. Torch runs single-threaded by default here (``--threads``), because two intra-op
threads on two busy cores spin against other processes and turn a 10 ms step into 50-100 ms at random.

Two Lightning figures: ``fit`` times the whole ``trainer.fit`` call (Trainer setup and the end-of-epoch metric
computation included: what a user waits for); ``epoch`` times only the training epoch's batches (first batch start
to last batch end). ``fraction_of_plain_loop`` uses ``fit``.

    .venv/bin/python bench/train_step.py            # 200k rows x 40 numeric + 6 categorical, batch 1024
    .venv/bin/python bench/train_step.py --quick    # 30k rows
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from loan_default.common.progress import progress
from loan_default.core.network import LoanNet
from loan_default.training.module import LoanDefaultModule

try:
    from loan_default.training.sampler import BalancedBatchSampler
except ImportError:  # the sampler module is optional here; fall back to plain shuffling and say so
    BalancedBatchSampler = None
try:
    from loan_default.training.tensors import TensorBatchDataset, passthrough_collate
except ImportError:
    TensorBatchDataset = None

CONF = Path(__file__).resolve().parents[1] / "conf"
Timing = tuple[float, float]  # (wall seconds, process CPU seconds)
CARDINALITIES = [5, 12, 30, 3, 50, 8]
POSITIVE_RATE = 0.05
BATCH_POS_FRACTION = 0.25


def model_settings(name: str) -> dict:
    """The LoanDefaultModule arguments of conf/model/<name>.yaml (its defaults list followed)."""
    conf = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    base = {}
    for parent in conf.get("defaults", []):
        if parent != "_self_":
            base = model_settings(parent)
    settings = base | {k: v for k, v in OmegaConf.to_container(conf).items() if k not in ("defaults", "_target_")}
    return {k: v for k, v in settings.items() if v != "auto"}


def clock() -> Timing:
    return time.perf_counter(), time.process_time()


def elapsed(start: Timing) -> Timing:
    now = clock()
    return now[0] - start[0], now[1] - start[1]


def make_data(rows: int, n_numeric: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random features and ~5% defaults from a logistic model of a few of them."""
    gen = torch.Generator().manual_seed(seed)
    x_num = torch.randn(rows, n_numeric, generator=gen)
    x_cat = torch.stack([torch.randint(0, c, (rows,), generator=gen) for c in CARDINALITIES], dim=1)
    score = x_num[:, :4].sum(dim=1) / 2 + (x_cat[:, 0] == 1).float() + torch.logit(torch.tensor(POSITIVE_RATE)) - 0.5
    y = torch.bernoulli(torch.sigmoid(score), generator=gen)
    return x_num, x_cat, y


def make_sampler(y: torch.Tensor, batch_size: int, seed: int) -> Sampler[list[int]]:
    """A fresh sampler, so every run sees exactly the same batches."""
    if BalancedBatchSampler is not None:
        return BalancedBatchSampler(y, batch_size, pos_fraction=BATCH_POS_FRACTION, seed=seed)
    return BatchSampler(RandomSampler(range(len(y)), generator=torch.Generator().manual_seed(seed)), batch_size, False)


def fetch(tensors: tuple[torch.Tensor, ...]) -> tuple[Dataset, Callable | None]:
    """The dataset both sides fetch batches from, and its collate function for the DataLoader."""
    if TensorBatchDataset is not None:
        return TensorBatchDataset(*tensors), passthrough_collate
    return torch.utils.data.TensorDataset(*tensors), None


def get_batch(dataset, indices: list[int]) -> tuple[torch.Tensor, ...]:
    """One batch as the DataLoader would build it, without the DataLoader."""
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(indices)
    idx = torch.as_tensor(indices)
    return tuple(t[idx] for t in dataset.tensors)


def plain_epoch(dataset, sampler: Iterable[list[int]], hp: dict, pos_weight: float, seed: int) -> tuple[Timing, int]:
    """Wall and CPU seconds and samples for one epoch of the minimal loop: forward, BCE, backward, AdamW step."""
    torch.manual_seed(seed)
    net = LoanNet(**LoanDefaultModule(**hp).net.config()).train()  # the very network the module trains
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
    optimizer = torch.optim.AdamW(net.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    samples = 0
    start = clock()
    for indices in sampler:
        x_num, x_cat, y = get_batch(dataset, indices)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x_num, x_cat).squeeze(1), y)
        loss.backward()
        optimizer.step()
        samples += len(indices)
    return elapsed(start), samples


class EpochTimer(L.Callback):
    """Wall and CPU time from the first training batch's start to the last one's end."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.start = clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds = elapsed(self.start)


def lightning_epoch(dataset, collate, sampler: Sampler, hp: dict, seed: int) -> tuple[Timing, Timing, dict]:
    """Wall and CPU seconds for ``trainer.fit`` and for the epoch's batches alone, plus the logged metrics."""
    torch.manual_seed(seed)
    module = LoanDefaultModule(**hp)
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    start = clock()
    trainer.fit(module, loader)
    fit_seconds = elapsed(start)
    return fit_seconds, timer.seconds, {k: float(v) for k, v in trainer.callback_metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--numeric", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads for both sides (0: torch's default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="ann_small", help="conf/model/<name>.yaml")
    parser.add_argument("--quick", action="store_true", help="30k rows, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 30_000, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    tensors = make_data(args.rows, args.numeric, args.seed)
    dataset, collate = fetch(tensors)
    pos_weight = 1.0  # the balanced sampler already evens out the classes
    # The module exactly as train.py builds it from conf/model/<--model>.yaml (sizes of this synthetic data).
    hp = model_settings(args.model) | dict(
        n_numeric=args.numeric, cat_cardinalities=CARDINALITIES, pos_weight=pos_weight, val_smoothing=0.0
    )
    sampler_name = "BalancedBatchSampler" if BalancedBatchSampler is not None else "BatchSampler(shuffle) [fallback]"

    runs: dict[str, list[Timing]] = {"plain PyTorch loop": [], "Lightning fit()": [], "Lightning epoch only": []}
    samples = 0
    for rep in progress(range(args.repeats + 1), desc="repeats"):  # repeat 0 warms caches and is discarded
        sampler = make_sampler(tensors[2], args.batch_size, args.seed)
        plain_s, samples = plain_epoch(dataset, sampler, hp, pos_weight, args.seed)
        sampler = make_sampler(tensors[2], args.batch_size, args.seed)
        fit_s, epoch_s, metrics = lightning_epoch(dataset, collate, sampler, hp, args.seed)
        if rep:
            for name, timing in zip(runs, (plain_s, fit_s, epoch_s), strict=True):
                runs[name].append(timing)

    # samples/s from the median wall and the median CPU seconds of each kind of run
    rates = {name: [samples / statistics.median(t[k] for t in times) for k in (0, 1)] for name, times in runs.items()}
    base_wall, base_cpu = rates["plain PyTorch loop"]
    print(
        f"rows={args.rows} numeric={args.numeric} categorical={len(CARDINALITIES)} batch={args.batch_size} "
        f"samples/epoch={samples} sampler={sampler_name} dataset={type(dataset).__name__} "
        f"threads={torch.get_num_threads()} repeats={args.repeats}"
    )
    print(f"{'run':<22}{'wall samples/s':>16}{'ratio':>8}{'CPU samples/s':>16}{'ratio':>8}")
    for name, (wall, cpu) in rates.items():
        print(f"{name:<22}{wall:>16.0f}{wall / base_wall:>8.2f}{cpu:>16.0f}{cpu / base_cpu:>8.2f}")
    print("last Lightning run metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    fit_wall, fit_cpu = rates["Lightning fit()"]
    epoch_wall, epoch_cpu = rates["Lightning epoch only"]
    print(
        json.dumps(
            {
                "rows": args.rows,
                "batch_size": args.batch_size,
                "samples_per_epoch": samples,
                "sampler": sampler_name,
                "threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "plain_samples_per_s": round(base_wall),
                "lightning_samples_per_s": round(fit_wall),
                "fraction_of_plain_loop": round(fit_wall / base_wall, 3),
                "fraction_of_plain_loop_cpu_time": round(fit_cpu / base_cpu, 3),
                "fraction_of_plain_loop_epoch_only": round(epoch_wall / base_wall, 3),
                "fraction_of_plain_loop_epoch_only_cpu_time": round(epoch_cpu / base_cpu, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
