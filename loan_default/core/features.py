"""Which origination fields become model features, how raw values are read, and the engineered features.

Raw values come from two places that must agree: the loan table (numbers as float64 with NaN, codes as strings) and
REST requests (raw strings or numbers, possibly Freddie's sentinel codes such as ``9999`` or ``"9"``). Both are turned
into the same *columns*: a dict of field name -> numpy array, float64 with NaN for numbers and object arrays of
``str | None`` for codes and text. Everything after that is shared, so one loan scored alone gets exactly the batch
result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loan_default.common.months import valid_month_number
from loan_default.freddie.schema import ORIGINATION_FIELDS, Field, Kind

# ---------------------------------------------------------------------------------------------------------------------
# Feature spec. Every origination field is either used or excluded with a reason (checked at import).
# ---------------------------------------------------------------------------------------------------------------------

# Numeric fields scaled into x_num; "log" fields are right-skewed amounts, modelled on a log scale.
NUMERIC_FIELDS: dict[str, str] = {
    "credit_score": "identity",
    "mi_pct": "identity",
    "num_units": "identity",
    "cltv": "identity",
    "dti": "identity",
    "orig_upb": "log",
    "ltv": "identity",
    "orig_rate": "identity",
    "orig_term": "identity",
    "num_borrowers": "identity",
    "vantage_score": "identity",  # Release 47 only; dropped at fit time when training data never has it
}

# Short closed code sets: one-hot columns in x_num (codes rarer than min_frequency share the all-zero pattern).
ONE_HOT_FIELDS: tuple[str, ...] = (
    "first_time_homebuyer",
    "occupancy",
    "channel",
    "ppm_flag",
    "amortization_type",
    "property_type",
    "loan_purpose",
    "super_conforming",
    "program_indicator",
    "harp_indicator",
    "valuation_method",
    "interest_only",
)

# Open-ended text with many values: integer ids for embeddings (rare values share the unknown id 0).
CATEGORICAL_FIELDS: tuple[str, ...] = ("property_state", "msa", "postal_code", "seller_name")

# Read only to derive features: raw dates would let the model memorise calendar time instead of risk.
DERIVATION_FIELDS: tuple[str, ...] = ("first_payment_date", "maturity_date")

EXCLUDED_FIELDS: dict[str, str] = {
    "loan_id": "identifier (join key), carries no risk information",
    "pre_harp_loan_id": "identifier of the refinanced loan; harp_indicator already says a loan is a relief refinance",
    "servicer_name": "servicer as of the LAST reported period: troubled loans move to special servicers (leakage)",
    "mi_cancellation": "records whether MI was cancelled after origination, a post-origination event (leakage)",
}

INPUT_FIELDS: tuple[str, ...] = (*NUMERIC_FIELDS, *ONE_HOT_FIELDS, *CATEGORICAL_FIELDS, *DERIVATION_FIELDS)

_undecided = set(ORIGINATION_FIELDS) - set(INPUT_FIELDS) - set(EXCLUDED_FIELDS)
assert not _undecided, f"origination fields with no feature decision: {sorted(_undecided)}"

# Engineered continuous features (imputed, clipped and scaled like the numeric fields).
ENGINEERED_NUMERIC: tuple[str, ...] = ("sato", "cltv_minus_ltv")

# Outlier-detector inputs (why: docs/decisions/0001-outlier-matrix-features.md): continuous fields in
# which a keying slip lands far from every real loan, the rate as a spread over its month, and consistency checks that
# are 0 for every possible loan. Discrete fields (units, borrowers, term, MI %) stay out: rare-but-valid codes are not
# errors, and the schema's range check already catches impossible codes.
OUTLIER_NUMERIC: tuple[str, ...] = ("credit_score", "ltv", "dti", "orig_upb", "sato")
OUTLIER_CHECKS: tuple[str, ...] = ("cltv_below_ltv", "dti_zero")

# Engineered 0/1 flags; False when an input is missing (the inputs' own missing indicators carry that).
ENGINEERED_FLAGS: tuple[str, ...] = (
    "term_le_180",
    "term_240",
    "term_360",
    "term_other",
    "first_time_buyer_primary",
    "first_time_buyer_not_primary",
    "investor_cash_out",
    "has_mi",
    "high_ltv_no_mi",
    "term_mismatch",
)

FIELD_LABELS: dict[str, str] = {
    "credit_score": "Credit score",
    "mi_pct": "Mortgage insurance %",
    "num_units": "Number of units",
    "cltv": "Combined LTV (%)",
    "dti": "Debt-to-income (%)",
    "orig_upb": "Loan amount (log $)",
    "ltv": "LTV (%)",
    "orig_rate": "Note rate (%)",
    "orig_term": "Loan term (months)",
    "num_borrowers": "Number of borrowers",
    "vantage_score": "VantageScore 4.0",
    "first_time_homebuyer": "First-time buyer",
    "occupancy": "Occupancy",
    "channel": "Channel",
    "ppm_flag": "Prepayment penalty",
    "amortization_type": "Amortization",
    "property_type": "Property type",
    "loan_purpose": "Loan purpose",
    "super_conforming": "Super conforming",
    "program_indicator": "Program",
    "harp_indicator": "Relief refinance (HARP)",
    "valuation_method": "Valuation method",
    "interest_only": "Interest only",
    "property_state": "State",
    "msa": "Metro area (MSA)",
    "postal_code": "3-digit ZIP",
    "seller_name": "Seller",
    "sato": "SATO (rate spread)",
    "cltv_minus_ltv": "CLTV minus LTV (second liens)",
    "term_le_180": "Term <= 15 years",
    "term_240": "Term 20 years",
    "term_360": "Term 30 years",
    "term_other": "Term other",
    "first_time_buyer_primary": "First-time buyer, primary residence",
    "first_time_buyer_not_primary": "First-time buyer, not primary residence",
    "investor_cash_out": "Investor cash-out refinance",
    "has_mi": "Has mortgage insurance",
    "high_ltv_no_mi": "LTV > 80 without MI",
    "term_mismatch": "Term disagrees with dates",
}

CODE_LABELS: dict[str, dict[str, str]] = {
    "occupancy": {"P": "primary", "I": "investment", "S": "second home"},
    "channel": {"R": "retail", "B": "broker", "C": "correspondent", "T": "TPO"},
    "property_type": {"SF": "single-family", "CO": "condo", "PU": "PUD", "MH": "manufactured", "CP": "co-op"},
    "loan_purpose": {"P": "purchase", "C": "cash-out refi", "N": "no-cash-out refi", "R": "refi"},
    "program_indicator": {"H": "Home Possible", "F": "HFA Advantage", "R": "Refi Possible"},
    "valuation_method": {"1": "appraisal waiver", "2": "full appraisal", "3": "other appraisal", "4": "code 4"},
}
_YES_NO = {"Y": "yes", "N": "no"}


def code_label(field: str, code: str) -> str:
    """Readable one-hot column name, e.g. ``Occupancy: investment``."""
    return f"{FIELD_LABELS[field]}: {CODE_LABELS.get(field, _YES_NO).get(code, code)}"


# ---------------------------------------------------------------------------------------------------------------------
# Reading raw values
# ---------------------------------------------------------------------------------------------------------------------
_NUMERIC_KINDS = (Kind.INT, Kind.FLOAT, Kind.DATE)
_MISSING_NUMBERS: dict[str, frozenset[float]] = {
    name: frozenset(float(code) for code in f.missing)
    for name, f in ORIGINATION_FIELDS.items()
    if f.kind in _NUMERIC_KINDS
}


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float | np.floating) and math.isnan(value))


def parse_text(value: Any) -> str | None:
    """Stripped string, or None when blank/missing; whole numbers lose a trailing ``.0`` (43580.0 -> "43580")."""
    if _is_null(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def parse_code(field: Field, value: Any) -> str | None:
    """A CODE field's value in the schema's canonical form (`Field.code`), None when missing (a sentinel code, or
    blank without a ``blank_means``) or not a valid code: invalid codes count as missing, like out-of-range numbers."""
    text = parse_text(value)
    code = field.blank_means if text is None else field.code(text)
    return None if code is None or code in field.missing or code not in field.allowed else code


def parse_number(field: Field, value: Any) -> float:
    """A numeric field's value as float (`Field.number`), NaN when blank or a sentinel code (9999, 999, ...).
    Out-of-range values are kept here (`validate` drops them); text that is no number raises `FieldError`."""
    if _is_null(value):
        return math.nan
    number = field.number(value) if isinstance(value, str) else float(value)
    return math.nan if number is None or number in _MISSING_NUMBERS[field.name] else number


def parse_value(name: str, value: Any) -> float | str | None:
    """One raw input value, read by its field's kind."""
    f = ORIGINATION_FIELDS[name]
    if f.kind in _NUMERIC_KINDS:
        return parse_number(f, value)
    return parse_code(f, value) if f.kind == Kind.CODE else parse_text(value)


# Input fields read as float64 arrays, and those read as object arrays of str | None.
NUMBER_FIELDS: tuple[str, ...] = tuple(f for f in INPUT_FIELDS if ORIGINATION_FIELDS[f].kind in _NUMERIC_KINDS)
OBJECT_FIELDS: tuple[str, ...] = tuple(f for f in INPUT_FIELDS if f not in NUMBER_FIELDS)
_NUMBER_SPECS = [ORIGINATION_FIELDS[f] for f in NUMBER_FIELDS]


def frame_columns(df: pd.DataFrame, names: Sequence[str] = INPUT_FIELDS) -> dict[str, np.ndarray]:
    """Input columns (``names``, default all) of a loan table; a field absent from the table counts as missing on
    every row."""
    cols: dict[str, np.ndarray] = {}
    for name in names:
        number = name in NUMBER_FIELDS
        if name not in df.columns:
            cols[name] = np.full(len(df), parse_value(name, None), dtype=np.float64 if number else object)
        elif number and pd.api.types.is_numeric_dtype(df[name].dtype):
            values = df[name].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            values[np.isin(values, list(_MISSING_NUMBERS[name]))] = np.nan
            cols[name] = values
        else:
            # Parse each distinct value once with the scalar parser, so a table and a REST request agree exactly.
            codes, uniques = pd.factorize(df[name], use_na_sentinel=True)
            parsed = [parse_value(name, u) for u in uniques] + [parse_value(name, None)]
            cols[name] = np.asarray(parsed, dtype=np.float64 if number else object)[codes]
    return cols


def loan_columns(loan: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Input columns (length 1) of one raw loan dict; missing keys count as missing, unknown keys are ignored."""
    numbers = np.array([[parse_number(f, loan.get(f.name)) for f in _NUMBER_SPECS]])
    objects = np.empty((1, len(OBJECT_FIELDS)), dtype=object)
    objects[0, :] = [parse_value(name, loan.get(name)) for name in OBJECT_FIELDS]
    return {
        **{name: numbers[:, i] for i, name in enumerate(NUMBER_FIELDS)},
        **{name: objects[:, i] for i, name in enumerate(OBJECT_FIELDS)},
    }


_LOW = np.array([-np.inf if f.low is None else f.low for f in _NUMBER_SPECS])
_HIGH = np.array([np.inf if f.high is None else f.high for f in _NUMBER_SPECS])


def validate(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``cols`` with numbers outside the schema's documented valid range (e.g. DTI 70, credit score 7580) set to
    NaN: the model treats them as missing rather than trusting them."""
    numbers = np.column_stack([cols[name] for name in NUMBER_FIELDS])
    numbers[(numbers < _LOW) | (numbers > _HIGH)] = np.nan
    return {**cols, **{name: numbers[:, i] for i, name in enumerate(NUMBER_FIELDS)}}


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """log1p that keeps the sign, so corrupted negative amounts stay finite (and stand out) instead of NaN."""
    return np.sign(values) * np.log1p(np.abs(values))


# ---------------------------------------------------------------------------------------------------------------------
# Engineered features
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RateTable:
    """Mean note rate of the training loans per first-payment month, for SATO (spread at origination).

    ``months`` are sorted month numbers (`valid_month_number`) and ``means`` their mean rates. A month with no training
    loans takes the nearest known month (the earlier one on a tie): rates move slowly, and a global mean would put
    a trend into the spread.
    """

    months: np.ndarray  # int64
    means: np.ndarray  # float64

    @classmethod
    def fit(cls, first_payment_date: np.ndarray, rate: np.ndarray) -> RateTable:
        month = valid_month_number(first_payment_date)
        known = ~np.isnan(month) & ~np.isnan(rate)
        months, inverse = np.unique(month[known].astype(np.int64), return_inverse=True)
        sums = np.bincount(inverse, weights=rate[known], minlength=len(months))
        counts = np.bincount(inverse, minlength=len(months))
        return cls(months, sums / np.maximum(counts, 1))

    def lookup(self, first_payment_date: np.ndarray) -> np.ndarray:
        """Mean training rate for each loan's first-payment month (NaN when the date is missing or the table empty)."""
        month = valid_month_number(first_payment_date)
        if len(self.months) == 0:
            return np.full(month.shape, np.nan)
        safe = np.nan_to_num(month)
        right = np.clip(np.searchsorted(self.months, safe), 0, len(self.months) - 1)
        left = np.clip(right - 1, 0, len(self.months) - 1)
        pick = np.where(np.abs(safe - self.months[left]) <= np.abs(self.months[right] - safe), left, right)
        return np.where(np.isnan(month), np.nan, self.means[pick])


def sato(cols: Mapping[str, np.ndarray], rates: RateTable) -> np.ndarray:
    """Note rate minus the mean training rate of the loan's first-payment month (NaN when either is missing)."""
    return cols["orig_rate"] - rates.lookup(cols["first_payment_date"])


def engineered_numeric(cols: Mapping[str, np.ndarray], rates: RateTable) -> dict[str, np.ndarray]:
    """Continuous engineered features from *validated* columns (out-of-range values already NaN)."""
    return {
        # Spread over the contemporaneous mean rate: a high spread prices in risk the other fields do not show.
        "sato": sato(cols, rates),
        # Secondary financing at origination (piggyback loans).
        "cltv_minus_ltv": cols["cltv"] - cols["ltv"],
    }


def consistency_checks(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`OUTLIER_CHECKS` from raw (unvalidated) columns: 0 for every possible loan, > 0 where a definition is broken.

    A missing input breaks nothing, so it gives 0 (the model's missing indicators carry missingness).
    """
    ltv, cltv, dti = cols["ltv"], cols["cltv"], cols["dti"]
    shortfall = np.fmax(ltv - cltv, 0.0)  # fmax gives the 0 where an input is missing (NaN)
    return {
        # Combined LTV counts the first lien too, so it cannot be below LTV: the shortfall in LTV points.
        "cltv_below_ltv": shortfall,
        # Back-end DTI includes this loan's own payment, so a DTI of exactly 0 is a placeholder, not a borrower.
        "dti_zero": (dti == 0).astype(np.float64),
    }


def engineered_flags(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """0/1 engineered features (boolean arrays) from validated columns; comparisons with NaN/None are False."""
    term, occupancy, fthb = cols["orig_term"], cols["occupancy"], cols["first_time_homebuyer"]
    mi, known_term = cols["mi_pct"], ~np.isnan(cols["orig_term"])
    le_180, t240, t360 = term <= 180, term == 240, term == 360
    # Loan term is defined as the number of payments from the first payment to maturity, both inclusive.
    dated_term = valid_month_number(cols["maturity_date"]) - valid_month_number(cols["first_payment_date"]) + 1
    first_time = fthb == "Y"
    return {
        "term_le_180": le_180,
        "term_240": t240,
        "term_360": t360,
        "term_other": known_term & ~(le_180 | t240 | t360),
        "first_time_buyer_primary": first_time & (occupancy == "P"),
        "first_time_buyer_not_primary": first_time & ((occupancy == "I") | (occupancy == "S")),
        "investor_cash_out": (occupancy == "I") & (cols["loan_purpose"] == "C"),
        "has_mi": mi > 0,
        # Above 80% LTV Freddie requires MI; without it the loan is a relief refinance or a data problem.
        "high_ltv_no_mi": (cols["ltv"] > 80) & (mi == 0),
        "term_mismatch": known_term & ~np.isnan(dated_term) & (dated_term != term),
    }
