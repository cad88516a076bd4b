"""Batches gathered from tensors that live on the training device: no DataLoader, no host-to-device copies.

On a GPU the network is so small (~110,000 floating-point operations per sample) that per-batch Python, the sampler's
host-side index lists and the copy of every batch to the device set the speed, not arithmetic (issue 14). The whole
loan table fits on one GPU many times over, so each split is copied there once and a batch is one ``index_select``
per tensor with indices that are themselves on the device (`DeviceBalancedSampler` for training); evaluation batches
are contiguous slices (views, nothing copied).

Lightning accepts any sized iterable as a dataloader: it moves each batch to the device (a no-op here) and calls
``len()`` for the number of batches. ``dataset.tensors`` mirrors `TensorBatchDataset`, which the module reads to
place the numeric knots and fit the wide path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from types import SimpleNamespace

import torch

from loan_default.training.packed import as_tensor


def eval_batch_rows(device: torch.device | None) -> int:
    """Rows per evaluation or prediction batch on ``device`` (None: the CPU). On an accelerator a batch costs about the
    same at any size up to tens of thousands of rows; on the CPU larger batches score no faster, and the knots'
    lookups hold ~8 float64/int64 copies of a batch (65,536 rows were ~270 MB of temporaries)."""
    return 8192 if device is None or torch.device(device).type == "cpu" else 65536


def to_device(arrays: Sequence, device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """Numpy arrays, tensors or `PackedNumeric` (unpacked on the way: a device has room for the dense matrix) as
    tensors on ``device``, copied once."""
    return tuple(as_tensor(a, device) for a in arrays)


class ResidentBatches:
    """Sized iterable of batches ``tuple(t[idx] for t in tensors)`` for each index tensor the ``plan`` yields.

    ``plan`` is re-iterated every epoch (a `DeviceBalancedSampler`, or `ContiguousPlan` for evaluation); ``length`` is
    its number of batches per epoch.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], plan: Iterable[torch.Tensor | slice], length: int) -> None:
        if not tensors:
            raise ValueError("ResidentBatches needs at least one tensor")
        n, device = tensors[0].shape[0], tensors[0].device
        if any(t.shape[0] != n or t.device != device for t in tensors):
            shapes = [(tuple(t.shape), str(t.device)) for t in tensors]
            raise ValueError(f"all tensors need the same first dimension and device, got {shapes}")
        self.tensors = tuple(tensors)
        self.dataset = SimpleNamespace(tensors=self.tensors)  # what `TensorBatchDataset` users read
        self.plan = plan
        self.length = int(length)

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for idx in self.plan:
            if isinstance(idx, slice):  # consecutive rows: views, nothing copied
                yield tuple(t[idx] for t in self.tensors)
            else:
                yield tuple(t.index_select(0, idx) for t in self.tensors)


class ContiguousPlan:
    """Slices of consecutive rows ``[0, b), [b, 2b), ...``: evaluation order, every row once."""

    def __init__(self, n_rows: int, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n_rows, self.batch_size = int(n_rows), int(batch_size)

    def __len__(self) -> int:
        return math.ceil(self.n_rows / self.batch_size)

    def __iter__(self) -> Iterator[slice]:
        for start in range(0, self.n_rows, self.batch_size):
            yield slice(start, min(start + self.batch_size, self.n_rows))


def eval_batches(tensors: Sequence[torch.Tensor], batch_size: int) -> ResidentBatches:
    """Every row once, in order, ``batch_size`` rows at a time."""
    plan = ContiguousPlan(tensors[0].shape[0], batch_size)
    return ResidentBatches(tensors, plan, len(plan))


class ShufflePlan:
    """Plain shuffling on ``device`` (``sampler.name`` other than balanced): a fresh permutation each epoch, cut into
    full batches (a one-row last batch would break BatchNorm), ``batches_per_epoch`` of them when set."""

    def __init__(
        self, n_rows: int, batch_size: int, batches_per_epoch: int | None, seed: int, device: torch.device | str
    ) -> None:
        if n_rows < batch_size:
            raise ValueError(f"{n_rows} training rows cannot fill one batch of {batch_size}")
        self.n_rows, self.batch_size, self.seed = int(n_rows), int(batch_size), int(seed)
        self.per_epoch = min(batches_per_epoch or n_rows // batch_size, n_rows // batch_size)
        self.device = torch.device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use this epoch's permutation (a resumed run continues the sequence)."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self) -> Iterator[torch.Tensor]:
        generator = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(self.n_rows, generator=generator, device=self.device)
        return iter(order[: self.per_epoch * self.batch_size].view(self.per_epoch, self.batch_size))
