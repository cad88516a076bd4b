"""The synthetic economy: the market mortgage rate, a house price index, conforming loan limits.

Months are counted as in ``loan_default.common.months`` (``year * 12 + month - 1``). Annual figures are
placed at mid-year and interpolated linearly, so every loan originated in the same month faces the same market rate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# Freddie Mac PMMS 30-year fixed rate, annual average (%), rounded.
_PMMS_30Y = {
    1999: 7.44, 2000: 8.05, 2001: 6.97, 2002: 6.54, 2003: 5.83, 2004: 5.84, 2005: 5.87, 2006: 6.41, 2007: 6.34,
    2008: 6.03, 2009: 5.04, 2010: 4.69, 2011: 4.45, 2012: 3.66, 2013: 3.98, 2014: 4.17, 2015: 3.85, 2016: 3.65,
    2017: 3.99, 2018: 4.54, 2019: 3.94, 2020: 3.11, 2021: 2.96, 2022: 5.34, 2023: 6.81, 2024: 6.72, 2025: 6.60,
}  # fmt: skip
# National house price index, annual level (2000 = 100), rounded: boom to 2006, bust to 2011, recovery after.
_HPI = {
    1999: 93, 2000: 100, 2001: 107, 2002: 115, 2003: 124, 2004: 137, 2005: 152, 2006: 160, 2007: 155, 2008: 140,
    2009: 128, 2010: 124, 2011: 119, 2012: 121, 2013: 131, 2014: 138, 2015: 145, 2016: 153, 2017: 162, 2018: 172,
    2019: 180, 2020: 190, 2021: 222, 2022: 250, 2023: 262, 2024: 272, 2025: 278,
}  # fmt: skip
# Baseline one-unit conforming loan limit by year ($); years in between keep the last change.
_LIMITS = {
    1999: 240_000, 2000: 252_700, 2001: 275_000, 2002: 300_700, 2003: 322_700, 2004: 333_700, 2005: 359_650,
    2006: 417_000, 2017: 424_100, 2018: 453_100, 2019: 484_350, 2020: 510_400, 2021: 548_250, 2022: 647_200,
    2023: 726_200, 2024: 766_550, 2025: 806_500,
}  # fmt: skip

FIRST_YEAR, LAST_YEAR = min(_PMMS_30Y), max(_PMMS_30Y)
# Shorter terms price below the 30-year rate (%), by original term in months.
_TERM_KNOTS = ([120, 180, 240, 300, 360], [-0.65, -0.55, -0.30, -0.15, 0.0])


def _annual(table: dict[int, float], index: ArrayLike) -> np.ndarray:
    years = np.fromiter(table, dtype=np.float64)
    values = np.fromiter(table.values(), dtype=np.float64)
    return np.interp(np.asarray(index, dtype=np.float64), years * 12 + 6, values)


def market_rate(index: ArrayLike) -> np.ndarray:
    """The 30-year market mortgage rate (%) in a month (a month index)."""
    return _annual(_PMMS_30Y, index)


def house_price_index(index: ArrayLike) -> np.ndarray:
    """National house price level in a month (2000 = 100)."""
    return _annual(_HPI, index)


def term_spread(term: ArrayLike) -> np.ndarray:
    """Rate difference (%) of a shorter-term loan relative to a 30-year loan."""
    return np.interp(np.asarray(term, dtype=np.float64), *_TERM_KNOTS)


def conforming_limit(year: int) -> int:
    """Baseline conforming loan limit ($) for loans originated in ``year``."""
    past = [y for y in _LIMITS if y <= year]
    return _LIMITS[max(past)] if past else _LIMITS[min(_LIMITS)]
