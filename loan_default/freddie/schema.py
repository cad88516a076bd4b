"""Every field of Freddie Mac's origination and monthly performance files, for every known layout.

Source: `shared/freddie/LAYOUT.md` (Freddie Mac's General User Guide, Nov 2022, plus notes on the July 2026 "Release 47"
layout). Files have no header, so a layout is recognised by its number of fields per line; the two 31-field origination
layouts (before 2023 and Release 47) are told apart by what positions 25 and 30 hold (see `detect_origination_layout`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


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
