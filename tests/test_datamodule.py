"""LoanDataModule: nothing fitted sees validation or test rows; outliers leave val/test alone; the table cache works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loan_default.training import datamodule as dm_module
from loan_default.training.datamodule import LoanDataModule
from tests.conftest import TINY_LOANS, TINY_SEED

OUTLIER = {"method": "suod", "detectors": ["IForest", "HBOS", "COPOD"], "contamination": 0.02,
           "max_reference_rows": 2000}  # fmt: skip


def make_dm(root, **kwargs) -> LoanDataModule:
    settings = {
        "folder": str(root / "data" / "synthetic"),
        "synthetic": {"loans": TINY_LOANS, "seed": TINY_SEED},
        "cache_dir": str(root / "data" / "cache"),
        "split": {"method": "stratified", "stratify_vintage": True},
        "outlier": OUTLIER,
        "batch_size": 256,
        "seed": 3,
    }
    return LoanDataModule(**(settings | kwargs))


@pytest.fixture(scope="module")
def fitted(tiny_root):
    dm = make_dm(tiny_root)
    dm.prepare_data()
    dm.setup()
    return dm


def test_fitted_state_ignores_poisoned_validation_and_test_rows(tiny_root, fitted, monkeypatch):
    """Wreck every validation and test row: the preprocessor, outlier filter and loss weight must not change."""
    table = fitted.table.copy()
    held_out = np.concatenate([fitted.split_index["val"], fitted.split_index["test"]])
    rows = table.index[held_out]
    table.loc[rows, "credit_score"] = 1.0
    table.loc[rows, "orig_upb"] = 9e12
    table.loc[rows, "orig_rate"] = 29.0
    for column in ("seller_name", "property_state"):  # plain strings, so a compact (categorical) table takes new values
        table[column] = table[column].astype(object)
    table.loc[rows, "seller_name"] = "Poisoned Seller Inc"
    table.loc[rows, "property_state"] = "ZZ"
    monkeypatch.setattr(LoanDataModule, "_load_table", lambda self: (table, fitted.load_report))
    poisoned = make_dm(tiny_root)
    poisoned.setup()

    assert poisoned.preprocessor.state() == fitted.preprocessor.state()
    np.testing.assert_array_equal(poisoned.split_index["train"], fitted.split_index["train"])
    timeless = lambda report: {k: v for k, v in report.items() if k != "fit_seconds"}  # noqa: E731
    assert timeless(poisoned.outlier_report) == timeless(fitted.outlier_report)
    assert poisoned.batch_pos_fraction == fitted.batch_pos_fraction
    np.testing.assert_array_equal(poisoned.arrays["train"][0], fitted.arrays["train"][0])


def test_outlier_removal_touches_training_rows_only(fitted):
    summary = fitted.split_summary
    assert len(fitted.split_index["val"]) == summary["val"]["rows"]
    assert len(fitted.split_index["test"]) == summary["test"]["rows"]
    removed = fitted.outlier_report["removed"]
    assert removed > 0
    assert len(fitted.split_index["train"]) == summary["train"]["rows"] - removed
    assert fitted.outlier_report["removed_class_1"] == 0  # keep_defaults


def test_splits_are_disjoint_and_cover_the_table(fitted):
    parts = [set(fitted.split_index[s]) for s in ("val", "test")]
    assert not parts[0] & parts[1]
    assert not (set(fitted.split_index["train"]) & (parts[0] | parts[1]))


def test_train_batches_hold_the_configured_share_of_defaults(fitted):
    loader = fitted.train_dataloader()
    x_num, x_cat, y = next(iter(loader))
    assert x_num.dtype == torch.float32 and x_cat.dtype == torch.int32  # int32 ids: half the memory of int64
    assert y.shape == (256,) and int(y.sum()) == 128
    assert fitted.batch_pos_fraction == 0.5


def test_eval_loaders_are_ordered_and_complete(fitted):
    ys = torch.cat([batch[2] for batch in fitted.val_dataloader()])
    np.testing.assert_array_equal(ys.numpy(), fitted.arrays["val"][2])


def test_second_run_reads_the_cache_and_label_changes_rebuild_it(tiny_root, fitted, monkeypatch):
    calls = []
    real = dm_module.load_loan_table

    def counting(*args, **kwargs):
        calls.append(kwargs.get("label"))
        return real(*args, **kwargs)

    monkeypatch.setattr(dm_module, "load_loan_table", counting)
    again = make_dm(tiny_root, outlier={"method": "none"})
    again.setup()
    assert calls == []  # served from the cache
    assert len(again.table) == len(fitted.table)

    other = make_dm(tiny_root, outlier={"method": "none"}, label={"horizon_months": 12})
    other.setup()
    assert len(calls) == 1 and calls[0].horizon_months == 12
    assert other.table["default"].mean() < fitted.table["default"].mean()


def test_resident_loaders_gather_the_right_rows_on_the_device(fitted, monkeypatch):
    """data.resident=true: batches are gathered from tensors copied to the device once (here the CPU device)."""
    from loan_default.training.resident import ResidentBatches

    monkeypatch.setattr(fitted, "resident", True)
    monkeypatch.setattr(fitted, "_on_device", {})
    loader = fitted.train_dataloader()
    plan = list(loader.plan)
    assert isinstance(loader, ResidentBatches) and len(loader) == len(plan)
    loader.plan.set_epoch(0)  # replay the epoch the plan was read from
    x_num, x_cat, y = fitted.arrays["train"]
    for idx, batch in zip(plan, loader, strict=True):  # each batch is exactly the rows its indices name
        rows = idx.numpy()
        np.testing.assert_array_equal(batch[0].numpy(), x_num[rows])
        np.testing.assert_array_equal(batch[1].numpy(), x_cat[rows])
        if len(rows) == 256:  # full batches: half defaults (the last keeps the share, rounded)
            assert int(batch[2].sum()) == 128 and y[rows].sum() == 128
    assert fitted.train_dataloader().tensors[0] is loader.tensors[0]  # copied to the device once, not per epoch
    ys = torch.cat([batch[2] for batch in fitted.val_dataloader()])
    np.testing.assert_array_equal(ys.numpy(), fitted.arrays["val"][2])
    assert fitted._eval_batch_size(torch.device("cpu")) == 8192


def test_resident_shuffle_plan_takes_each_row_at_most_once_per_epoch(fitted, monkeypatch):
    monkeypatch.setattr(fitted, "resident", True)
    monkeypatch.setattr(fitted, "sampler_cfg", {"name": "shuffle"})
    loader = fitted.train_dataloader()
    epoch1 = torch.cat(list(loader.plan))
    epoch2 = torch.cat(list(loader.plan))
    n = len(fitted.arrays["train"][2])
    assert len(epoch1) == (n // 256) * 256 and len(set(epoch1.tolist())) == len(epoch1)
    assert not torch.equal(epoch1, epoch2)  # reshuffled every epoch
    loader.plan.set_epoch(1)  # a resumed run replays epoch 1's permutation, not epoch 0's
    assert torch.equal(torch.cat(list(loader.plan)), epoch2)


def test_arrays_built_by_chunks_of_rows_equal_one_transform(fitted):
    rows = fitted.split_index["val"]
    x_num, x_cat, y = fitted._arrays(fitted.table, chunk=77, rows=rows)
    want_num, want_cat = fitted.preprocessor.transform(fitted.table.iloc[rows])
    np.testing.assert_array_equal(x_num, want_num)
    np.testing.assert_array_equal(x_cat, want_cat)
    assert x_cat.dtype == np.int32 and x_num.dtype == np.float32
    # Everything after the continuous columns is held as bits: under a third of the dense bytes.
    assert x_num.n_continuous == fitted.preprocessor.n_continuous and x_num.nbytes < want_num.nbytes / 3
    np.testing.assert_array_equal(y, fitted.table["default"].to_numpy()[rows])
    np.testing.assert_array_equal(fitted.arrays["val"][1], want_cat)
