"""Month arithmetic on Freddie Mac's YYYYMM dates: one home for the reader, the features and the generator.

A month is counted as one number, ``year * 12 + month - 1`` (months since January of year 0), so that the difference
of two months is a count of months.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def month_number(yyyymm: ArrayLike) -> np.ndarray:
    """YYYYMM -> months since January of year 0, for dates already checked (the reader's, the generator's).

    Integer input gives int64; float input stays float, NaN for a missing date stays NaN.
    """
    d = np.asarray(yyyymm)
    if d.dtype.kind not in "iuf":
        d = d.astype(np.int64)
    return (d // 100) * 12 + d % 100 - 1


def valid_month_number(yyyymm: ArrayLike) -> np.ndarray:
    """YYYYMM -> months since January of year 0 as float, NaN where missing or the month is not 1..12.

    For dates that come from a user (the API, a scored file) and may be malformed.
    """
    d = np.asarray(yyyymm, dtype=np.float64)
    year, month = np.floor_divide(d, 100), np.mod(d, 100)
    return np.where((month >= 1) & (month <= 12), year * 12 + month - 1, np.nan)


def yyyymm(month: ArrayLike) -> np.ndarray:
    """Months since January of year 0 -> YYYYMM (int64): the inverse of ``month_number``."""
    m = np.asarray(month, dtype=np.int64)
    return (m // 12) * 100 + m % 12 + 1
