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

Large batches on an accelerator (issue 14): a GPU trains a batch of 16,384 rows in about the time of one of 1,024,
so ``max_batch_size: auto`` is 1024 on CPU and ``accelerator_batch_size`` on a GPU. Fewer, larger steps need a larger
step size to keep quality:

* ``lr_scale``: the model's learning rate (set for ``lr_base_batch`` rows) is multiplied by
  ``(batch_size / lr_base_batch) ** 0.5`` (``lr_scaling: sqrt``, the rule for Adam), ``batch_size / lr_base_batch``
  (``linear``) or 1 (``none``); never below 1.
* ``warmup_steps``: with a scaled rate the first ``warmup_epochs`` epochs ramp it up linearly (Adam's early moment
  estimates are noisy; a large first step at a large rate can wreck the learned shapes).
* ``min_epoch_steps``: an epoch holds at least this many optimizer steps (when the pass is long enough), so a large
  batch is not validated, checkpointed and early-stopped every handful of steps.

The network's shape (issue 11 item 2):

* ``wide``: the linear (wide) path beside the MLP, started as the logistic model (`LoanNet.fit_linear_path`), is on
  when the training split has at most ``wide_max_rows`` rows (``model.wide: null`` leaves it to this rule). At 2,000
  loans it kept the ANN level with logistic regression in both hazards (docs/decisions/0056-wide-path-small-data.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# Learning-rate multiplier as a function of batch_size / lr_base_batch.
LR_SCALING = {"sqrt": math.sqrt, "linear": float, "none": lambda ratio: 1.0}


@dataclass(frozen=True)
class Schedule:
    """What the schedule chose (plain values, logged and reported)."""

    batch_size: int
    batches_per_epoch: int | None  # None: an epoch is one pass
    batches_per_pass: int
    max_epochs: int
    patience: int
    val_smoothing: float
    lr_scale: float = 1.0
    warmup_steps: int = 0
    wide: bool = False

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
    device_type: str = "cpu",
    max_batch_size: int | str = 1024,
    accelerator_batch_size: int = 16384,
    lr_scaling: str = "sqrt",
    lr_base_batch: int = 1024,
    warmup_epochs: float = 1.0,
    min_epoch_steps: int = 0,
    min_batch_size: int = 32,
    min_steps_per_epoch: int = 32,
    epoch_samples: int | None = 150_000,
    min_steps: int = 1500,
    min_epochs: int = 15,
    min_patience: int = 4,
    patience_steps: int | None = 500,
    smoothing_defaults: float | None = 100,
    wide_max_rows: int | None = None,
) -> Schedule:
    """The schedule for a training split of ``n_rows`` rows, ``n_pos`` of them defaults (see the module docstring).

    A number in ``batch_size`` pins it; ``epoch_samples``, ``patience_steps`` and ``smoothing_defaults`` set to None
    (or 0) turn their rule off; ``min_steps`` 0 keeps ``max_epochs`` as given. ``device_type`` is the training
    device's kind ("cpu", "cuda", ...).
    """
    if n_rows < 1 or not 0 < n_pos <= n_rows:
        raise ValueError(f"the training split needs rows and defaults, got {n_rows} rows and {n_pos} defaults")
    if lr_scaling not in LR_SCALING:
        raise ValueError(f"schedule.lr_scaling must be one of {sorted(LR_SCALING)}, got {lr_scaling!r}")
    if max_batch_size == "auto":
        max_batch_size = 1024 if device_type == "cpu" else accelerator_batch_size
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
        per_epoch = min(per_pass, max(math.ceil(int(epoch_samples) / batch_size), int(min_epoch_steps or 0)))
    epochs = int(min_epochs)
    if min_steps:
        epochs = max(epochs, math.ceil(int(min_steps) / per_epoch))
    patience = int(min_patience)
    if patience_steps:
        patience = max(patience, math.ceil(int(patience_steps) / per_epoch))
    smoothing = 0.0
    if smoothing_defaults:
        smoothing = float(smoothing_defaults) / (float(smoothing_defaults) + max(0, int(n_val_pos)))
    lr_scale = max(1.0, LR_SCALING[lr_scaling](batch_size / int(lr_base_batch)))
    warmup = round(float(warmup_epochs) * per_epoch) if lr_scale > 1 else 0
    return Schedule(
        batch_size=batch_size,
        batches_per_epoch=per_epoch if per_epoch < per_pass else None,
        batches_per_pass=per_pass,
        max_epochs=epochs,
        patience=patience,
        val_smoothing=round(smoothing, 6),
        lr_scale=round(lr_scale, 6),
        warmup_steps=warmup,
        wide=bool(wide_max_rows) and n_rows <= int(wide_max_rows),
    )
