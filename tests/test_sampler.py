"""BalancedBatchSampler: positive share, negative coverage, reseeding, DDP sharding, DataLoader use, errors."""

from __future__ import annotations

import lightning
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from loan_default.training.sampler import BalancedBatchSampler, DeviceBalancedSampler
from loan_default.training.tensors import TensorBatchDataset, passthrough_collate


def make_labels(n: int = 1000, n_pos: int = 50, seed: int = 0) -> np.ndarray:
    labels = np.zeros(n, dtype=np.float32)
    labels[np.random.default_rng(seed).choice(n, n_pos, replace=False)] = 1
    return labels


def epoch_batches(sampler: BalancedBatchSampler) -> list[list[int]]:
    return [b.tolist() if isinstance(b, torch.Tensor) else b for b in sampler]


def on_cpu(labels, batch_size, *args, **kwargs) -> DeviceBalancedSampler:
    """The device sampler, on the CPU device: the guarantees below must hold for both samplers."""
    return DeviceBalancedSampler(labels, batch_size, *args, device="cpu", **kwargs)


# Every guarantee test runs on both: the numpy plan and the torch plan (drawn on the training device).
both = pytest.mark.parametrize("Sampler", [BalancedBatchSampler, on_cpu], ids=["numpy", "device"])


@both
def test_full_batches_hold_exact_positive_count_and_last_keeps_share(Sampler) -> None:
    labels = make_labels(1000, 50)  # 950 negatives
    sampler = Sampler(labels, batch_size=64, pos_fraction=0.25)
    assert (sampler.n_pos, sampler.n_neg) == (16, 48)
    batches = epoch_batches(sampler)
    for batch in batches[:-1]:
        assert len(batch) == 64
        assert labels[batch].sum() == 16
    # 950 = 19 * 48 + 38 negatives; the last batch keeps 1:3, i.e. round(38 / 3) = 13 positives.
    last = np.asarray(batches[-1])
    assert (labels[last] == 0).sum() == 38
    assert labels[last].sum() == 13
    assert len(batches) == len(sampler) == 20


@both
def test_pos_to_neg_ratio_matches_fraction(Sampler) -> None:
    labels = make_labels()
    by_ratio = Sampler(labels, batch_size=100, pos_to_neg_ratio=1 / 3, seed=3)
    by_fraction = Sampler(labels, batch_size=100, pos_fraction=0.25, seed=3)
    assert (by_ratio.n_pos, by_ratio.n_neg) == (25, 75)
    assert epoch_batches(by_ratio) == epoch_batches(by_fraction)


@both
def test_default_is_half_positives(Sampler) -> None:
    sampler = Sampler(make_labels(), batch_size=32)
    assert (sampler.n_pos, sampler.n_neg) == (16, 16)


@both
def test_epoch_covers_every_negative_exactly_once(Sampler) -> None:
    labels = make_labels(1000, 50)
    batches = epoch_batches(Sampler(labels, batch_size=64, seed=1))
    flat = np.concatenate([np.asarray(b) for b in batches])
    negs = flat[labels[flat] == 0]
    np.testing.assert_array_equal(np.sort(negs), np.flatnonzero(labels == 0))
    # Positives are drawn with replacement: every drawn index is a positive, and even the first 50 draws from the
    # 50 positives repeat some (all distinct by chance has probability 50!/50**50 ~ 3e-21).
    pos = flat[labels[flat] == 1]
    assert np.isin(pos, np.flatnonzero(labels == 1)).all()
    assert len(np.unique(pos[:50])) < 50


@both
def test_positive_draws_are_roughly_uniform(Sampler) -> None:
    labels = make_labels(20_000, 20, seed=2)
    flat = np.concatenate(epoch_batches(Sampler(labels, batch_size=200, seed=5)))
    counts = np.bincount(flat[labels[flat] == 1], minlength=labels.size)[labels == 1]
    expected = counts.sum() / 20  # ~ 999 draws each; 5 sigma is ~ 160
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


@both
def test_epochs_differ_and_reseed_is_reproducible(Sampler) -> None:
    labels = make_labels()
    sampler = Sampler(labels, batch_size=64, seed=7)
    first, second = epoch_batches(sampler), epoch_batches(sampler)
    assert first != second
    assert sampler.epoch == 2
    again = Sampler(labels, batch_size=64, seed=7)
    assert epoch_batches(again) == first
    again.set_epoch(1)
    assert epoch_batches(again) == second
    assert again.epoch == 2
    assert epoch_batches(Sampler(labels, batch_size=64, seed=8)) != first
    # an iterator that is made but never used (multi-worker DataLoaders make one per epoch) does not use up an epoch
    iter(sampler)
    assert sampler.epoch == 2


@both
def test_epoch_plan_does_not_advance_counter(Sampler) -> None:
    sampler = Sampler(make_labels(), batch_size=64, seed=7)
    full, last = sampler.epoch_plan(0)
    assert sampler.epoch == 0
    assert epoch_batches(sampler) == [*full.tolist(), last.tolist()]


@both
@pytest.mark.parametrize("per_epoch", [1, 3, 7, 20, 50])
def test_short_epochs_continue_the_pass(Sampler, per_epoch: int) -> None:
    """Epochs of k batches are consecutive slices of the sequence pass 0, pass 1, ... (each a full epoch_plan)."""
    labels = make_labels(1000, 50)  # 950 negatives, 20 batches of 48 per pass
    whole = Sampler(labels, batch_size=64, pos_fraction=0.25, seed=5)
    assert whole.batches_per_pass == 20
    sequence = [b for p in range(4) for b in [*whole.epoch_plan(p)[0].tolist(), whole.epoch_plan(p)[1].tolist()]]
    short = Sampler(labels, batch_size=64, pos_fraction=0.25, seed=5, batches_per_epoch=per_epoch)
    k = min(per_epoch, 20)
    assert len(short) == k
    epochs = [epoch_batches(short) for _ in range(60 // k)]
    assert all(len(e) == k for e in epochs)
    assert [b for e in epochs for b in e] == sequence[: k * (60 // k)]
    short.set_epoch(2)  # a resumed run lands where an uninterrupted one would be
    assert epoch_batches(short) == sequence[2 * k : 3 * k]


@both
@pytest.mark.parametrize("n_neg", [950, 960, 961, 7])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_are_disjoint_cover_negatives_and_agree_on_length(Sampler, n_neg: int, drop_last: bool) -> None:
    labels = np.r_[np.zeros(n_neg), np.ones(30)]
    world = 4
    batch_size = 2 if n_neg == 7 else 64
    samplers = [
        Sampler(labels, batch_size, drop_last=drop_last, seed=11, num_replicas=world, rank=r) for r in range(world)
    ]
    per_rank = [epoch_batches(s) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1
    assert all(len(b) == len(s) for b, s in zip(per_rank, samplers, strict=True))
    neg_sets = []
    for batches in per_rank:
        flat = np.concatenate(batches).astype(np.int64)
        neg_sets.append(set(flat[labels[flat] == 0].tolist()))
    for i in range(world):
        for j in range(i + 1, world):
            assert not neg_sets[i] & neg_sets[j]
    union = set().union(*neg_sets)
    if drop_last:
        assert len(union) == world * (n_neg // world // samplers[0].n_neg * samplers[0].n_neg)
        assert all(len(b) == batch_size for batches in per_rank for b in batches)
    else:
        assert union == set(range(n_neg))


@both
def test_ranks_draw_different_positives(Sampler) -> None:
    labels = make_labels(2000, 100)
    a, b = (Sampler(labels, 64, seed=0, num_replicas=2, rank=r) for r in range(2))
    assert a.epoch_plan(0)[0][:, : a.n_pos].tolist() != b.epoch_plan(0)[0][:, : b.n_pos].tolist()


@both
def test_drop_last_yields_only_full_batches(Sampler) -> None:
    labels = make_labels(1000, 50)
    sampler = Sampler(labels, batch_size=64, drop_last=True)
    batches = epoch_batches(sampler)
    assert len(batches) == len(sampler) == 950 // 32
    assert all(len(b) == 64 and labels[b].sum() == 32 for b in batches)


@settings(max_examples=40, deadline=None)
@given(
    n_neg=st.integers(1, 300),
    n_pos=st.integers(1, 20),
    batch_size=st.integers(2, 50),
    fraction=st.floats(0.05, 0.95),
    world=st.integers(1, 3),
    drop_last=st.booleans(),
)
@both
def test_batch_structure_holds_for_any_size(
    Sampler, n_neg: int, n_pos: int, batch_size: int, fraction: float, world: int, drop_last: bool
) -> None:
    labels = np.r_[np.zeros(n_neg), np.ones(n_pos)]
    try:
        samplers = [
            Sampler(labels, batch_size, fraction, drop_last=drop_last, num_replicas=world, rank=r) for r in range(world)
        ]
    except ValueError:
        return  # too small for this configuration; the error cases are tested below
    n_pos_batch = round(batch_size * fraction)
    for sampler in samplers:
        batches = epoch_batches(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            pos = int(labels[batch].sum())
            if len(batch) == batch_size:
                assert pos == n_pos_batch
            else:
                assert not drop_last and len(batch) < batch_size and pos >= 1
    if not drop_last:
        flat = np.concatenate([np.concatenate(epoch_batches(s)) for s in samplers]).astype(np.int64)
        assert set(flat[labels[flat] == 0].tolist()) == set(range(n_neg))


@both
def test_accepts_tensor_and_list_labels(Sampler) -> None:
    labels = make_labels()
    expected = epoch_batches(Sampler(labels, 64, seed=2))
    assert epoch_batches(Sampler(torch.from_numpy(labels), 64, seed=2)) == expected
    assert epoch_batches(Sampler(labels.astype(int).tolist(), 64, seed=2)) == expected


def test_works_as_dataloader_batch_sampler_and_reseeds_each_epoch() -> None:
    labels = make_labels(500, 40)
    x = torch.arange(500, dtype=torch.float32).unsqueeze(1)
    y = torch.from_numpy(labels)
    sampler = BalancedBatchSampler(y, batch_size=32, pos_fraction=0.5, seed=4)
    loader = DataLoader(TensorDataset(x, y), batch_sampler=sampler)
    assert len(loader) == len(sampler)
    epochs = []
    for _ in range(2):
        rows = []
        for xb, yb in loader:
            if len(yb) == 32:
                assert yb.sum().item() == 16
            np.testing.assert_array_equal(labels[xb[:, 0].long().numpy()], yb.numpy())
            rows.append(xb[:, 0].long())
        epochs.append(torch.cat(rows))
    assert not torch.equal(epochs[0], epochs[1])


def test_tensor_batch_dataset_matches_tensor_dataset() -> None:
    labels = make_labels(300, 30)
    x_num = torch.randn(300, 5)
    x_cat = torch.randint(0, 4, (300, 2))
    y = torch.from_numpy(labels)
    sampler_kwargs = dict(labels=labels, batch_size=16, seed=9)
    slow = DataLoader(TensorDataset(x_num, x_cat, y), batch_sampler=BalancedBatchSampler(**sampler_kwargs))
    fast = DataLoader(
        TensorBatchDataset(x_num, x_cat, y),
        batch_sampler=BalancedBatchSampler(**sampler_kwargs),
        collate_fn=passthrough_collate,
    )
    n = 0
    for a, b in zip(slow, fast, strict=True):
        assert b[0].dtype == torch.float32 and b[1].dtype == torch.int64 and b[2].dtype == torch.float32
        for ta, tb in zip(a, b, strict=True):
            assert torch.equal(ta, tb)
        n += 1
    assert n == len(slow)


def test_tensor_batch_dataset_handles_zero_categorical_columns() -> None:
    ds = TensorBatchDataset(torch.randn(10, 3), torch.empty(10, 0, dtype=torch.long), torch.zeros(10))
    x_num, x_cat, y = ds.__getitems__([3, 1, 3])
    assert x_num.shape == (3, 3) and x_cat.shape == (3, 0) and y.shape == (3,)
    with pytest.raises(ValueError, match="first dimension"):
        TensorBatchDataset(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match="CPU tensors"):
        TensorBatchDataset(torch.zeros(3, requires_grad=True))


def test_tensor_batch_dataset_in_worker_processes() -> None:
    """Workers get the dataset by pickling, and a multi-worker loader calls iter(batch_sampler) twice per epoch."""
    labels = make_labels(200, 20)
    x = torch.arange(200, dtype=torch.float32).unsqueeze(1)
    sampler = BalancedBatchSampler(labels, batch_size=16, seed=1)
    loader = DataLoader(
        TensorBatchDataset(x, torch.from_numpy(labels)),
        batch_sampler=sampler,
        collate_fn=passthrough_collate,
        num_workers=2,
        multiprocessing_context="spawn",
    )
    expected = [*sampler.epoch_plan(0)[0].tolist(), sampler.epoch_plan(0)[1].tolist()]
    got = [xb[:, 0].long().tolist() for xb, _ in loader]
    assert got == expected
    assert sampler.epoch == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(labels=np.zeros(100)), ValueError, "no positives"),
        (dict(labels=np.r_[np.ones(5), 2.0]), ValueError, "only 0"),
        (dict(labels=np.ones((4, 2))), ValueError, "1-D"),
        (dict(pos_fraction=0.0), ValueError, "strictly between"),
        (dict(pos_fraction=1.0), ValueError, "strictly between"),
        (dict(pos_fraction=1.5), ValueError, "strictly between"),
        (dict(pos_fraction=0.5, pos_to_neg_ratio=1.0), ValueError, "not both"),
        (dict(pos_to_neg_ratio=0.0), ValueError, "pos_to_neg_ratio"),
        (dict(pos_to_neg_ratio=float("inf")), ValueError, "pos_to_neg_ratio"),
        (dict(batch_size=1), ValueError, "batch_size"),
        (dict(batch_size=4, pos_fraction=0.05), ValueError, "too small"),
        (dict(batch_size=4, pos_fraction=0.95), ValueError, "too small"),
        (dict(batch_size=32.0), TypeError, "batch_size"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(num_replicas=0), ValueError, "num_replicas"),
        (dict(num_replicas=2, rank=2), ValueError, "rank"),
        (dict(labels=np.r_[np.zeros(3), np.ones(5)], num_replicas=4, rank=0), ValueError, "negatives"),
        (dict(labels=np.r_[np.zeros(10), np.ones(5)], batch_size=32, drop_last=True), ValueError, "no full batch"),
    ],
)
def test_argument_errors(kwargs: dict, error: type[Exception], match: str) -> None:
    args = dict(labels=make_labels(), batch_size=32) | kwargs
    with pytest.raises(error, match=match):
        BalancedBatchSampler(**args)


def test_set_epoch_rejects_negative() -> None:
    with pytest.raises(ValueError, match="epoch"):
        BalancedBatchSampler(make_labels(), 32).set_epoch(-1)


class _RecordRows(lightning.LightningModule):
    """Records the row ids (stored in x) of every training batch, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.rows: dict[int, list[int]] = {}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        self.rows.setdefault(self.current_epoch, []).extend(x[:, 0].long().tolist())
        return torch.nn.functional.binary_cross_entropy_with_logits(self.layer(x).squeeze(1), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_trainer_gets_new_batches_every_epoch() -> None:
    labels = make_labels(200, 20)
    x = torch.arange(200, dtype=torch.float32).unsqueeze(1)
    sampler = BalancedBatchSampler(labels, batch_size=16, seed=3)
    loader = DataLoader(TensorDataset(x, torch.from_numpy(labels)), batch_sampler=sampler)
    model = _RecordRows()
    trainer = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model, loader)
    expected = [sampler.epoch_plan(e) for e in range(2)]
    for epoch, (full, last) in enumerate(expected):
        assert model.rows[epoch] == [*full.ravel().tolist(), *last.tolist()]
    assert model.rows[0] != model.rows[1]


def test_replicas_default_from_torch_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = make_labels()
    assert (BalancedBatchSampler(labels, 32).num_replicas, BalancedBatchSampler(labels, 32).rank) == (1, 0)
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 4)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 2)
    sampler = BalancedBatchSampler(labels, 32, seed=5)
    assert (sampler.num_replicas, sampler.rank) == (4, 2)
    explicit = BalancedBatchSampler(labels, 32, seed=5, num_replicas=4, rank=2)
    assert epoch_batches(sampler) == epoch_batches(explicit)
