"""Balanced batch sampler: every batch holds a fixed share of (rare) defaults.

Positives are drawn with replacement, negatives without, so one pass visits every negative exactly once. The whole
pass's index plan is generated at once with numpy and then yielded one batch at a time. By default an epoch is one
pass; with ``batches_per_epoch`` an epoch is that many batches and the next epoch continues the same pass where the
last one stopped (so on a large table validation, checkpoints and early stopping happen every so many samples, and
every negative is still visited once per pass).

Use it as ``DataLoader(dataset, batch_sampler=BalancedBatchSampler(...))``. Under Lightning:

* Lightning never calls ``set_epoch`` on a batch sampler, so the sampler keeps its own epoch counter that advances each
  time an iteration takes its first batch; ``set_epoch(e)`` overrides it (e.g. from a callback, so a resumed run
  continues on the right epoch instead of restarting at 0).
* Under DDP the sampler shards by rank itself: build the Trainer with ``use_distributed_sampler=False``, or Lightning
  tries to rebuild the batch sampler around a ``DistributedSampler`` (and fails, it takes labels, not a sampler).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

# Separate random streams per epoch: stream 0 shuffles negatives (shared by all ranks, so their slices stay
# disjoint); stream 1 + rank draws that rank's positives.
_NEGATIVE_STREAM = 0


def _as_label_array(labels: Any) -> np.ndarray:
    """Labels as a 1-D boolean numpy array (True = default); only 0/1 values are accepted."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("labels must contain only 0 (no default) and 1 (default)")
    return arr.astype(bool)


def _default_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Fill unset world size / rank from torch.distributed when it is initialised, else 1 / 0."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if num_replicas is None:
        num_replicas = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    return num_replicas, rank


def _check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, or a clear error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _resolve_fraction(pos_fraction: float | None, pos_to_neg_ratio: float | None) -> float:
    """The positive share implied by whichever of the two arguments is set (0.5 when neither is)."""
    if pos_fraction is not None and pos_to_neg_ratio is not None:
        raise ValueError("set either pos_fraction or pos_to_neg_ratio, not both")
    if pos_to_neg_ratio is not None:
        if not (math.isfinite(pos_to_neg_ratio) and pos_to_neg_ratio > 0):
            raise ValueError(f"pos_to_neg_ratio must be a finite number > 0, got {pos_to_neg_ratio}")
        return pos_to_neg_ratio / (1.0 + pos_to_neg_ratio)
    fraction = 0.5 if pos_fraction is None else pos_fraction
    if not (0.0 < fraction < 1.0):
        raise ValueError(f"pos_fraction must lie strictly between 0 and 1, got {fraction}")
    return fraction


class BalancedBatchSampler(Sampler[list[int]]):
    """Yields lists of row indices in which a fixed share of the rows are positives (defaults).

    Args:
        labels: 1-D 0/1 labels of the whole dataset (numpy, tensor or list); 1 = default.
        batch_size: rows per full batch.
        pos_fraction: share of positives per batch, in (0, 1). Default 0.5 when ``pos_to_neg_ratio`` is unset.
        pos_to_neg_ratio: alternatively, positives per negative (e.g. 1/3 gives 25% positives).
        drop_last: drop each rank's trailing incomplete batch instead of yielding a smaller one.
        batches_per_epoch: end an epoch after this many batches and continue the pass in the next epoch; ``None``
            (default) or a number >= the pass length makes an epoch one whole pass.
        seed: non-negative seed; batches are a pure function of (seed, epoch, rank, num_replicas).
        num_replicas, rank: DDP world size and this process's rank; default from ``torch.distributed`` if initialised,
            else 1 and 0.

    A full batch holds exactly ``n_pos`` positives followed by ``n_neg`` negatives (positives first: the order within
    a batch does not matter to a per-row loss). The last, smaller batch keeps the same positive:negative ratio
    (rounded, at least one positive).
    """

    def __init__(
        self,
        labels: Any,
        batch_size: int,
        pos_fraction: float | None = None,
        pos_to_neg_ratio: float | None = None,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        batches_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        is_pos = _as_label_array(labels)
        self.batch_size = _check_int("batch_size", batch_size, 2)
        self.seed = _check_int("seed", seed, 0)
        num_replicas, rank = _default_replicas(num_replicas, rank)
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must be < num_replicas ({self.num_replicas}), got {self.rank}")
        self.drop_last = bool(drop_last)

        self._pos = np.flatnonzero(is_pos)
        self._neg = np.flatnonzero(~is_pos)
        if self._pos.size == 0:
            raise ValueError("labels hold no positives: a balanced batch needs at least one default")
        if self._neg.size < self.num_replicas:
            raise ValueError(f"labels hold {self._neg.size} negatives, fewer than num_replicas={self.num_replicas}")

        fraction = _resolve_fraction(pos_fraction, pos_to_neg_ratio)
        self.n_pos = round(self.batch_size * fraction)
        self.n_neg = self.batch_size - self.n_pos
        if self.n_pos < 1 or self.n_neg < 1:
            raise ValueError(
                f"batch_size={self.batch_size} is too small to hold at least one positive and one negative "
                f"at a positive share of {fraction:.4g}"
            )
        # Negatives each rank visits per epoch. Without drop_last every rank pads to the largest slice by wrapping
        # its own slice (so ranks stay disjoint); with it every rank truncates to the smallest.
        if self.drop_last:
            per_rank = self._neg.size // self.num_replicas
            self._negs_per_rank = per_rank // self.n_neg * self.n_neg
            if self._negs_per_rank == 0:
                raise ValueError(
                    f"drop_last=True leaves no full batch: {per_rank} negatives per rank, {self.n_neg} per batch"
                )
        else:
            self._negs_per_rank = math.ceil(self._neg.size / self.num_replicas)
        self.epoch = 0
        self.batches_per_pass = math.ceil(self._negs_per_rank / self.n_neg)
        if batches_per_epoch is not None:
            batches_per_epoch = min(_check_int("batches_per_epoch", batches_per_epoch, 1), self.batches_per_pass)
        self.batches_per_epoch = batches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use this epoch (later iterations continue from it)."""
        self.epoch = _check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        return self.batches_per_epoch or self.batches_per_pass

    def __iter__(self) -> Iterator[list[int]]:
        for row in self._rows():
            yield row.tolist()

    def _rows(self) -> Iterator:
        """This epoch's batches as rows of the pass plans (numpy arrays here, device tensors in the subclass)."""
        # A generator on purpose: the epoch advances when the first batch is taken, not when iter() is called, because
        # a multi-worker DataLoader calls iter() twice per epoch and discards the first iterator unused.
        epoch = self.epoch
        self.epoch += 1
        if self.batches_per_epoch is None:
            full, last = self.epoch_plan(epoch)
            yield from full  # one row (batch) at a time, as needed
            if len(last):
                yield last
            return
        # Epoch e covers batches [e * k, (e + 1) * k) of the endless sequence pass 0, pass 1, ...
        position = epoch * self.batches_per_epoch
        remaining = self.batches_per_epoch
        while remaining:
            pass_index, offset = divmod(position, self.batches_per_pass)
            full, last = self.epoch_plan(pass_index)
            rows = [*full, last] if len(last) else list(full)
            for row in rows[offset : offset + remaining]:
                yield row
                position += 1
                remaining -= 1

    def _seed_sequence(self, epoch: int, stream: int) -> np.random.SeedSequence:
        return np.random.SeedSequence(entropy=[self.seed, epoch], spawn_key=(stream,))

    def _rng(self, epoch: int, stream: int) -> np.random.Generator:
        return np.random.default_rng(self._seed_sequence(epoch, stream))

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's index plan for pass ``epoch`` (an epoch, unless ``batches_per_epoch`` is set): full batches as an (n, batch_size) array, plus the last partial
        batch (empty when there is none). Does not touch the epoch counter."""
        shuffled = self._neg[self._rng(epoch, _NEGATIVE_STREAM).permutation(self._neg.size)]
        mine = shuffled[self.rank :: self.num_replicas]
        # np.resize repeats the slice cyclically: pads short ranks by wrapping, truncates under drop_last.
        mine = np.resize(mine, self._negs_per_rank)

        n_full, rest = divmod(mine.size, self.n_neg)
        pos_in_last = max(1, round(rest * self.n_pos / self.n_neg)) if rest else 0
        n_pos_total = n_full * self.n_pos + pos_in_last
        draws = self._rng(epoch, 1 + self.rank).integers(0, self._pos.size, size=n_pos_total)
        pos = self._pos[draws]

        full = np.empty((n_full, self.batch_size), dtype=np.int64)
        full[:, : self.n_pos] = pos[: n_full * self.n_pos].reshape(n_full, self.n_pos)
        full[:, self.n_pos :] = mine[: n_full * self.n_neg].reshape(n_full, self.n_neg)
        last = np.concatenate([pos[n_full * self.n_pos :], mine[n_full * self.n_neg :]]).astype(np.int64)
        return full, last


class DeviceBalancedSampler(BalancedBatchSampler):
    """`BalancedBatchSampler` whose index plan is drawn on ``device`` with torch, for tensors resident there.

    Same arguments (plus ``device``), same guarantees: ``n_pos`` positives then ``n_neg`` negatives per full batch,
    every negative of this rank's slice once per pass, disjoint slices across ranks, reseeded per pass, and batches a
    pure function of (seed, epoch, rank, num_replicas) on a given device type. The draws come from torch's generator
    on that device, not numpy's, so the batches differ from `BalancedBatchSampler`'s. Iterating yields int64 index
    tensors on ``device`` (views into the pass plan): no host round trip, no Python work per row.
    """

    def __init__(self, *args: Any, device: torch.device | str = "cpu", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.device = torch.device(device)
        self._pos_t = torch.from_numpy(self._pos).to(self.device)
        self._neg_t = torch.from_numpy(self._neg).to(self.device)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self._rows()

    def _generator(self, epoch: int, stream: int) -> torch.Generator:
        # A 63-bit seed from the same seed sequence the numpy plan uses, so each (seed, pass, stream) is independent.
        state = self._seed_sequence(epoch, stream).generate_state(2, dtype=np.uint32)
        seed = (int(state[0]) << 31) ^ int(state[1])
        return torch.Generator(device=self.device).manual_seed(seed)

    def epoch_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """As `BalancedBatchSampler.epoch_plan`, with torch tensors on ``device``."""
        n = self._neg_t.numel()
        order = torch.randperm(n, generator=self._generator(epoch, _NEGATIVE_STREAM), device=self.device)
        mine = self._neg_t[order][self.rank :: self.num_replicas]
        # Cyclic repeat to the per-rank length (pads short ranks by wrapping, truncates under drop_last).
        mine = mine[torch.arange(self._negs_per_rank, device=self.device) % mine.numel()]

        n_full, rest = divmod(self._negs_per_rank, self.n_neg)
        pos_in_last = max(1, round(rest * self.n_pos / self.n_neg)) if rest else 0
        n_pos_total = n_full * self.n_pos + pos_in_last
        draws = torch.randint(
            0, self._pos_t.numel(), (n_pos_total,), generator=self._generator(epoch, 1 + self.rank), device=self.device
        )
        pos = self._pos_t[draws]

        full = torch.empty((n_full, self.batch_size), dtype=torch.int64, device=self.device)
        full[:, : self.n_pos] = pos[: n_full * self.n_pos].view(n_full, self.n_pos)
        full[:, self.n_pos :] = mine[: n_full * self.n_neg].view(n_full, self.n_neg)
        last = torch.cat([pos[n_full * self.n_pos :], mine[n_full * self.n_neg :]])
        return full, last
