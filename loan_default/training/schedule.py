"""The training schedule that follows the data: batch size, epoch length, run length, early-stopping patience and
validation smoothing from the size of the training split and its number of defaults.

One `python train.py` has to be right for 2,000 loans and for 1,000,000. Fixed settings tuned at 100,000 loans fail at
both ends: on ~1,400 training rows a batch of 1024 gives a handful of optimizer steps per run; on 700,000 rows one
"epoch" is ten times the whole default run, so validation, checkpointing and early stopping come far too late (the
best epoch was the first). So the schedule counts optimizer steps and samples, not passes over the data:

* ``batch_size``: the largest power of two <= ``max_batch_size`` that still gives ``min_steps_per_epoch`` batches per
  pass over the data; never below ``min_batch_size``.
* ``batches_per_epoch``: an epoch ends after ``epoch_samples`` samples (rounded up to whole batches) or one pass,
  whichever comes first; the next epoch continues the pass (`BalancedBatchSampler`).
* ``max_epochs``: at least ``min_epochs``, and enough epochs for ``min_steps`` optimizer steps.
* ``patience``: early stopping waits at least ``min_patience`` epochs and at least ``patience_steps`` optimizer steps.
* ``val_smoothing``: the weight of the past in an exponential average of validation ROC-AUC, ``k / (k + d)`` for
  ``d`` validation defaults and ``k = smoothing_defaults``: with few defaults one epoch's ROC-AUC is mostly noise
  (its standard deviation is ~0.05 at 20 defaults), with thousands it is exact and the average follows it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Schedule:
    """What the schedule chose (plain values, logged and reported)."""

    batch_size: int
    batches_per_epoch: int | None  # None: an epoch is one pass
    batches_per_pass: int
    max_epochs: int
    patience: int
    val_smoothing: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def batches_per_pass(n_rows: int, n_pos: int, batch_size: int, pos_fraction: float | None, balanced: bool) -> int:
    """Batches in one pass: over the negatives for the balanced sampler, over all rows (drop_last) when shuffling."""
    if not balanced:
        return max(1, n_rows // batch_size)
    n_neg_batch = batch_size - round(batch_size * pos_fraction)
    return max(1, math.ceil((n_rows - n_pos) / max(1, n_neg_batch)))


def auto_batch_size(
    n_rows: int, n_pos: int, pos_fraction: float | None, balanced: bool, *, max_batch_size: int, min_batch_size: int,
    min_steps_per_epoch: int,
) -> int:  # fmt: skip
    """Largest power of two in [min_batch_size, max_batch_size] with >= min_steps_per_epoch batches per pass."""
    size = max_batch_size
    while size > min_batch_size and batches_per_pass(n_rows, n_pos, size, pos_fraction, balanced) < min_steps_per_epoch:
        size //= 2
    return max(size, min_batch_size)


def plan_schedule(
    *,
    n_rows: int,
    n_pos: int,
    n_val_pos: int,
    pos_fraction: float | None,
    balanced: bool,
    batch_size: int | str = "auto",
    max_batch_size: int = 1024,
    min_batch_size: int = 32,
    min_steps_per_epoch: int = 32,
    epoch_samples: int | None = 150_000,
    min_steps: int = 1500,
    min_epochs: int = 15,
    min_patience: int = 4,
    patience_steps: int | None = 500,
    smoothing_defaults: float | None = 100,
) -> Schedule:
    """The schedule for a training split of ``n_rows`` rows, ``n_pos`` of them defaults (see the module docstring).

    A number in ``batch_size`` pins it; ``epoch_samples``, ``patience_steps`` and ``smoothing_defaults`` set to None
    (or 0) turn their rule off; ``min_steps`` 0 keeps ``max_epochs`` as given.
    """
    if n_rows < 1 or not 0 < n_pos <= n_rows:
        raise ValueError(f"the training split needs rows and defaults, got {n_rows} rows and {n_pos} defaults")
    if batch_size == "auto":
        batch_size = auto_batch_size(
            n_rows, n_pos, pos_fraction, balanced, max_batch_size=int(max_batch_size),
            min_batch_size=int(min_batch_size), min_steps_per_epoch=int(min_steps_per_epoch),
        )  # fmt: skip
    elif isinstance(batch_size, str) or int(batch_size) < 2:
        raise ValueError(f"data.batch_size must be 'auto' or an integer >= 2, got {batch_size!r}")
    batch_size = int(batch_size)
    per_pass = batches_per_pass(n_rows, n_pos, batch_size, pos_fraction, balanced)
    per_epoch = per_pass
    if epoch_samples:
        per_epoch = min(per_pass, math.ceil(int(epoch_samples) / batch_size))
    epochs = int(min_epochs)
    if min_steps:
        epochs = max(epochs, math.ceil(int(min_steps) / per_epoch))
    patience = int(min_patience)
    if patience_steps:
        patience = max(patience, math.ceil(int(patience_steps) / per_epoch))
    smoothing = 0.0
    if smoothing_defaults:
        smoothing = float(smoothing_defaults) / (float(smoothing_defaults) + max(0, int(n_val_pos)))
    return Schedule(
        batch_size=batch_size,
        batches_per_epoch=per_epoch if per_epoch < per_pass else None,
        batches_per_pass=per_pass,
        max_epochs=epochs,
        patience=patience,
        val_smoothing=round(smoothing, 6),
    )
