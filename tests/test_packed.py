"""PackedNumeric (training/packed.py): x_num's 0/1 columns as bits read back exactly as the dense float32 array."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loan_default.training.packed import PackedNumeric, as_tensor
from loan_default.training.tensors import TensorBatchDataset


def _dense(n: int = 1_000, n_cont: int = 5, n_bin: int = 19, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    continuous = rng.normal(size=(n, n_cont)).astype(np.float32)
    binary = (rng.random((n, n_bin)) < 0.3).astype(np.float32)  # 19 columns: the last byte is partly used
    return np.concatenate([continuous, binary], axis=1)


def test_every_way_of_reading_rows_gives_the_dense_rows() -> None:
    dense = _dense()
    packed = PackedNumeric.from_dense(dense, n_continuous=5)
    assert packed.shape == dense.shape and len(packed) == len(dense) and packed.dtype == np.float32
    assert packed.nbytes == 1_000 * (5 * 4 + 3)  # 19 bits in 3 bytes instead of 76
    idx = np.random.default_rng(1).integers(0, len(dense), 500)  # repeats and any order, as a sampler draws them
    mask = np.random.default_rng(2).random(len(dense)) < 0.4
    np.testing.assert_array_equal(np.asarray(packed), dense)
    np.testing.assert_array_equal(packed.take(idx), dense[idx])
    np.testing.assert_array_equal(packed[idx], dense[idx])
    np.testing.assert_array_equal(packed[mask], dense[mask])
    np.testing.assert_array_equal(packed[10:700:7], dense[10:700:7])
    np.testing.assert_array_equal(packed[-1], dense[-1])
    np.testing.assert_array_equal(packed.astype(np.float64), dense.astype(np.float64))
    assert packed.astype(np.float64).dtype == np.float64
    np.testing.assert_array_equal(packed.to_tensor().numpy(), dense)
    np.testing.assert_array_equal(as_tensor(packed).numpy(), dense)


def test_whole_reads_cross_chunk_boundaries(monkeypatch) -> None:
    monkeypatch.setattr("loan_default.training.packed.CHUNK_ROWS", 64)
    dense = _dense(n=1_000)
    packed = PackedNumeric.from_dense(dense, n_continuous=5)
    np.testing.assert_array_equal(np.asarray(packed), dense)
    np.testing.assert_array_equal(packed.to_tensor().numpy(), dense)


def test_a_column_declared_0_1_with_other_values_is_refused_by_name() -> None:
    dense = _dense()
    dense[3, 7] = 0.5
    with pytest.raises(ValueError, match="column 7 is declared 0/1"):
        PackedNumeric.from_dense(dense, n_continuous=5)
    with pytest.raises(ValueError, match="24 columns"):
        PackedNumeric(10, 5, 19).put(0, dense[:10, :20])


def test_batches_from_the_dataset_equal_the_dense_gather() -> None:
    dense = _dense()
    y = (dense[:, 5] > 0).astype(np.float32)
    data = TensorBatchDataset(PackedNumeric.from_dense(dense, 5), torch.arange(len(dense)), torch.from_numpy(y))
    idx = [5, 3, 999, 3]
    x_num, rows, labels = data.__getitems__(idx)
    assert x_num.dtype == torch.float32
    np.testing.assert_array_equal(x_num.numpy(), dense[idx])
    np.testing.assert_array_equal(rows.numpy(), idx)
    np.testing.assert_array_equal(labels.numpy(), y[idx])
    np.testing.assert_array_equal(data[7][0].numpy(), dense[7])
