"""DDP ranks that each hold a shard of the training rows (issue 13 item 4).

Every rank splits the table the same way, then keeps only its own stratified share of the (outlier-filtered) training
rows: defaults and non-defaults are each shuffled with the run's seed and dealt to the ranks in turn, so the shards are
disjoint, cover every row, hold sizes (and default counts) that differ by at most one, and every rank computes every
rank's shard without talking to the others. Validation and test rows are not sharded: each rank holds them whole, so
the validation metrics (and early stopping) are the same on every rank without relying on equal per-rank batch counts.

Batches follow Lightning's convention: the batch size is per rank (the schedule's, planned from the GLOBAL training
counts), so an optimizer step sees ``world_size`` times as many rows; the schedule is re-planned for that effective
batch (`rank_schedule`), which keeps the samples per epoch, scales the learning rate by the schedule's rule and counts
``min_steps`` / ``patience_steps`` / warm-up in the optimizer steps the ranks actually take. Each rank's balanced
sampler draws from its own shard only (``num_replicas=1``, a rank-dependent seed) with an explicit ``batches_per_epoch``
that is the same on every rank: a rank with one batch fewer per pass would otherwise leave the others waiting at the
gradient all-reduce.

The world (rank, world size) is known before the Trainer exists: from the launcher's environment in a process that a
launcher started (Lightning's re-launched ranks, torchrun, Azure ML), else from the trainer settings in the process
that will launch the others (`distributed_world`); `check_world` compares it with the Trainer's once that exists.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from loan_default.training.schedule import Schedule

log = logging.getLogger(__name__)

_SHARD_STREAM = 0x5A4D  # the shard shuffle's own random stream, apart from the split's and the samplers'


def distributed_world(trainer: Mapping[str, Any]) -> dict[str, int]:
    """``{"rank", "world_size"}`` this process will have under these trainer settings (``{0, 1}`` without DDP)."""
    strategy = trainer.get("strategy") or "auto"
    if not isinstance(strategy, str) or "ddp" not in strategy.lower():
        return {"rank": 0, "world_size": 1}
    env = os.environ
    num_nodes = int(trainer.get("num_nodes") or 1)
    if "WORLD_SIZE" in env:  # a launcher started this process (Lightning's re-launch, torchrun, Azure ML)
        world = int(env["WORLD_SIZE"])
        if "RANK" in env:
            rank = int(env["RANK"])
        else:  # Lightning's re-launched ranks get LOCAL_RANK and NODE_RANK only
            node = int(env.get("NODE_RANK", env.get("GROUP_RANK", 0)))
            rank = node * (world // num_nodes) + int(env.get("LOCAL_RANK", 0))
    else:  # the process that launches the others: local rank 0 of its node
        per_node = _device_count(trainer.get("devices", 1), trainer.get("accelerator"))
        world = per_node * num_nodes
        rank = int(env.get("NODE_RANK", env.get("GROUP_RANK", 0))) * per_node
    if not 0 <= rank < world:
        raise ValueError(f"DDP: rank {rank} outside a world of {world} processes (environment or trainer settings)")
    return {"rank": rank, "world_size": world}


def _device_count(devices: Any, accelerator: Any) -> int:
    """Processes per node Lightning starts for ``trainer.devices`` (an int, a list of ids, "0,1", -1 or "auto")."""
    if isinstance(devices, Sequence) and not isinstance(devices, str):  # a list of device ids (or a ListConfig)
        return len(devices)
    if isinstance(devices, str) and devices.strip() not in ("auto", "-1"):
        text = devices.strip()
        return len([d for d in text.split(",") if d.strip()]) if "," in text else int(text)
    if devices in ("auto", -1, "-1"):
        if str(accelerator or "auto").lower() in ("gpu", "cuda", "auto") and torch.cuda.is_available():
            return torch.cuda.device_count()
        return 1 if devices == "auto" else os.cpu_count() or 1  # Lightning: cpu "auto" = 1, -1 = every core
    return int(devices)


def check_world(rank: int, world_size: int, trainer: Any) -> None:
    """Fail clearly when the Trainer's ranks differ from those the data was sharded for."""
    if trainer is None or world_size == 1:
        return
    if (trainer.global_rank, trainer.world_size) != (rank, world_size):
        raise RuntimeError(
            f"the training rows were sharded for rank {rank} of {world_size} processes, but the Trainer runs rank "
            f"{trainer.global_rank} of {trainer.world_size}: set trainer.devices / trainer.num_nodes to what the "
            f"launcher starts"
        )


def deal(labels: np.ndarray, world_size: int, seed: int) -> np.ndarray:
    """The rank (0..world_size-1) each row goes to: defaults, then non-defaults, shuffled and dealt in turn."""
    labels = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SHARD_STREAM]))
    order = np.concatenate([rng.permutation(np.flatnonzero(labels)), rng.permutation(np.flatnonzero(~labels))])
    owner = np.empty(labels.size, dtype=np.int64)
    owner[order] = np.arange(labels.size) % world_size  # one sequence: per-class and total counts differ by <= 1
    return owner


def shard_rows(rows: np.ndarray, labels: np.ndarray, rank: int, world_size: int, seed: int) -> np.ndarray:
    """This rank's share of ``rows`` (positions, with their 0/1 ``labels``), sorted; all of them when world_size is 1."""
    if world_size == 1:
        return rows
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    mine = deal(labels, world_size, seed) == rank
    log.info(
        "DDP shard: rank %d of %d holds %d of %d training rows (%d of %d defaults)",
        rank, world_size, int(mine.sum()), len(rows), int(np.asarray(labels)[mine].sum()), int(np.sum(labels)),
    )  # fmt: skip
    return np.sort(np.asarray(rows)[mine])


def shard_counts(labels: np.ndarray, world_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, defaults) of every rank's shard, each an array of length world_size."""
    owner = deal(labels, world_size, seed)
    rows = np.bincount(owner, minlength=world_size)
    defaults = np.bincount(owner, weights=np.asarray(labels).astype(bool), minlength=world_size).astype(np.int64)
    return rows, defaults


def rank_schedule(labels: np.ndarray, world_size: int, seed: int, plan: Callable[..., Schedule]) -> Schedule:
    """The schedule of each rank, the same on every rank (see the module docstring); a single process's as before.

    ``labels``: the global (outlier-filtered) training labels; ``plan(n_rows, n_pos, batch_size=None)``: the
    `plan_schedule` of the run for those counts (``batch_size`` None = as configured)."""
    labels = np.asarray(labels).astype(bool)
    single = plan(labels.size, int(labels.sum()))  # from the global counts: its batch size is the per-rank one
    if world_size == 1:
        return single
    size = single.batch_size
    # The same rules for the effective batch (world_size x size rows a step): samples per epoch kept, learning-rate
    # scale and warm-up for that batch, min_steps and patience_steps counted in the steps each rank takes.
    step = plan(labels.size, int(labels.sum()), batch_size=size * world_size)
    # A pass over its own shard on each rank; the shortest sets the common epoch length, so that no rank runs out.
    rows, defaults = shard_counts(labels, world_size, seed)
    if defaults.min() == 0:
        raise ValueError(
            f"the training split holds {int(defaults.sum())} defaults, too few for each of {world_size} ranks to get one"
        )
    per_pass = min(plan(int(n), int(k), batch_size=size).batches_per_pass for n, k in zip(rows, defaults, strict=True))
    per_epoch = min(step.batches_per_epoch or step.batches_per_pass, per_pass)
    return replace(step, batch_size=size, batches_per_epoch=per_epoch, batches_per_pass=per_pass)


def rank_seed(seed: int, rank: int) -> int:
    """An independent sampler seed per rank (rank 0 of a single process keeps ``seed``)."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), _SHARD_STREAM, int(rank)]).generate_state(1)[0])


def sampler_ranks(seed: int, rank: int, world_size: int) -> dict[str, int]:
    """The balanced sampler's seed and replicas: a sharded rank samples its own shard as if alone."""
    if world_size == 1:
        return {"seed": int(seed)}  # unchanged: num_replicas / rank from torch.distributed, as before
    return {"seed": rank_seed(seed, rank), "num_replicas": 1, "rank": 0}
