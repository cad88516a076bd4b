"""Origination fields of synthetic loans: marginals, correlations and sentinel rates after CALIBRATION.md.

Numbers are drawn through a Gaussian copula (credit score, LTV, DTI and balance are mildly correlated) from quantile
tables that move from 2006-like underwriting to 2020-like underwriting as the vintage tightens after the crisis. The note
rate is the market rate of the note month, plus a term discount, plus loan-level risk pricing, plus noise: loans of the
same month share a market rate, so the spread over it (SATO) carries risk information.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loan_default.common.months import yyyymm
from loan_default.freddie.schema import ORIGINATION_FIELDS
from loan_default.synthetic.economy import conforming_limit, house_price_index, market_rate, term_spread

_P = np.array([0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0])
# Quantile tables at _P: (2006-like, 2020-like). UPB is in $1,000 at 2006 prices.
_CREDIT = ([540, 589, 624, 682, 729, 772, 803, 813, 835], [580, 636, 668, 724, 761, 787, 809, 817, 840])
_LTV = ([6, 20, 33, 61, 77, 81, 95, 100, 100], [6, 24, 39, 65, 77, 81, 95, 97, 97])
_DTI = ([1, 10, 16, 28, 37, 45, 57, 63, 75], [1, 11, 17, 27, 35, 43, 49, 50, 50])
_UPB = [10, 37, 58, 106, 158, 235, 372, 417, 470]
# Correlations of the normal scores of (credit score, LTV, DTI, balance).
_CORR = np.array(
    [
        [1.0, -0.2, -0.2, 0.15],
        [-0.2, 1.0, 0.1, 0.1],
        [-0.2, 0.1, 1.0, 0.15],
        [0.15, 0.1, 0.15, 1.0],
    ]
)
_TERMS = ([360, 180, 240, 120, 300, 336, 348, 324, 204], [0.84, 0.10, 0.04, 0.01, 0.005, 0.002, 0.001, 0.001, 0.001])
_PURCHASE_SHARE = {
    1999: 0.45, 2000: 0.6, 2001: 0.35, 2002: 0.3, 2003: 0.25, 2004: 0.45, 2005: 0.45, 2006: 0.5, 2007: 0.5,
    2008: 0.4, 2009: 0.2, 2010: 0.25, 2011: 0.25, 2012: 0.2, 2013: 0.3, 2014: 0.5, 2015: 0.45, 2016: 0.45,
    2017: 0.55, 2018: 0.6, 2019: 0.5, 2020: 0.45, 2021: 0.35, 2022: 0.6, 2023: 0.8, 2024: 0.8, 2025: 0.75,
}  # fmt: skip
_HARP_SHARE = {2009: 0.05, 2010: 0.15, 2011: 0.2, 2012: 0.3, 2013: 0.3, 2014: 0.15, 2015: 0.08, 2016: 0.08, 2017: 0.08}
_HIGH_COST_STATES = ("CA", "NY", "NJ", "MA", "MD", "VA", "DC", "HI", "WA", "CO")

# state, share of loans (%), share outside any MSA (%), MSA codes, zip3 range
_STATE_TABLE = """
CA 7.0 4 31080,41860,40140,41740,40900,41940 900-961|FL 7.0 6 33100,45300,36740,27260 320-349
TX 6.3 12 19100,26420,12420,41700 750-799|IL 5.2 10 16980,40420 600-629|PA 3.7 14 37980,38300,10900 150-196
MI 3.7 16 19820,24340,29620 480-499|OH 3.7 13 17460,18140,17140 430-458|NC 3.6 20 16740,39580,24660 270-289
NY 3.4 8 35620,15380,40380,10580 100-149|GA 3.3 15 12060,12260 300-319|NJ 3.0 2 35620,37980,45940 070-089
VA 3.0 14 47900,40060,47260 220-246|WA 2.8 9 42660,44060 980-994|MA 2.6 4 14460,49340,44140 010-027
AZ 2.6 6 38060,46060 850-865|MD 2.3 5 12580,47900 206-219|CO 2.4 10 19740,17820 800-816
MN 2.4 15 33460,40340 550-567|WI 2.3 20 33340,31540 530-549|MO 2.1 20 41180,28140 630-658
IN 1.9 18 26900,23060 460-479|TN 1.8 20 34980,32820,28940 370-385|SC 1.7 18 17900,24860,16700 290-299
OR 1.4 15 38900,21660 970-979|UT 1.3 10 41620,39340 840-847|NV 1.2 8 29820,39900 889-898
AL 1.1 30 13820,26620 350-369|CT 1.2 6 25540,14860 060-069|KY 1.0 35 31140,30460 400-427
LA 0.9 25 35380,12940 700-714|OK 0.6 30 36420,46140 730-749|IA 0.8 35 19780,16300,43580 500-528
KS 0.7 30 48620,28140 660-679|AR 0.5 40 30780 716-729|NM 0.6 35 10740 870-884|NH 0.6 35 31700 030-038
ID 0.6 30 14260 832-838|NE 0.5 30 36540,30700 680-693|ME 0.4 50 38860 039-049|HI 0.4 10 46520 967-968
MS 0.4 50 27140 386-397|RI 0.4 3 39300 028-029|DE 0.35 15 20100,37980 197-199|WV 0.3 50 16620 247-268
MT 0.35 55 13740 590-599|VT 0.2 60 15540 050-059|SD 0.2 50 43620 570-577|ND 0.15 50 22020 580-588
AK 0.2 45 11260 995-999|WY 0.15 55 16940 820-831|DC 0.25 0 47900 200-205|PR 0.05 20 41980 006-009
"""

_SELLERS_BY_ERA = {
    1999: [
        "WELLS FARGO BANK, N.A.", "CHASE HOME FINANCE LLC", "WASHINGTON MUTUAL BANK", "COUNTRYWIDE HOME LOANS, INC.",
        "BANK OF AMERICA, N.A.", "ABN AMRO MORTGAGE GROUP, INC.", "CITIMORTGAGE, INC.", "NATIONAL CITY MORTGAGE CO.",
        "SUNTRUST MORTGAGE, INC.", "GMAC MORTGAGE, LLC", "PRINCIPAL RESIDENTIAL MORTGAGE, INC.", "FIFTH THIRD BANK",
        "TAYLOR, BEAN & WHITAKER MORTGAGE CORP.", "BRANCH BANKING & TRUST COMPANY", "FLAGSTAR BANK, FSB",
        "AMTRUST BANK", "U.S. BANK N.A.",
    ],
    2009: [
        "WELLS FARGO BANK, N.A.", "JPMORGAN CHASE BANK, N.A.", "BANK OF AMERICA, N.A.", "U.S. BANK N.A.",
        "CITIMORTGAGE, INC.", "SUNTRUST MORTGAGE, INC.", "BRANCH BANKING & TRUST COMPANY", "FLAGSTAR BANK, FSB",
        "QUICKEN LOANS INC.", "PROVIDENT FUNDING ASSOCIATES, L.P.", "FIFTH THIRD BANK", "PNC BANK, NA",
        "STEARNS LENDING, LLC", "NATIONSTAR MORTGAGE LLC",
    ],
    2016: [
        "WELLS FARGO BANK, N.A.", "QUICKEN LOANS INC.", "UNITED SHORE FINANCIAL SERVICES, LLC", "LOANDEPOT.COM, LLC",
        "CALIBER HOME LOANS, INC.", "JPMORGAN CHASE BANK, N.A.", "U.S. BANK N.A.", "PENNYMAC CORP.",
        "GUARANTEED RATE, INC.", "NEWREZ LLC", "FAIRWAY INDEPENDENT MORTGAGE CORPORATION",
        "AMERIHOME MORTGAGE COMPANY, LLC", "TRUIST BANK",
    ],
    2021: [
        "ROCKET MORTGAGE, LLC", "UNITED WHOLESALE MORTGAGE, LLC", "WELLS FARGO BANK, N.A.", "LOANDEPOT.COM, LLC",
        "PENNYMAC CORP.", "GUARANTEED RATE, INC.", "NEWREZ LLC", "U.S. BANK N.A.", "JPMORGAN CHASE BANK, N.A.",
        "FAIRWAY INDEPENDENT MORTGAGE CORPORATION", "CROSSCOUNTRY MORTGAGE, LLC", "TRUIST BANK",
    ],
}  # fmt: skip
_SPECIAL_SERVICERS = ["SPECIALIZED LOAN SERVICING LLC", "NATIONSTAR MORTGAGE LLC", "OCWEN LOAN SERVICING, LLC"]
_NAMED_SELLER_SHARE = 0.7  # the rest is "Other sellers", under 1% of a quarter's UPB each


@dataclass(frozen=True)
class _State:
    code: str
    share: float
    rural: float
    msas: tuple[str, ...]
    zip3: tuple[int, int]


def _parse_states(text: str) -> list[_State]:
    states = []
    for item in text.replace("\n", "|").split("|"):
        if item.strip():
            code, share, rural, msas, zips = item.split()
            low, high = zips.split("-")
            states.append(_State(code, float(share), float(rural) / 100, tuple(msas.split(",")), (int(low), int(high))))
    return states


STATES = _parse_states(_STATE_TABLE)


@dataclass
class Loans:
    """One vintage's loans, column by column.

    ``fields`` holds what the origination file says, by schema name: numbers as float64 with NaN for a missing value
    (written as the field's sentinel code), codes and text as str with the raw code ("9", "") for missing. The other
    arrays are what the performance paths and the writer need but the file does not show.
    """

    fields: dict[str, np.ndarray]
    note_month: np.ndarray  # month index of the note date
    first_payment: np.ndarray  # month index of the first payment
    value: np.ndarray  # property value at origination ($), from the clean LTV
    upb_raw: np.ndarray  # balance before rounding to $1,000
    pad_mi: np.ndarray  # write MI % zero-padded ("000") rather than plain ("0")
    pad_borrowers: np.ndarray
    pad_age: np.ndarray  # performance rows print the loan age as "007" rather than "7"

    def __len__(self) -> int:
        return self.note_month.size

    def subset(self, rows: slice) -> Loans:
        """The loans in ``rows`` (views, not copies)."""
        return Loans(
            fields={name: values[rows] for name, values in self.fields.items()},
            note_month=self.note_month[rows],
            first_payment=self.first_payment[rows],
            value=self.value[rows],
            upb_raw=self.upb_raw[rows],
            pad_mi=self.pad_mi[rows],
            pad_borrowers=self.pad_borrowers[rows],
            pad_age=self.pad_age[rows],
        )


def tightness(year: int) -> float:
    """0 for 2006-like underwriting, 1 for 2020-like: loosest in the boom, tight from 2010."""
    return float(np.interp(year, [2003, 2004, 2008, 2010], [0.3, 0.0, 0.0, 1.0]))


_normal_cdf = np.frompyfunc(lambda z: 0.5 * math.erfc(-z / math.sqrt(2.0)), 1, 1)


def _mix(table: tuple[list[float], list[float]], t: float) -> np.ndarray:
    return (1 - t) * np.asarray(table[0], dtype=float) + t * np.asarray(table[1], dtype=float)


def _choice(rng: np.random.Generator, values, probs, n: int) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    return np.asarray(values)[rng.choice(len(p), n, p=p / p.sum())]


def _by_year(table: dict[int, float], year: int) -> float:
    return table.get(year, table[min(table, key=lambda y: abs(y - year))])


def draw_loans(year: int, n: int, rng: np.random.Generator) -> Loans:
    """Draw ``n`` loans with a note date in ``year`` (clean values, no sentinels or corruption yet)."""
    t = tightness(year)
    month = np.sort(rng.integers(0, 12, n))
    note = year * 12 + month
    first_payment = note + _choice(rng, [1, 2, 3], [0.25, 0.7, 0.05], n)

    z = rng.standard_normal((n, 4)) @ np.linalg.cholesky(_CORR).T
    u = _normal_cdf(z).astype(np.float64)
    u_credit, u_ltv, u_dti, u_upb = u.T

    purpose = _draw_purpose(year, rng, n)
    refi = purpose != "P"
    harp = refi & (rng.random(n) < _HARP_SHARE.get(year, 0.0))
    purpose[harp] = "N"
    occupancy = _choice(rng, ["P", "I", "S"], [0.88, 0.07, 0.05], n)

    credit = np.rint(np.interp(u_credit, _P, _mix(_CREDIT, t)))
    # Refinances borrow against more equity than purchases.
    ltv = np.interp(np.where(refi, u_ltv**1.3, u_ltv**0.8), _P, _mix(_LTV, t))
    ltv = _snap_ltv(ltv, rng)
    ltv = np.where(purpose == "C", np.minimum(ltv, 85 if year <= 2008 else 80), ltv)
    deep_harp = harp & (rng.random(n) < 0.5)  # relief refinances above 80% LTV: the real HARP loans
    ltv = np.where(deep_harp, np.rint(81 + 69 * rng.random(n) ** 1.5), ltv)
    cltv = _draw_cltv(ltv, year, rng)
    dti = np.rint(np.interp(u_dti, _P, _mix(_DTI, t)))

    term = _choice(rng, *_TERMS, n).astype(np.int64)
    state_idx = rng.choice(len(STATES), n, p=_state_shares())
    state = np.array([s.code for s in STATES])[state_idx]
    upb_raw, super_conforming = _draw_upb(u_upb, year, state, rng)
    value = upb_raw / (ltv / 100.0)

    units = _choice(rng, [1, 2, 3, 4], [0.975, 0.018, 0.0035, 0.0035], n)
    rate = _draw_rate(note, term, credit, ltv, occupancy, purpose, units, year, rng)
    mi = _draw_mi(ltv, deep_harp, rng)
    seller, servicer = _draw_lenders(year, rng, n)
    msa, postal = _draw_places(state_idx, rng)

    fields: dict[str, np.ndarray] = {
        "credit_score": credit,
        "first_payment_date": yyyymm(first_payment),
        "first_time_homebuyer": np.where(
            purpose == "P", np.where(rng.random(n) < (0.3 if year <= 2008 else 0.38), "Y", "N"), "N"
        ),
        "maturity_date": yyyymm(first_payment + term - 1),
        "msa": msa,
        "mi_pct": mi,
        "num_units": units.astype(np.float64),
        "occupancy": occupancy,
        "cltv": cltv,
        "dti": dti,
        "orig_upb": np.rint(upb_raw / 1000.0) * 1000.0,
        "ltv": ltv,
        "orig_rate": rate,
        "channel": _draw_channel(year, rng, n),
        "ppm_flag": np.where(rng.random(n) < (0.002 if year <= 2008 else 0.0), "Y", "N"),
        "amortization_type": np.full(n, "FRM"),
        "property_state": state,
        "property_type": _choice(rng, ["SF", "PU", "CO", "MH", "CP"], [0.72, 0.20, 0.07, 0.009, 0.001], n),
        "postal_code": postal,
        "loan_id": _loan_ids(year, month),
        "loan_purpose": purpose,
        "orig_term": term.astype(np.float64),
        "num_borrowers": _draw_borrowers(year, month, rng, n),
        "seller_name": seller,
        "servicer_name": servicer,
        "super_conforming": np.where(super_conforming, "Y", ""),
        "pre_harp_loan_id": _pre_harp_ids(harp, rng),
        "program_indicator": _draw_program(year, rng, n),
        "harp_indicator": np.where(harp, "Y", ""),
        "valuation_method": np.where(note >= 2017 * 12, _choice(rng, ["2", "1", "3"], [0.838, 0.16, 0.002], n), "9"),
        "interest_only": np.full(n, "N"),
        "mi_cancellation": np.where(mi > 0, np.where(rng.random(n) < 0.03, "Y", "N"), "7"),
        "vantage_score": np.where(
            year >= 2024, np.clip(np.rint(credit + 25 * rng.standard_normal(n)), 300, 850), np.nan
        ),
    }
    # HARP loans above 80% LTV report DTI as not available.
    fields["dti"] = np.where(deep_harp, np.nan, fields["dti"])
    return Loans(
        fields=fields,
        note_month=note,
        first_payment=first_payment,
        value=value,
        upb_raw=upb_raw,
        pad_mi=rng.random(n) < 0.7,
        pad_borrowers=rng.random(n) < 0.7,
        pad_age=rng.random(n) < 0.7,
    )


def _state_shares() -> np.ndarray:
    shares = np.array([s.share for s in STATES])
    return shares / shares.sum()


def _snap_ltv(ltv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pile LTVs onto the 80 / 90 / 95 marks the way lenders' product grids do."""
    ltv = np.rint(ltv)
    r = rng.random(ltv.size)
    ltv = np.where((ltv >= 76) & (ltv <= 81) & (r < 0.7), 80, ltv)
    ltv = np.where((ltv >= 87) & (ltv <= 91) & (r < 0.6), 90, ltv)
    ltv = np.where((ltv >= 92) & (ltv <= 96) & (r < 0.6), 95, ltv)
    return np.maximum(ltv, 3)


def _draw_cltv(ltv: np.ndarray, year: int, rng: np.random.Generator) -> np.ndarray:
    """CLTV >= LTV; boom-era piggyback second liens (80/10/10, 80/20) lift it for some loans."""
    n = ltv.size
    piggyback = (ltv <= 80) & (rng.random(n) < (0.15 if year <= 2007 else 0.03))
    second = _choice(rng, [5, 10, 15, 20], [0.2, 0.45, 0.15, 0.2], n)
    return np.where(piggyback, np.minimum(ltv + second, np.maximum(100, ltv)), ltv)


def _draw_upb(u: np.ndarray, year: int, state: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Balance ($): 2006 shape scaled by house prices, capped at the conforming limit; super-conforming above it."""
    scale = float(house_price_index(year * 12 + 6)[()] / house_price_index(2006 * 12 + 6)[()])
    limit = conforming_limit(year)
    upb = np.minimum(np.interp(u, _P, _UPB) * 1000.0 * scale, limit)
    upb = np.maximum(upb, 8_000.0)
    # From 2008, high-cost areas may exceed the baseline limit by up to 50%.
    superc = (year >= 2008) & np.isin(state, _HIGH_COST_STATES) & (rng.random(u.size) < 0.06)
    upb = np.where(superc, limit * (1.0 + 0.5 * rng.random(u.size) ** 2) + 1000.0, upb)
    return upb, superc


def _draw_rate(note, term, credit, ltv, occupancy, purpose, units, year: int, rng: np.random.Generator) -> np.ndarray:
    """Note rate (%): market rate of the month + term discount + risk-based pricing + noise, on the rate grid."""
    llpa = (
        0.0035 * np.maximum(0.0, 760.0 - credit)
        + 0.25 * (credit < 620)
        + 0.012 * np.maximum(0.0, np.minimum(ltv, 100.0) - 70.0)
        + 0.3 * (occupancy == "I")
        + 0.1 * (occupancy == "S")
        + 0.125 * (purpose == "C")
        + 0.1 * (units >= 2)
    )
    rate = market_rate(note) + term_spread(term) - 0.2 + llpa + 0.22 * rng.standard_normal(note.size)
    thousandths = np.rint(np.maximum(rate, 1.0) * 1000.0)
    # Older loans sit on the 1/8 grid; from 2013 some carry rates like 3.990.
    eighth = (year < 2013) | (rng.random(note.size) < 0.7)
    step = np.where(eighth, 125, 10)
    return np.rint(thousandths / step) * step / 1000.0


def _draw_mi(ltv: np.ndarray, deep_harp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mortgage insurance coverage (%) required above 80% LTV; a few high-LTV loans carry none."""
    coverage = np.select([ltv <= 80, ltv <= 85, ltv <= 90, ltv <= 95], [0, 12, 25, 30], 35).astype(np.float64)
    r = rng.random(ltv.size)
    coverage = np.where((ltv > 80) & (r < 0.05), 0.0, coverage)
    coverage = np.where((ltv > 80) & (r > 0.9), coverage - 6, coverage)  # some lenders buy less coverage
    return np.where(deep_harp & (r < 0.7), 0.0, coverage)


def _draw_purpose(year: int, rng: np.random.Generator, n: int) -> np.ndarray:
    purchase = _by_year(_PURCHASE_SHARE, year)
    cash_out = (0.55 if year <= 2008 else 0.25 if year <= 2013 else 0.42) * (1 - purchase)
    unspecified = 0.01 * (1 - purchase) if year <= 2009 else 0.0
    return _choice(
        rng, ["P", "C", "N", "R"], [purchase, cash_out, 1 - purchase - cash_out - unspecified, unspecified], n
    )


def _draw_channel(year: int, rng: np.random.Generator, n: int) -> np.ndarray:
    if year <= 2008:
        return _choice(rng, ["R", "B", "C", "T", "9"], [0.5, 0.18, 0.27, 0.0495, 0.0005], n)
    return _choice(rng, ["R", "C", "B"], [0.75, 0.13, 0.12], n)


def _draw_borrowers(year: int, month: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Number of borrowers: before 2018Q2 only 1 or 2 ("more than one") were reported."""
    old = _choice(rng, [1.0, 2.0], [0.45, 0.55], n)
    new = _choice(rng, [1.0, 2.0, 3.0, 4.0], [0.51, 0.48, 0.009, 0.001], n)
    return np.where((year < 2018) | ((year == 2018) & (month < 3)), old, new)


def _draw_program(year: int, rng: np.random.Generator, n: int) -> np.ndarray:
    if year < 2014:
        return np.full(n, "9")
    probs = [0.03, 0.005 if year >= 2016 else 0.0, 0.003 if year >= 2019 else 0.0]
    return _choice(rng, ["H", "F", "R", "9"], probs + [1 - sum(probs)], n)


def _draw_lenders(year: int, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Seller and servicer: a Zipf-like head of named lenders and a long tail ("Other sellers"/"Other servicers")."""
    names = _SELLERS_BY_ERA[max(y for y in _SELLERS_BY_ERA if y <= max(year, min(_SELLERS_BY_ERA)))]
    weights = 1.0 / np.arange(1, len(names) + 1) ** 0.9
    weights = _NAMED_SELLER_SHARE * weights / weights.sum()
    seller = _choice(rng, names + ["Other sellers"], list(weights) + [1 - _NAMED_SELLER_SHARE], n)
    servicers = names + _SPECIAL_SERVICERS + ["Other servicers"]
    other = _choice(rng, servicers, [1.0] * (len(servicers) - 1) + [len(servicers) * 0.6], n)
    retained = (seller != "Other sellers") & (rng.random(n) < 0.75)
    return seller, np.where(retained, seller, other)


def _draw_places(state_idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """MSA code (blank outside metro areas) and postal code ``###00`` (rarely blank) within the state."""
    n = state_idx.size
    rural = np.array([s.rural for s in STATES])[state_idx]
    msa_pick = rng.random(n)
    msa = np.array(
        [
            STATES[i].msas[int(r * len(STATES[i].msas))]
            for i, r in zip(state_idx.tolist(), msa_pick.tolist(), strict=True)
        ]
    )
    msa = np.where(rng.random(n) < rural, "", msa)
    low = np.array([s.zip3[0] for s in STATES])[state_idx]
    high = np.array([s.zip3[1] for s in STATES])[state_idx]
    zip3 = low + np.floor(rng.random(n) * (high - low + 1)).astype(np.int64)
    postal = np.char.add(np.char.zfill(zip3.astype(str), 3), "00")
    return msa, np.where(rng.random(n) < 0.0005, "", postal)


def _loan_ids(year: int, month: np.ndarray) -> np.ndarray:
    """``F07Q10000001``: product, 2-digit year, quarter, then a 7-digit sequence number within the quarter."""
    quarter = month // 3 + 1
    seq = np.arange(month.size) - np.searchsorted(quarter, quarter, side="left") + 1
    prefix = np.char.add(f"F{year % 100:02d}Q", quarter.astype(str))
    return np.char.add(prefix, np.char.zfill(seq.astype(str), 7))


def _pre_harp_ids(harp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ids of the boom-era loans that relief refinances replaced; blank for other loans."""
    k = int(harp.sum())
    year, quarter, seq = rng.integers(3, 9, k), rng.integers(1, 5, k), rng.integers(1, 10_000_000, k)
    ids = np.full(harp.size, "", dtype="<U12")
    ids[harp] = [f"F{y:02d}Q{q}{s:07d}" for y, q, s in zip(year.tolist(), quarter.tolist(), seq.tolist(), strict=True)]
    return ids


CORRUPTIONS = ("upb_x1000", "upb_div1000", "rate_x10", "cltv_below_ltv", "dti_zero", "score300_ltv150")


def mask_missing(loans: Loans, year: int, rng: np.random.Generator) -> None:
    """Replace values by Freddie Mac's "not available" codes at the rates seen in real files (in place)."""
    f, n = loans.fields, len(loans)

    def drop(name: str, rate: float) -> None:
        f[name] = np.where(rng.random(n) < rate, np.nan, f[name])

    drop("credit_score", 0.0009)
    f["dti"] = np.where(f["dti"] > 65, np.nan, f["dti"])  # DTI above 65 is reported as not available
    drop("dti", 0.015 if year <= 2008 else 0.003)
    drop("ltv", 0.0002)
    drop("cltv", 0.0002)
    drop("mi_pct", 0.00005)
    drop("num_units", 0.00005)
    drop("num_borrowers", 0.0001)
    f["first_time_homebuyer"] = np.where(rng.random(n) < 0.003, "9", f["first_time_homebuyer"])
    f["property_type"] = np.where(rng.random(n) < 0.0001, "99", f["property_type"])


def corrupt(loans: Loans, share: float, rng: np.random.Generator) -> np.ndarray:
    """Spoil about ``share`` of the records with unit slips and impossible combinations (in place).

    Every spoiled value stays parseable. Returns the kind of corruption per loan ('' for clean loans).
    """
    f, n = loans.fields, len(loans)
    chosen = (rng.random(n) < share) & ~np.isnan(f["ltv"])
    kind = np.where(chosen, np.asarray(CORRUPTIONS)[rng.integers(0, len(CORRUPTIONS), n)], "")
    scale = rng.uniform(0.2, 0.5, n)
    f["orig_upb"] = np.select(
        [kind == "upb_x1000", kind == "upb_div1000"],
        [np.rint(loans.upb_raw) * 1000.0, np.maximum(1.0, np.rint(loans.upb_raw / 1000.0))],
        f["orig_upb"],
    )
    f["orig_rate"] = np.where(kind == "rate_x10", f["orig_rate"] * 10.0, f["orig_rate"])
    f["cltv"] = np.where(kind == "cltv_below_ltv", np.maximum(1.0, np.rint(f["ltv"] * scale)), f["cltv"])
    f["dti"] = np.where(kind == "dti_zero", 0.0, f["dti"])
    bad_credit = kind == "score300_ltv150"
    f["credit_score"] = np.where(bad_credit, 300.0, f["credit_score"])
    f["ltv"] = np.where(bad_credit, 150.0, f["ltv"])
    f["cltv"] = np.where(bad_credit, 150.0, f["cltv"])
    return kind


# Fields that can be blanked to "not available": those with a missing code, and the place fields where a blank means
# unknown. Dates, amounts, the rate and the term have no missing code: a file without them is not a Freddie Mac file.
BLANKABLE = (
    "credit_score", "first_time_homebuyer", "msa", "mi_pct", "num_units", "occupancy", "cltv", "dti", "ltv",
    "channel", "property_type", "postal_code", "loan_purpose", "num_borrowers", "program_indicator",
    "valuation_method",
)  # fmt: skip
# Fields whose population can be shifted (added to every loan; the result is rounded and kept in the field's range).
SHIFTABLE = {"credit_score": (300.0, 850.0, 1.0), "ltv": (1.0, 150.0, 1.0), "dti": (0.0, 65.0, 1.0),
             "orig_rate": (0.5, 15.0, 0.001)}  # fmt: skip


def blank_out(loans: Loans, names: tuple[str, ...], share: float, rng: np.random.Generator) -> None:
    """Set about ``share`` of each named field to "not available" (in place), as older or sparser files have them.

    Numbers become NaN (written as the field's code, e.g. 9999); codes become their missing code ("9", "99"); place
    fields become blank.
    """
    f, n = loans.fields, len(loans)
    for name in names:
        gone = rng.random(n) < share
        if f[name].dtype.kind == "f":
            f[name] = np.where(gone, np.nan, f[name])
        else:
            f[name] = np.where(gone, next(iter(ORIGINATION_FIELDS[name].missing), ""), f[name])


def shift_fields(loans: Loans, shifts: dict[str, float]) -> None:
    """Add ``shifts[name]`` to every loan's value of each field (in place): a population moved on purpose.

    LTV and combined LTV move together, so a shifted LTV does not look like a keying slip (CLTV below LTV).
    """
    f = loans.fields
    for name, delta in shifts.items():
        low, high, step = SHIFTABLE[name]
        moved = np.clip(np.round((f[name] + delta) / step) * step, low, high)
        if name == "ltv":
            f["cltv"] = np.clip(f["cltv"] + (moved - f["ltv"]), moved, 998.0)
        f[name] = moved
