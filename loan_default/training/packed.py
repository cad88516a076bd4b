"""The model's numeric inputs held compactly: continuous columns as float32, 0/1 columns as bits.

``x_num`` has 60-odd float32 columns, but only its leading ``Preprocessor.n_continuous`` columns (scaled numeric and
engineered features) take real values: the rest are 0/1 by construction (missing indicators, one-hot codes, flags).
Held as float32 they were 252 of the ~600 bytes a training run kept per loan (issue 13: at most 400). `PackedNumeric`
keeps the 0/1 columns as ``np.packbits`` (one bit each), so the default data's 63 columns, 51 of them 0/1, take 55
bytes a row.

Reading rows gives the float32 rows the dense array would have given, bit for bit: ``x[rows]`` (a slice, integer
positions or a boolean mask), ``x.take(idx)`` (a training batch, ~35 us more than a dense gather for 1024 rows),
``np.asarray(x)`` (everything: only for small splits or callers that need all of it), ``x.to_tensor(device)`` (the
whole split on a device, built chunk by chunk so the host never holds the dense copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from loan_default.core.preprocess import CHUNK_ROWS  # rows unpacked at a time when a whole split is read


class PackedNumeric:
    """``x_num`` (N, F) with columns ``[0, n_continuous)`` as float32 and the 0/1 columns after them as bits."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, n_rows: int, n_continuous: int, n_binary: int) -> None:
        if min(n_rows, n_continuous, n_binary) < 0:
            raise ValueError(f"negative shape: {n_rows} rows, {n_continuous} continuous, {n_binary} 0/1 columns")
        self.continuous = np.zeros((n_rows, n_continuous), dtype=np.float32)
        self.bits = np.zeros((n_rows, -(-n_binary // 8)), dtype=np.uint8)
        self.n_binary = int(n_binary)

    @classmethod
    def from_dense(cls, x_num: np.ndarray, n_continuous: int) -> PackedNumeric:
        """Pack a dense (N, F) array whose columns from ``n_continuous`` on are 0/1."""
        x_num = np.asarray(x_num)
        packed = cls(len(x_num), n_continuous, x_num.shape[1] - n_continuous)
        packed.put(0, x_num)
        return packed

    def put(self, start: int, rows: np.ndarray) -> None:
        """Write dense float rows (n, F) at positions ``[start, start + n)``; the 0/1 columns must hold only 0 or 1."""
        n_cont = self.continuous.shape[1]
        if rows.ndim != 2 or rows.shape[1] != self.shape[1]:
            raise ValueError(f"expected rows with {self.shape[1]} columns, got shape {rows.shape}")
        binary = rows[:, n_cont:]
        flags = binary.astype(bool)
        if not np.array_equal(flags, binary):
            column = n_cont + int(np.flatnonzero((flags != binary).any(axis=0))[0])
            raise ValueError(f"x_num column {column} is declared 0/1 but holds other values")
        self.continuous[start : start + len(rows)] = rows[:, :n_cont]
        self.bits[start : start + len(rows)] = np.packbits(flags, axis=1)

    # ------------------------------------------------------------------------------------------------------------
    # Array-like reading
    # ------------------------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.continuous.shape[0], self.continuous.shape[1] + self.n_binary)

    @property
    def n_continuous(self) -> int:
        return self.continuous.shape[1]

    @property
    def nbytes(self) -> int:
        return self.continuous.nbytes + self.bits.nbytes

    def __len__(self) -> int:
        return self.continuous.shape[0]

    def take(self, idx: np.ndarray) -> np.ndarray:
        """float32 rows at integer positions ``idx`` (a training batch: ``np.take`` is the fastest numpy gather)."""
        idx = np.asarray(idx, dtype=np.intp)
        return self._dense(np.take(self.continuous, idx, axis=0), np.take(self.bits, idx, axis=0))

    def __getitem__(self, rows: Any) -> np.ndarray:
        """float32 rows: ``rows`` is a slice, integer positions or a boolean mask (rows only, no column index)."""
        if isinstance(rows, tuple):
            raise TypeError("PackedNumeric reads whole rows; select columns on the result")
        if isinstance(rows, (int, np.integer)):
            return self.take(np.array([rows]))[0]
        return self._dense(self.continuous[rows], self.bits[rows])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        for start in range(0, len(self), CHUNK_ROWS):
            out[start : start + CHUNK_ROWS] = self[start : start + CHUNK_ROWS]
        return out if dtype is None else out.astype(dtype, copy=False)

    def astype(self, dtype: Any, copy: bool = True) -> np.ndarray:
        return np.asarray(self, dtype=dtype)

    def to_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The whole (N, F) float32 matrix as one tensor on ``device``, filled ``CHUNK_ROWS`` rows at a time."""
        out = torch.empty(self.shape, dtype=torch.float32, device=device)
        for start in range(0, len(self), CHUNK_ROWS):
            out[start : start + CHUNK_ROWS] = torch.from_numpy(self[start : start + CHUNK_ROWS]).to(device)
        return out

    def _dense(self, continuous: np.ndarray, bits: np.ndarray) -> np.ndarray:
        out = np.empty((len(continuous), self.shape[1]), dtype=np.float32)
        out[:, : self.n_continuous] = continuous
        out[:, self.n_continuous :] = np.unpackbits(bits, axis=1, count=self.n_binary)
        return out


def as_tensor(store: torch.Tensor | np.ndarray | PackedNumeric, device: torch.device | str = "cpu") -> torch.Tensor:
    """A split's column store (tensor, numpy array or `PackedNumeric`) as one tensor on ``device``."""
    if isinstance(store, PackedNumeric):
        return store.to_tensor(device)
    return torch.as_tensor(store).to(device)
