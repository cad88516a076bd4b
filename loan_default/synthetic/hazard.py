"""The known default model behind the synthetic data: P(default within 24 months | origination fields).

The generator draws each loan's label from ``default_probability`` and writes it to truth.csv as ``true_pd``; the same
function applied to a loan table read back from the files (missing codes as NaN / NA) gives ``true_pd`` again for every
uncorrupted loan, so it is the oracle a model can be compared with.

Effects are chosen so that a linear model on the raw fields cannot represent them all: a credit-score slope that
steepens below 660; thin equity and weak credit compounding (and either strength offsetting the other); risk layering
(several weak spots at once cost more than their sum); a DTI step above 45; investor x cash-out; sand states x boom
vintages; high LTV x vintages that met falling house prices; every effect stretched in stressed vintages; the note
rate's spread over its month's market rate (SATO), which needs the month to compute; and a smooth ceiling near 70%.

``hazard="linear"`` swaps in ``linear_default_logit``: log-odds that are a sum of one term per model feature (numbers
as they are, UPB on a log scale, one constant per code, one per missing value), with a single intercept and no
vintage effect. A logistic regression on the model's features can represent it exactly, so it is near-oracle: the
regime of small or sparse files where a linear model is hard to beat.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from loan_default.common.months import month_number
from loan_default.freddie.schema import ORIGINATION_FIELDS
from loan_default.synthetic.economy import market_rate, term_spread

# 24-month default rate aimed at by vintage (about 0.75 x the lifetime rates in CALIBRATION.md; later years ~1.2%).
VINTAGE_TARGET = {
    1999: 0.023, 2000: 0.026, 2001: 0.018, 2002: 0.021, 2003: 0.024, 2004: 0.042, 2005: 0.061, 2006: 0.098,
    2007: 0.113, 2008: 0.050, 2009: 0.025, 2010: 0.017, 2011: 0.017, 2012: 0.017, 2013: 0.012, 2014: 0.012,
    2015: 0.012, 2016: 0.012, 2017: 0.012, 2018: 0.012, 2019: 0.012, 2020: 0.020, 2021: 0.012, 2022: 0.012,
    2023: 0.012, 2024: 0.012, 2025: 0.012,
}  # fmt: skip
# Intercepts that hit VINTAGE_TARGET on the generator's own loan mix (solved once on 200,000 loans a vintage).
VINTAGE_INTERCEPT = {
    1999: -4.833, 2000: -4.668, 2001: -5.099, 2002: -4.926, 2003: -4.769, 2004: -4.281, 2005: -4.111, 2006: -3.686,
    2007: -3.421, 2008: -4.280, 2009: -4.415, 2010: -4.591, 2011: -4.605, 2012: -4.619, 2013: -4.995, 2014: -4.984,
    2015: -4.976, 2016: -4.963, 2017: -4.951, 2018: -4.936, 2019: -4.944, 2020: -4.389, 2021: -4.943, 2022: -4.928,
    2023: -4.902, 2024: -4.885, 2025: -4.886,
}  # fmt: skip

# Overall strength of the risk factors: it sets the oracle's ROC-AUC (about 0.83 over 2004-2011).
RISK_SCALE = 0.7
# How much more every risk factor matters in vintages that met the crisis early in life.
STRESS = {2005: 0.15, 2006: 0.3, 2007: 0.3, 2008: 0.15}
# How much worse high LTV is in vintages whose house prices fell soon after origination (negative equity).
PRICE_FALL = {2005: 0.5, 2006: 1.0, 2007: 1.0, 2008: 0.5}
# Where the boom ran hottest, boom-year loans fell hardest.
SAND_STATES = ("CA", "FL", "NV", "AZ")
SAND_EFFECT = {2004: 0.3, 2005: 0.6, 2006: 0.8, 2007: 0.7, 2008: 0.3}
# A few sellers with worse (or better) underwriting than their fields show.
SELLER_EFFECT = {
    "COUNTRYWIDE HOME LOANS, INC.": 0.25,
    "TAYLOR, BEAN & WHITAKER MORTGAGE CORP.": 0.3,
    "WASHINGTON MUTUAL BANK": 0.15,
    "AMTRUST BANK": 0.2,
    "QUICKEN LOANS INC.": -0.1,
    "PROVIDENT FUNDING ASSOCIATES, L.P.": -0.15,
    "Other sellers": 0.05,
}
# Even the worst loans are not certain to default: probabilities level off towards sigmoid(0.85) = 70%.
CEILING_LOGIT = 0.85
# SATO compares the note rate with the market rate two months before the first payment (the usual note date).
PRICING_LAG_MONTHS = 2


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _num(loans: Mapping[str, ArrayLike], name: str) -> np.ndarray:
    return pd.to_numeric(pd.Series(np.asarray(loans[name], dtype=object)), errors="coerce").to_numpy(np.float64)


def _code(loans: Mapping[str, ArrayLike], name: str) -> np.ndarray:
    """A code column as plain strings, missing (None / NA / NaN) as ''."""
    return pd.Series(np.asarray(loans[name], dtype=object)).fillna("").astype(str).to_numpy()


def _by_year(table: Mapping[int, float], years: np.ndarray, clamp: bool) -> np.ndarray:
    """Look years up in a table; outside it, the nearest year's value (clamp) or 0."""
    first, last = min(table), max(table)
    values = np.array([table.get(y, 0.0) for y in range(first, last + 1)])
    found = values[np.clip(years, first, last) - first]
    return found if clamp else np.where((years >= first) & (years <= last), found, 0.0)


def sato(loans: Mapping[str, ArrayLike]) -> np.ndarray:
    """Spread at origination: note rate minus the market rate of its month, net of the term discount (%)."""
    note_month = month_number(_num(loans, "first_payment_date").astype(np.int64)) - PRICING_LAG_MONTHS
    return _num(loans, "orig_rate") - market_rate(note_month) - term_spread(_num(loans, "orig_term"))


def default_logit(loans: Mapping[str, ArrayLike]) -> np.ndarray:
    """Log-odds of default within 24 months, from a loan table's origination columns and ``vintage_year``."""
    year = _num(loans, "vintage_year").astype(np.int64)
    z = np.zeros(year.size)

    cs = _num(loans, "credit_score")
    cs_missing = np.isnan(cs)
    cs = np.where(cs_missing, 680.0, np.clip(cs, 300.0, 850.0))
    z += 0.002 * np.maximum(0.0, 780.0 - cs) + 0.01 * np.maximum(0.0, 660.0 - cs) + 0.4 * cs_missing

    # Equity: combined LTV when known (it includes second liens), else LTV.
    equity = np.fmax(_num(loans, "cltv"), _num(loans, "ltv"))
    eq_missing = np.isnan(equity)
    eq = np.where(eq_missing, 80.0, np.clip(equity, 30.0, 125.0))
    price_fall = 1.0 + _by_year(PRICE_FALL, year, clamp=False)
    z += 0.004 * (eq - 75.0) + 0.02 * np.maximum(0.0, eq - 80.0) * price_fall + 0.3 * eq_missing
    # Thin equity and weak credit compound; strength in either one offsets weakness in the other.
    both_good = (eq < 70.0) & (cs > 720.0)
    z += np.where(both_good, 0.0, np.maximum(-0.8, 0.0008 * (eq - 70.0) * (720.0 - cs)))

    dti = _num(loans, "dti")
    dti_missing = np.isnan(dti)
    dti = np.where(dti_missing, 35.0, np.clip(dti, 0.0, 65.0))
    z += 0.6 * (dti > 45.0) + 0.45 * dti_missing

    z += 0.5 * sato(loans)

    occupancy, purpose = _code(loans, "occupancy"), _code(loans, "loan_purpose")
    investor, cash_out = occupancy == "I", purpose == "C"
    # Risk layering: each weak spot is bad, several at once are much worse than their sum.
    layers = np.stack([cs < 680, eq > 90, dti > 45, investor, cash_out]).sum(axis=0)
    z += 0.8 * np.maximum(0, layers - 1)
    z += 0.35 * investor + 0.15 * (occupancy == "S") + 0.2 * cash_out + 0.15 * (purpose == "R")
    z += 0.7 * (investor & cash_out)

    z += np.interp(_num(loans, "orig_term"), [120, 180, 240, 360], [-0.6, -0.5, -0.25, 0.0])
    borrowers = _num(loans, "num_borrowers")
    z += 0.2 * (borrowers == 1) + 0.15 * np.isnan(borrowers)
    channel = _code(loans, "channel")
    z += np.where(year <= 2008, 0.25, 0.1) * np.isin(channel, ("B", "T"))
    property_type = _code(loans, "property_type")
    z += 0.5 * (property_type == "MH") + 0.1 * (property_type == "CO")
    z += 0.2 * (_num(loans, "num_units") >= 2)
    z += 0.1 * (_code(loans, "first_time_homebuyer") == "Y")
    z += -0.15 * np.clip(np.log(_num(loans, "orig_upb") / 150_000.0), -1.5, 1.5)
    z += _by_year(SAND_EFFECT, year, clamp=False) * np.isin(_code(loans, "property_state"), SAND_STATES)
    z += pd.Series(_code(loans, "seller_name")).map(SELLER_EFFECT).fillna(0.0).to_numpy()
    z += -0.5 * (_code(loans, "harp_indicator") == "Y")
    # Bad times make every weakness bite harder: the loan's risk score is stretched in stressed vintages.
    stretch = RISK_SCALE * (1.0 + _by_year(STRESS, year, clamp=False))
    logit = _by_year(VINTAGE_INTERCEPT, year, clamp=True) + stretch * z
    return logit - np.logaddexp(0.0, logit - CEILING_LOGIT)  # a smooth min(logit, CEILING_LOGIT)


# Linear hazard: one intercept for every vintage (the model never sees the vintage), set for the non-linear hazard's
# 5.3% mean PD on the default 2004-2011 mix (20,000 loans a vintage). A missing number counts at its reference value
# plus a constant of its own.
LINEAR_INTERCEPT = -3.55
LINEAR_SLOPES = {  # field: (log-odds per unit, reference value, log-odds when the field is missing)
    "credit_score": (-0.012, 740.0, 0.4),
    "ltv": (0.02, 75.0, 0.3),
    "dti": (0.025, 35.0, 0.45),
    "orig_rate": (0.45, 6.0, 0.0),
    "orig_term": (0.0025, 360.0, 0.0),
    "num_borrowers": (-0.35, 1.5, 0.15),
    "mi_pct": (0.004, 0.0, 0.1),
}
LINEAR_CODES = {  # field: {code: log-odds}; a missing code gets its own constant under ""
    "occupancy": {"I": 0.5, "S": 0.2, "": 0.2},
    "loan_purpose": {"C": 0.3, "R": 0.15, "": 0.15},
    "channel": {"B": 0.2, "T": 0.2, "": 0.1},
    "property_type": {"MH": 0.5, "CO": 0.1, "": 0.1},
    "first_time_homebuyer": {"Y": 0.1, "": 0.05},
    "harp_indicator": {"Y": -0.4},
}
LINEAR_LOG_UPB = -0.2  # per unit of log(UPB)


def linear_default_logit(loans: Mapping[str, ArrayLike]) -> np.ndarray:
    """Log-odds of default within 24 months, linear in the model's features (``hazard="linear"``)."""
    upb = _num(loans, "orig_upb")
    z = np.full(upb.size, LINEAR_INTERCEPT) + LINEAR_LOG_UPB * (np.log(np.maximum(upb, 1.0)) - np.log(150_000.0))
    for name, (slope, reference, if_missing) in LINEAR_SLOPES.items():
        value = _num(loans, name)
        missing = np.isnan(value)
        z += np.where(missing, if_missing, slope * (np.nan_to_num(value, nan=reference) - reference))
    for name, effects in LINEAR_CODES.items():
        code = _code(loans, name)
        missing_codes = ORIGINATION_FIELDS[name].missing | {""}
        code = np.where(np.isin(code, list(missing_codes)), "", code)
        z += pd.Series(code).map(effects).fillna(0.0).to_numpy()
    z += 0.25 * np.isin(_code(loans, "property_state"), SAND_STATES)
    return z


HAZARDS = ("nonlinear", "linear")


def default_probability(loans: Mapping[str, ArrayLike], hazard: str = "nonlinear") -> np.ndarray:
    """P(default label = 1 | origination fields) under the default label definition (90+ days within 24 months)."""
    if hazard == "nonlinear":
        return sigmoid(default_logit(loans))
    if hazard == "linear":
        return sigmoid(linear_default_logit(loans))
    raise ValueError(f"hazard {hazard!r}: expected one of {HAZARDS}")
