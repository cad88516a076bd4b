"""The adaptive training schedule: batch size, epoch length, epochs, patience and smoothing follow the data."""

from __future__ import annotations

import math

import pytest

from loan_default.training.sampler import BalancedBatchSampler
from loan_default.training.schedule import plan_schedule

DEFAULTS = dict(pos_fraction=0.5, balanced=True)


def test_default_size_keeps_batch_1024_and_whole_passes():
    """70k training rows at 5% defaults: 66,500 negatives / 512 per batch = 130 batches, one pass per epoch."""
    s = plan_schedule(n_rows=70_000, n_pos=3_500, n_val_pos=750, **DEFAULTS)
    assert s.batch_size == 1024
    assert s.batches_per_pass == math.ceil(66_500 / 512) == 130
    assert s.batches_per_epoch is None
    assert s.max_epochs == 15  # 15 * 130 = 1950 >= min_steps 1500
    assert s.patience == 4  # ceil(500 / 130) = 4
    assert s.val_smoothing == pytest.approx(100 / 850)


def test_small_data_gets_small_batches_more_epochs_and_strong_smoothing():
    """1,400 rows, 140 defaults: 1,260 negatives. 1024..128 give < 32 batches a pass; 64 gives ceil(1260/32) = 40."""
    s = plan_schedule(n_rows=1_400, n_pos=140, n_val_pos=20, **DEFAULTS)
    assert s.batch_size == 64
    assert s.batches_per_pass == 40 and s.batches_per_epoch is None
    assert s.max_epochs == math.ceil(1500 / 40)
    assert s.patience == math.ceil(500 / 40)
    assert s.val_smoothing == pytest.approx(100 / 120)


def test_large_data_gets_short_epochs():
    """700k rows: a pass is 1,300+ batches; epochs stop after ceil(150000 / 1024) = 147 batches."""
    s = plan_schedule(n_rows=700_000, n_pos=35_000, n_val_pos=7_500, **DEFAULTS)
    assert (s.batch_size, s.batches_per_epoch) == (1024, 147)
    assert s.batches_per_pass == math.ceil(665_000 / 512)
    assert s.max_epochs == 15 and s.patience == 4
    assert s.val_smoothing < 0.02


def test_pass_length_matches_the_sampler():
    labels = [1] * 37 + [0] * 1_000
    s = plan_schedule(n_rows=1_037, n_pos=37, n_val_pos=5, pos_fraction=0.3, balanced=True)
    sampler = BalancedBatchSampler(labels, s.batch_size, pos_fraction=0.3)
    assert s.batches_per_pass == len(sampler) >= 32


def test_pins_and_switches():
    s = plan_schedule(n_rows=1_400, n_pos=140, n_val_pos=20, batch_size=512, epoch_samples=None, min_steps=0,
                      patience_steps=None, smoothing_defaults=None, **DEFAULTS)  # fmt: skip
    assert (s.batch_size, s.batches_per_epoch, s.max_epochs, s.patience, s.val_smoothing) == (512, None, 15, 4, 0.0)


def test_shuffled_batches_count_all_rows_and_floor_the_batch():
    s = plan_schedule(n_rows=500, n_pos=50, n_val_pos=10, pos_fraction=None, balanced=False)
    assert s.batch_size == 32 and s.batches_per_pass == 500 // 32  # floor: 16 a pass is below 32 but 32 is the least


@pytest.mark.parametrize("kwargs", [dict(n_rows=100, n_pos=0), dict(n_rows=0, n_pos=0), dict(batch_size="big"),
                                    dict(batch_size=1)])  # fmt: skip
def test_bad_input(kwargs):
    with pytest.raises(ValueError):
        plan_schedule(**({"n_rows": 100, "n_pos": 10, "n_val_pos": 3} | kwargs), **DEFAULTS)


def test_large_batches_on_an_accelerator_scale_the_learning_rate_and_warm_up():
    sizes = dict(n_rows=700_000, n_pos=35_000, n_val_pos=7_500, pos_fraction=0.5, balanced=True)
    cpu = plan_schedule(**sizes, max_batch_size="auto", device_type="cpu")
    assert (cpu.batch_size, cpu.lr_scale, cpu.warmup_steps) == (1024, 1.0, 0)
    gpu = plan_schedule(**sizes, max_batch_size="auto", device_type="cuda", min_epoch_steps=40)
    assert gpu.batch_size == 16384 and gpu.lr_scale == 4.0  # sqrt(16384 / 1024)
    # 150k samples are 10 batches of 16384; the epoch is stretched to 40 steps, and the warm-up lasts one epoch.
    assert gpu.batches_per_epoch == 40 and gpu.warmup_steps == 40
    linear = plan_schedule(**sizes, max_batch_size="auto", device_type="cuda", lr_scaling="linear")
    assert linear.lr_scale == 16.0
    none = plan_schedule(**sizes, max_batch_size="auto", device_type="cuda", lr_scaling="none")
    assert (none.lr_scale, none.warmup_steps) == (1.0, 0)
    pinned = plan_schedule(**sizes, batch_size=1024, max_batch_size="auto", device_type="cuda")
    assert (pinned.batch_size, pinned.lr_scale) == (1024, 1.0)
    small = plan_schedule(**sizes, batch_size=256, device_type="cuda")  # never scaled below the model's rate
    assert small.lr_scale == 1.0
    with pytest.raises(ValueError, match="lr_scaling"):
        plan_schedule(**sizes, lr_scaling="cubic")


def test_wide_path_only_up_to_its_row_limit():
    """model.wide null follows wide_max_rows: on at 2,000 loans (1,400 training rows), off at the default 70k rows."""
    sizes = {"n_pos": 140, "n_val_pos": 20, **DEFAULTS}
    assert plan_schedule(n_rows=1_400, wide_max_rows=10_000, **sizes).wide is True
    assert plan_schedule(n_rows=10_000, wide_max_rows=10_000, **sizes).wide is True
    assert plan_schedule(n_rows=10_001, wide_max_rows=10_000, **sizes).wide is False
    assert plan_schedule(n_rows=1_400, wide_max_rows=None, **sizes).wide is False  # null / 0: never
    assert plan_schedule(n_rows=1_400, wide_max_rows=0, **sizes).wide is False
