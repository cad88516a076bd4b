"""Every field of Freddie Mac's origination and monthly performance files, for every known layout.

Source: `shared/freddie/LAYOUT.md` (Freddie Mac's General User Guide, Nov 2022, plus notes on the July 2026 "Release 47"
layout). Files have no header, so a layout is recognised by its number of fields per line; the two 31-field origination
layouts (before 2023 and Release 47) are told apart by what positions 25 and 30 hold (see `detect_origination_layout`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any


class Kind(StrEnum):
    """How a raw text field is converted."""

    INT = "int"  # integer, may be zero-padded ("000", "02")
    FLOAT = "float"  # literal decimal ("4.375", "248000.00")
    DATE = "date"  # YYYYMM, kept as the integer YYYYMM
    CODE = "code"  # short categorical code from a closed set ("P", "SF", "02")
    TEXT = "text"  # free text or identifier, kept as is


@dataclass(frozen=True)
class Field:
    """One field of a Freddie Mac file."""

    name: str
    kind: Kind
    description: str
    missing: frozenset[str] = frozenset()  # raw values that mean "not available" (compared after stripping)
    codes: frozenset[str] | None = None  # allowed codes for CODE fields (None = any); missing codes need not be listed
    low: float | None = None  # valid range for numbers (inclusive); outside it is a malformed value
    high: float | None = None
    blank_means: str | None = None  # for flags where blank is a real answer ("not super conforming"), not missing

    # The value rules below are the one home of what a field accepts: the file reader, the API's loan model (which
    # batch scoring uses too) and the feature code all call them, each with its own policy for a bad value
    # (skip or raise with file and line; answer 422; treat as missing).

    @cached_property
    def allowed(self) -> frozenset[str]:
        """Every code a CODE field accepts: its codes, its sentinel codes and what blank means."""
        return (self.codes or frozenset()) | self.missing | ({self.blank_means} if self.blank_means else frozenset())

    @cached_property
    def expected(self) -> str:
        """What a valid value looks like, for error messages ("an integer from 300 to 850 (or 9999 for not available)")."""
        if self.kind is Kind.DATE:
            return "a date YYYYMM (e.g. 201905)"
        if self.kind is Kind.CODE:
            return "one of " + ", ".join(sorted(self.allowed)) + ", or blank"
        if self.kind is Kind.TEXT:
            return "text"
        kind = "an integer" if self.kind is Kind.INT else "a number"
        if self.low is not None and self.high is not None:
            text = f"{kind} from {self.low:g} to {self.high:g}"
        elif self.low is not None:
            text = f"{kind} of at least {self.low:g}"
        else:
            text = kind
        if self.missing:
            text += f" (or {' / '.join(sorted(self.missing))} for not available)"
        return text

    @cached_property
    def code_width(self) -> int:
        """Width of a closed set of digit codes ("01".."96": 2), so "1" reads as "01"; 0 for other code sets."""
        widths = {len(c) for c in self.codes or ()}
        digits = self.codes is not None and all(c.isdigit() for c in self.codes)
        return widths.pop() if digits and len(widths) == 1 else 0

    def code(self, text: str) -> str | None:
        """A CODE field's raw text in canonical form, not yet checked: stripped, upper-cased, digit codes zero-padded
        to their width; blank is `blank_means` (None when blank means missing)."""
        code = text.strip().upper()
        if not code:
            return self.blank_means
        if self.code_width and code.isdigit():
            code = code.zfill(self.code_width)
        return code

    def number(self, value: Any) -> float | None:
        """A numeric field's value as a float (None when blank), from a number or numeric text; sentinel codes and
        out-of-range values are returned as they are. Raises `FieldError` for anything that is not a number."""
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            try:
                return float(text)
            except ValueError:
                raise FieldError(self.name, f"expected {self.expected}, got {value[:40]!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(self.name, f"expected {self.expected}, got {type(value).__name__}")
        return float(value)

    def in_range(self, number: float) -> bool:
        """Whether a number lies in the field's documented range (inclusive; open ends always pass; NaN never)."""
        return (
            number == number and (self.low is None or number >= self.low) and (self.high is None or number <= self.high)
        )

    @cached_property
    def check(self) -> Callable[[Any], int | float | str | None]:
        """``check(value)``: ``value`` as this field holds it, or `FieldError` naming the field.

        Numbers and dates: a number or numeric text, in ``[low, high]`` (a whole number for INT and DATE, a month
        01-12 for DATE) or one of the sentinel codes, which are kept (9999 stays 9999). Codes: text (digit codes also
        as an integer) that `code` turns into one of `allowed`; sentinel codes are kept ("9"). Text: stripped.
        Blank or None is None (for a code, what blank means). Built once per field (the API runs it for every field
        of every loan), so ``field.check`` is a plain function.
        """
        if self.kind in (Kind.INT, Kind.FLOAT, Kind.DATE):
            return self._number_checker()
        if self.kind is Kind.CODE:
            return self._code_checker()
        return self._text_checker()

    def _number_checker(self) -> Callable[[Any], int | float | None]:
        # Written for speed: one type test, then comparisons; an open range ends at the largest float, so infinity
        # and NaN fail the range test like any bad number.
        sentinels = {float(code) for code in self.missing}
        integral = self.kind in (Kind.INT, Kind.DATE)
        is_date = self.kind is Kind.DATE
        low = -sys.float_info.max if self.low is None else float(self.low)
        high = sys.float_info.max if self.high is None else float(self.high)
        if is_date:
            low, high = 100001.0, 999912.0
        name, expected, number_of = self.name, self.expected, self.number

        def check(value: Any) -> int | float | None:
            kind = type(value)
            number = value if kind is int or kind is float else number_of(value)
            if number is None:
                return None
            try:
                if number in sentinels:
                    return int(number)
                ok = low <= number <= high and (not integral or float(number).is_integer())
            except OverflowError:  # an integer too large for a float
                ok = False
            if not ok or (is_date and not 1 <= number % 100 <= 12):
                raise FieldError(name, f"expected {expected}, got {value!r:.40}")
            return int(number) if integral else float(number)

        return check

    def _code_checker(self) -> Callable[[Any], str | None]:
        allowed, name, expected, canonical = self.allowed, self.name, self.expected, self.code
        digits = all(code.isdigit() for code in allowed)

        def check(value: Any) -> str | None:
            kind = type(value)
            if kind is str:
                if value in allowed:
                    return value
                code = canonical(value)
                if code is None:
                    return None
            elif value is None:
                return self.blank_means
            elif kind is int and digits:
                code = canonical(str(value))
            else:
                raise FieldError(name, f"expected {expected}, got {kind.__name__}")
            if code not in allowed:
                raise FieldError(name, f"expected {expected}, got {value!r:.40}")
            return code

        return check

    def _text_checker(self) -> Callable[[Any], str | None]:
        name = self.name

        def check(value: Any) -> str | None:
            kind = type(value)
            if value is None:
                return None
            if kind is not str and kind is not int:
                raise FieldError(name, f"expected text, got {kind.__name__}")
            return str(value).strip() or None

        return check


class FieldError(ValueError):
    """A value its field does not accept; the message names the field: ``dti: expected an integer ..., got 'abc'``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def _f(name, kind, description, missing=(), codes=None, low=None, high=None, blank_means=None) -> Field:
    return Field(
        name,
        Kind(kind),
        description,
        frozenset(missing),
        None if codes is None else frozenset(codes),
        low,
        high,
        blank_means,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Origination file
# ---------------------------------------------------------------------------------------------------------------------
_YN = ("Y", "N")

ORIGINATION_FIELDS: dict[str, Field] = {
    f.name: f
    for f in [
        _f("credit_score", "int", "Borrower credit score (300-850)", missing=("9999",), low=300, high=850),
        _f("first_payment_date", "date", "First scheduled payment due date"),
        _f("first_time_homebuyer", "code", "First-time homebuyer flag", missing=("9",), codes=_YN),
        _f("maturity_date", "date", "Month of the final scheduled payment"),
        _f("msa", "text", "Metropolitan statistical area or division code (blank: not in an MSA, or unknown)"),
        _f("mi_pct", "int", "Mortgage insurance percent (0 = no MI)", missing=("999",), low=0, high=55),
        _f("num_units", "int", "Number of units", missing=("99",), low=1, high=4),
        _f("occupancy", "code", "Occupancy: P primary, I investment, S second home", missing=("9",), codes="PIS"),
        _f("cltv", "int", "Original combined loan-to-value (%)", missing=("999",), low=0, high=998),
        _f("dti", "int", "Original debt-to-income (%); >65 is reported as 999", missing=("999",), low=0, high=65),
        _f("orig_upb", "float", "Original unpaid principal balance ($)", low=0),
        _f("ltv", "int", "Original loan-to-value (%)", missing=("999",), low=0, high=998),
        _f("orig_rate", "float", "Original note rate (%)", low=0, high=30),
        _f("channel", "code", "Channel: R retail, B broker, C correspondent, T TPO", missing=("9",), codes="RBCT"),
        _f("ppm_flag", "code", "Prepayment penalty mortgage flag", codes=_YN),
        _f("amortization_type", "code", "Amortization type", codes=("FRM", "ARM")),
        _f("property_state", "text", "Property state or territory"),
        _f(
            "property_type",
            "code",
            "Property type: SF single-family, CO condo, PU PUD, MH manufactured, CP co-op",
            missing=("99",),
            codes=("SF", "CO", "PU", "MH", "CP"),
        ),
        _f("postal_code", "text", "First three zip digits followed by 00 (blank: unknown)"),
        _f("loan_id", "text", "Loan sequence number (join key)"),
        _f(
            "loan_purpose",
            "code",
            "Loan purpose: P purchase, C cash-out refi, N no-cash-out refi, R refi not specified",
            missing=("9",),
            codes="PCNR",
        ),
        _f("orig_term", "int", "Original loan term (months)", low=1, high=600),
        _f("num_borrowers", "int", "Number of borrowers", missing=("99",), low=1, high=10),
        _f("seller_name", "text", "Seller name"),
        _f("servicer_name", "text", "Servicer name"),
        _f("super_conforming", "code", "Super conforming flag", codes=("Y",), blank_means="N"),
        _f("pre_harp_loan_id", "text", "Pre-relief-refinance loan sequence number"),
        _f(
            "program_indicator",
            "code",
            "Program: H Home Possible, F HFA Advantage, R Refi Possible",
            missing=("9",),
            codes="HFR",
        ),
        _f("harp_indicator", "code", "Relief refinance (HARP) indicator", codes=("Y",), blank_means="N"),
        _f(
            "valuation_method",
            "code",
            "Property valuation: 1 appraisal waiver, 2 full appraisal, 3 other",
            missing=("9",),
            codes="1234",
        ),
        _f("interest_only", "code", "Interest-only indicator", codes=_YN),
        _f("mi_cancellation", "code", "MI cancellation indicator (7 = not applicable)", codes=("Y", "N", "7")),
        _f("vantage_score", "int", "VantageScore 4.0 (Release 47)", missing=("9999",), low=300, high=850),
    ]
}

_ORIG_BASE = [
    "credit_score", "first_payment_date", "first_time_homebuyer", "maturity_date", "msa", "mi_pct", "num_units",
    "occupancy", "cltv", "dti", "orig_upb", "ltv", "orig_rate", "channel", "ppm_flag", "amortization_type",
    "property_state", "property_type", "postal_code", "loan_id", "loan_purpose", "orig_term", "num_borrowers",
    "seller_name",
]  # fmt: skip
_ORIG_TAIL_2022 = [
    "servicer_name", "super_conforming", "pre_harp_loan_id", "program_indicator", "harp_indicator",
    "valuation_method", "interest_only",
]  # fmt: skip
_ORIG_TAIL_R47 = [
    "super_conforming", "pre_harp_loan_id", "program_indicator", "harp_indicator", "valuation_method",
    "interest_only", "vantage_score",
]  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """An ordered list of field names, as they appear on a line."""

    name: str
    file: str  # "origination" or "performance"
    columns: tuple[str, ...]
    fields: dict[str, Field] = field(repr=False, compare=False, default_factory=dict)

    @property
    def n_fields(self) -> int:
        return len(self.columns)


def _layout(name: str, file: str, columns: list[str], fields: dict[str, Field]) -> Layout:
    return Layout(name, file, tuple(columns), {c: fields[c] for c in columns})


ORIGINATION_LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in [
        _layout("orig31", "origination", _ORIG_BASE + _ORIG_TAIL_2022, ORIGINATION_FIELDS),
        _layout("orig32", "origination", _ORIG_BASE + _ORIG_TAIL_2022 + ["mi_cancellation"], ORIGINATION_FIELDS),
        _layout("orig31_r47", "origination", _ORIG_BASE + _ORIG_TAIL_R47, ORIGINATION_FIELDS),
    ]
}

# ---------------------------------------------------------------------------------------------------------------------
# Monthly performance file
# ---------------------------------------------------------------------------------------------------------------------
ZERO_BALANCE_CODES = ("01", "02", "03", "06", "09", "15", "16", "96")

PERFORMANCE_FIELDS: dict[str, Field] = {
    f.name: f
    for f in [
        _f("loan_id", "text", "Loan sequence number (join key)"),
        _f("period", "date", "Monthly reporting period"),
        _f("current_upb", "float", "Current actual unpaid principal balance ($)", low=0),
        _f("delinquency_status", "text", "Months delinquent; RA = REO acquired; XX or blank = unknown"),
        _f("loan_age", "int", "Months since first payment or modification", low=-12, high=999),
        _f("remaining_months", "int", "Remaining months to legal maturity", low=-999, high=999),
        _f("defect_settlement_date", "date", "Defect settlement date"),
        _f("modification_flag", "code", "Y modified this period, P modified earlier", codes="YP"),
        _f("zero_balance_code", "code", "Zero balance (termination) code", codes=ZERO_BALANCE_CODES),
        _f("zero_balance_date", "date", "Zero balance effective date"),
        _f("current_rate", "float", "Current interest rate (%)", low=0, high=30),
        _f("non_interest_upb", "float", "Current non-interest-bearing UPB ($)"),
        _f("ddlpi", "date", "Due date of last paid installment"),
        _f("mi_recoveries", "float", "MI recoveries ($)"),
        _f("net_sale_proceeds", "text", "Net sale proceeds ($), or U unknown / C covered"),
        _f("non_mi_recoveries", "float", "Non-MI recoveries ($)"),
        _f("expenses", "float", "Total expenses ($)"),
        _f("legal_costs", "float", "Legal costs ($)"),
        _f("maintenance_costs", "float", "Maintenance and preservation costs ($)"),
        _f("taxes_insurance", "float", "Taxes and insurance ($)"),
        _f("misc_expenses", "float", "Miscellaneous expenses ($)"),
        _f("actual_loss", "float", "Actual loss ($)"),
        _f("modification_cost", "float", "Cumulative modification cost ($)"),
        _f("step_modification_flag", "code", "Step modification flag", codes=_YN),
        _f("deferred_payment_plan", "code", "Payment deferral flag", codes="YP"),
        _f("eltv", "int", "Estimated LTV (%)", missing=("999",), low=0, high=998),
        _f("zero_balance_removal_upb", "float", "UPB just before the zero-balance event ($)"),
        _f("delinquent_accrued_interest", "float", "Delinquent accrued interest ($)"),
        _f("disaster_delinquency", "code", "Delinquency due to disaster", codes=("Y",)),
        _f("borrower_assistance", "code", "Borrower assistance: F forbearance, R repayment, T trial", codes="FRT"),
        _f("current_month_modification_cost", "float", "Current-month modification cost ($)"),
        _f("interest_bearing_upb", "float", "Interest-bearing UPB ($)"),
        _f("mi_cancellation", "code", "MI cancellation indicator", codes=("Y", "N", "7")),
        _f("servicer_name", "text", "Servicer name"),
        _f("bankruptcy_cramdown_costs", "float", "Bankruptcy cramdown costs ($)"),
    ]
}

_PERF_ORDER = list(PERFORMANCE_FIELDS)
PERFORMANCE_LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in [
        _layout("perf30", "performance", _PERF_ORDER[:30], PERFORMANCE_FIELDS),
        _layout("perf32", "performance", _PERF_ORDER[:32], PERFORMANCE_FIELDS),
        _layout("perf35", "performance", _PERF_ORDER[:35], PERFORMANCE_FIELDS),
    ]
}

# The newest layouts we write by default (what files published 2023 to early 2026 look like).
DEFAULT_ORIGINATION_LAYOUT = "orig32"
DEFAULT_PERFORMANCE_LAYOUT = "perf32"


class LayoutError(ValueError):
    """A line whose field count (or content) matches no known layout."""


def detect_origination_layout(fields: list[str], where: str = "") -> Layout:
    """Pick the origination layout for one split line.

    31 fields is ambiguous: before 2023 position 25 is the servicer name and 30 the valuation method (1/2/3/9);
    in Release 47 position 25 is the super-conforming flag and 30 the interest-only flag (Y/N).
    """
    n = len(fields)
    if n == 32:
        return ORIGINATION_LAYOUTS["orig32"]
    if n == 31:
        r47 = fields[24].strip() in {"", "Y"} and fields[29].strip() in {"Y", "N"}
        return ORIGINATION_LAYOUTS["orig31_r47" if r47 else "orig31"]
    known = sorted({lay.n_fields for lay in ORIGINATION_LAYOUTS.values()})
    raise LayoutError(f"{where}: {n} fields, but origination files have {known} fields per line")


def detect_performance_layout(fields: list[str], where: str = "") -> Layout:
    """Pick the performance layout for one split line (30, 32 or 35 fields)."""
    for layout in PERFORMANCE_LAYOUTS.values():
        if layout.n_fields == len(fields):
            return layout
    known = sorted(lay.n_fields for lay in PERFORMANCE_LAYOUTS.values())
    raise LayoutError(f"{where}: {len(fields)} fields, but performance files have {known} fields per line")


_NEW_ID = re.compile(r"^[FA](\d{2})Q([1-4])")  # F19Q10000001
_OLD_ID = re.compile(r"^[FA]1(\d{2})Q([1-4])")  # F199Q1159323, F105Q1000001


def vintage_from_loan_id(loan_id: str) -> tuple[int, int] | None:
    """(year, quarter) of origination encoded in a loan sequence number, or None if the id has no known pattern."""
    m = _NEW_ID.match(loan_id) or _OLD_ID.match(loan_id)
    if not m:
        return None
    yy = int(m.group(1))
    return (1900 + yy if yy >= 90 else 2000 + yy), int(m.group(2))
