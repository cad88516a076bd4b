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

Device mode (``--device cuda``, or ``--device cpu`` to try it here): the GPU path of issue 14 on synthetic loans from
the generator (``--loans``, default 1,000,000). It runs train.py's ``train(cfg)`` twice on the same data (SUOD,
SHAP, baselines and plots off): once with the schedule's automatic batch size for the device (large on a GPU, with the
learning rate scaled), once pinned to batch 1024, and reports both test ROC-AUCs (``auroc``, ``auroc_batch1024``).
Then it times whole training epochs of Lightning (the module and the datamodule's resident batches, as train.py
builds them) against a plain PyTorch loop over the same device-resident tensors and the same device-drawn balanced
batches (forward, weighted BCE, backward, fused AdamW step); each epoch is timed between device synchronisations and
the first epoch (warm-up) is discarded. Extra Hydra overrides for every run go after ``--``.

    python bench/train_step.py --device cuda                      # the H200 check: 1M loans
    .venv/bin/python bench/train_step.py --device cpu --loans 20000 --epochs 3 -- data.resident=true
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import statistics
import sys
import tempfile
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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def quality_run(work: Path, name: str, overrides: list[str]) -> tuple[dict, dict]:
    """One train(cfg); its test ROC-AUC, schedule, best epoch and wall time, and train's objects."""
    from model_quality import compose_cfg  # bench/ is on the path when a bench script runs

    from loan_default.training.train import train

    start = time.perf_counter()
    shutil.rmtree(work / "runs" / name, ignore_errors=True)  # a rerun's checkpoints would be renamed *-v1
    metrics, objects = train(compose_cfg(work, work / "runs" / name, overrides))
    best = re.search(r"epoch_(\d+)", objects["trainer"].checkpoint_callback.best_model_path or "")
    result = {
        "auroc": round(float(metrics["test/auroc"]), 5),
        "seconds": round(time.perf_counter() - start, 1),
        "best_epoch": int(best.group(1)) if best else None,
        "epochs": int(objects["trainer"].current_epoch),
        "lr": float(objects["model"].hparams.lr),
        **objects["schedule"].as_dict(),
    }
    print(f"{name}: {json.dumps(result)}", flush=True)
    return result, objects


class EpochClock(L.Callback):
    """Seconds between consecutive epoch starts (the last epoch ends at train end), timed between syncs."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def _mark(self, trainer) -> None:
        synchronize(trainer.strategy.root_device)
        self.marks.append(time.perf_counter())

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._mark(trainer)

    def epochs(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def plain_resident_epochs(net: nn.Module, tensors, sampler, pos_weight: float, epochs: int, device) -> list[float]:
    """Seconds per epoch of the minimal loop over device-resident tensors and device-drawn batch indices."""
    net.train()
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-3, **fused)
    x_num, x_cat, y = tensors
    seconds = []
    for _ in range(epochs):
        synchronize(device)
        start = time.perf_counter()
        for idx in sampler:
            optimizer.zero_grad(set_to_none=True)
            logits = net(x_num.index_select(0, idx), x_cat.index_select(0, idx)).squeeze(1)
            loss_fn(logits, y.index_select(0, idx)).backward()
            optimizer.step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def device_main(args: argparse.Namespace, extra: list[str]) -> None:
    """The device mode (module docstring)."""
    from hydra.utils import instantiate

    from loan_default.training.imbalance import loss_pos_weight
    from loan_default.training.resident import ResidentBatches
    from loan_default.training.sampler import DeviceBalancedSampler

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    work = Path(args.work or tempfile.mkdtemp(prefix="train_step_"))
    trainer = "gpu" if device.type == "cuda" else "cpu"
    base = [
        f"paths.root_dir={work}", f"data.synthetic.loans={args.loans}", f"trainer={trainer}", "outlier=none",
        "logger=csv", "evaluation.baselines=false", "evaluation.shap=false", "evaluation.plots=false",
        f"seed={args.seed}", *extra,
    ]  # fmt: skip
    auto, objects = quality_run(work, "auto", base)

    # Speed: the same tensors, the same batch size and the same kind of balanced batches for both loops.
    dm, cfg = objects["datamodule"], objects["cfg"]
    tensors = dm._resident_tensors("train", device)
    pos_weight = loss_pos_weight(cfg.model.get("pos_weight"), dm.batch_pos_fraction) or 1.0

    def build_module():
        torch.manual_seed(args.seed)
        return instantiate(cfg.model, n_numeric=dm.n_numeric, cat_cardinalities=dm.cat_cardinalities,
                           pos_weight=pos_weight, val_smoothing=0.0, lr=auto["lr"], _convert_="all")  # fmt: skip

    def speed(size: int, repeats: int, epochs: int) -> tuple[float, float, int]:
        """Median samples/s of the plain loop and of Lightning at this batch size, and samples per epoch."""

        def sampler() -> DeviceBalancedSampler:
            return DeviceBalancedSampler(tensors[2].cpu().numpy(), size, pos_fraction=dm.batch_pos_fraction,
                                         seed=args.seed, device=device)  # fmt: skip

        full, last = sampler().epoch_plan(0)
        samples = full.numel() + last.numel()
        rates: dict[str, list[float]] = {"plain": [], "lightning": []}
        for _ in progress(range(repeats), desc=f"speed repeats, batch {size}"):
            net = build_module().net.to(device)
            plain = plain_resident_epochs(net, tensors, sampler(), pos_weight, epochs, device)
            rates["plain"].append(samples / statistics.median(plain[1:]))
            clock = EpochClock()
            fit = L.Trainer(
                accelerator=trainer, devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                gradient_clip_val=cfg.trainer.get("gradient_clip_val"), callbacks=[clock],
            )  # fmt: skip
            plan = sampler()
            fit.fit(build_module(), train_dataloaders=ResidentBatches(tensors, plan, len(plan)))
            rates["lightning"].append(samples / statistics.median(clock.epochs()[1:]))
        return statistics.median(rates["plain"]), statistics.median(rates["lightning"]), samples

    # In order of importance (a time limit may cut the run short): speed at the automatic batch, the batch-1024
    # quality reference, then the extra quality variants and batch sizes.
    size = auto["batch_size"]
    plain, lightning, samples = speed(size, args.repeats, args.epochs)
    print(f"speed at batch {size}: plain {plain:.0f}, lightning {lightning:.0f} samples/s", flush=True)
    pinned, _ = (
        (auto, None) if auto["batch_size"] == 1024 else quality_run(work, "batch1024", [*base, "data.batch_size=1024"])
    )
    variants = {}
    for i, overrides in enumerate(args.variant or []):  # extra quality runs for the decision record
        variants[overrides], _ = quality_run(work, f"variant{i}", [*base, *overrides.split()])
    by_batch = {}
    for other in args.speed_batches or []:  # a quick look: one repeat, two timed epochs
        p, lt, _ = speed(other, 1, 3)
        by_batch[other] = {"plain": round(p), "lightning": round(lt), "fraction": round(lt / p, 3)}
        print(f"batch {other}: {json.dumps(by_batch[other])}", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    goals = {
        "auroc_within_0.002_of_batch1024": auto["auroc"] >= pinned["auroc"] - 0.002,
        "fraction_of_plain_loop_ge_0.7": lightning / plain >= 0.7,
    }
    if device.type == "cuda":
        goals["samples_per_s_ge_10M"] = lightning >= 10_000_000
    print(f"device={name} loans={args.loans} batch={size} samples/epoch={samples} epochs={args.epochs} "
          f"repeats={args.repeats}")  # fmt: skip
    print(f"{'run':<34}{'samples/s':>14}{'ratio':>8}")
    print(f"{'plain PyTorch loop (resident)':<34}{plain:>14.0f}{1.0:>8.2f}")
    print(f"{'Lightning (train.py module+data)':<34}{lightning:>14.0f}{lightning / plain:>8.2f}")
    print(json.dumps({
        "device": name, "loans": args.loans, "batch_size": size, "samples_per_epoch": samples,
        "samples_per_s": round(lightning), "plain_resident_samples_per_s": round(plain),
        "fraction_of_plain_loop": round(lightning / plain, 3), "auroc": auto["auroc"],
        "auroc_batch1024": pinned["auroc"], "auto_run": auto, "batch1024_run": pinned, "variants": variants,
        "speed_by_batch": by_batch, "goals": goals,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--numeric", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5; device mode 3)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads for both sides (0: torch's default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="ann_small", help="conf/model/<name>.yaml")
    parser.add_argument("--quick", action="store_true", help="30k rows, 3 repeats")
    parser.add_argument("--device", help="device mode on this torch device (cuda, cpu): see the module docstring")
    parser.add_argument("--loans", type=int, default=1_000_000, help="device mode: synthetic loans")
    parser.add_argument("--epochs", type=int, default=6, help="device mode: epochs per speed run (first discarded)")
    parser.add_argument("--work", help="device mode: working folder (data, cache, runs); default a temporary one")
    parser.add_argument("--variant", action="append", help="device mode: an extra quality run's overrides ('a=1 b=2')")
    parser.add_argument("--speed-batches", type=int, nargs="*", help="device mode: more batch sizes to time")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.device:
        logging.getLogger("lightning").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")
        args.repeats = args.repeats or 3
        device_main(args, extra)
        return
    args.repeats = args.repeats or 5
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
