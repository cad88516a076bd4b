"""Monthly performance histories that agree with each loan's drawn 24-month default outcome.

Each loan's history is a few events placed in loan-age time (age 1 = first payment month): an optional short 30/60-day
episode that cures; a serious episode (missed payments roll 1, 2, 3, ... months) that either cures (reinstatement or
modification) or ends in a credit event (09 REO, 03 short sale, 02 third-party sale, 15 note sale) or a 96 repurchase;
after a cure, a redefault, a 16 reperforming sale or a payoff; prepayment (01) from a hazard driven by the note rate's
spread over the market rate of each month. A loan drawn to default gets its serious episode early enough to reach
90 days within 24 months and cannot terminate before it; any other loan starts a serious episode only after age 22,
so it reaches 90 days after 24 months at the earliest, and never shows a credit event within 24 months. The history is
then cut at the data cutoff. Rows are built for all loans at once from these per-loan event ages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loan_default.synthetic.economy import house_price_index, market_rate
from loan_default.synthetic.loans import Loans

HORIZON = 24  # months: the default label's horizon
NEVER = 1_000_000  # an age no history reaches
LIQUIDATIONS = ("09", "03", "02", "15")
CREDIT_EVENT_MIX = (0.55, 0.25, 0.12, 0.08)  # shares of 09 / 03 / 02 / 15 among liquidations
# How a serious delinquency ends: cure, one of LIQUIDATIONS, or a repurchase (96).
FIRST_RESOLUTION = (("cure", 0.32), ("09", 0.38), ("03", 0.14), ("02", 0.08), ("15", 0.04), ("96", 0.04))
# Non-defaulters of these vintages default more often after 24 months (the crisis caught them later).
LATE_DEFAULT_BONUS = {2003: 0.02, 2004: 0.03, 2005: 0.03, 2006: 0.02, 2007: 0.02}
UNKNOWN_STATUS = {"XX": 2, "": 3}  # status kinds besides a number (0) and REO acquired (1)


@dataclass
class Histories:
    """Performance rows of one vintage (sorted by loan, then period) and each loan's outcome.

    Row arrays: ``loan`` (index into the vintage's loans), ``age``, ``period`` (month index), ``status`` (months
    delinquent), ``status_kind`` (0 number, 1 RA, 2 XX, 3 blank), ``upb_cents``, ``eltv`` (NaN = blank),
    ``modification`` (0 none, 1 Y this month, 2 P earlier), ``trial`` (borrower assistance T), ``end`` (the zero-balance
    row). Loan arrays: ``zero_balance_code`` ('' = none observed), ``removal_cents`` (UPB before termination), the
    credit-event money fields in ``losses`` (cents; valid where ``zero_balance_code`` is a liquidation),
    ``net_sale_unknown``, ``modification_cost_cents``, and the truth: ``default``, ``first_default_age``, ``censored``.
    """

    loan: np.ndarray
    age: np.ndarray
    period: np.ndarray
    status: np.ndarray
    status_kind: np.ndarray
    upb_cents: np.ndarray
    eltv: np.ndarray
    modification: np.ndarray
    trial: np.ndarray
    end: np.ndarray
    zero_balance_code: np.ndarray
    removal_cents: np.ndarray
    losses: dict[str, np.ndarray]
    net_sale_unknown: np.ndarray
    modification_cost_cents: np.ndarray
    default: np.ndarray
    first_default_age: np.ndarray
    censored: np.ndarray

    def __len__(self) -> int:
        return self.loan.size


def _geometric(rng: np.random.Generator, mean: np.ndarray | float, n: int) -> np.ndarray:
    """Whole months >= 1 with the given mean."""
    return rng.geometric(1.0 / np.maximum(np.broadcast_to(mean, (n,)), 1.0))


def _pick(rng: np.random.Generator, options: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    names, probs = zip(*options, strict=True)
    return np.asarray(names)[rng.choice(len(names), n, p=np.asarray(probs) / sum(probs))]


def _prepay_hazard(loans: Loans, pd: np.ndarray, ltv: np.ndarray, max_age: int) -> np.ndarray:
    """Cumulative prepayment hazard per loan through ages 0..max_age (column 0 is 0).

    CPR = seasoning ramp x (6% turnover + up to 45% refinancing when the note rate exceeds the month's market rate by
    about a point); risky and high-LTV borrowers can refinance less.
    """
    ages = np.arange(1, max_age + 1)
    month = loans.first_payment[:, None] + ages[None, :] - 1
    spread = loans.fields["orig_rate"][:, None] - market_rate(month)
    ability = (1.0 - np.minimum(0.8, 5.0 * pd)) * np.where(ltv > 90, 0.6, 1.0)
    refinance = 0.45 * ability[:, None] / (1.0 + np.exp(-(spread - 0.9) / 0.2))
    cpr = np.minimum(1.0, ages / 24.0)[None, :] * (0.06 + refinance)
    hazard = -np.log1p(-np.minimum(cpr, 0.99)) / 12.0
    return np.concatenate([np.zeros((len(loans), 1)), np.cumsum(hazard, axis=1)], axis=1)


def _first_passage(cum_hazard: np.ndarray, target: np.ndarray) -> np.ndarray:
    """First age whose cumulative hazard reaches ``target`` (NEVER if none)."""
    reached = cum_hazard >= target[:, None]
    return np.where(reached.any(axis=1), reached.argmax(axis=1), NEVER)


def _loan_events(loans: Loans, pd: np.ndarray, default: np.ndarray, cutoff: int, year: int, rng) -> dict:
    """Ages of every event in each loan's life (NEVER when it does not happen)."""
    n = len(loans)
    term = loans.fields["orig_term"].astype(np.int64)
    ltv = np.nan_to_num(loans.fields["ltv"], nan=80.0)
    age_cut = cutoff - loans.first_payment + 1

    # Serious episode 1: first missed payment at ss1, 90 days (status 3) at ss1 + 2.
    early = np.arange(2, 23)
    weights = early**1.5 * np.exp(-early / 7.0)
    ss_early = rng.choice(early, n, p=weights / weights.sum())
    late = ~default & (rng.random(n) < np.clip(0.8 * pd + LATE_DEFAULT_BONUS.get(year, 0.0), 0.0, 0.5))
    ss_late = HORIZON - 1 + np.floor(rng.exponential(36.0, n)).astype(np.int64)
    ss1 = np.where(default, ss_early, np.where(late, ss_late, NEVER))
    resolution = _pick(rng, FIRST_RESOLUTION, n)
    cured = (ss1 < NEVER) & (resolution == "cure")
    crisis = (loans.first_payment + ss1 >= 2008 * 12) & (loans.first_payment + ss1 < 2014 * 12)
    foreclosure = _geometric(rng, np.where(crisis, 20.0, 9.0), n)
    sr1 = np.where(ss1 < NEVER, ss1 + 3 + np.where(cured, _geometric(rng, 5.0, n) - 1, foreclosure), NEVER)
    modified = cured & (rng.random(n) < 0.6)

    # After a cure: redefault (always liquidated), a reperforming-loan sale (16), or a payoff.
    redefault = cured & (rng.random(n) < 0.3)
    ss2 = np.where(redefault, sr1 + 3 + _geometric(rng, 10.0, n), NEVER)
    sr2 = np.where(redefault, ss2 + 3 + _geometric(rng, 12.0, n), NEVER)
    code2 = np.asarray(LIQUIDATIONS)[rng.choice(len(LIQUIDATIONS), n, p=CREDIT_EVENT_MIX)]
    sale16 = np.where(cured & ~redefault & (rng.random(n) < 0.25), sr1 + 6 + _geometric(rng, 18.0, n), NEVER)

    # Prepayment: performing loans from age 1; cured loans again from their cure, until any redefault.
    max_age = int(max(1, age_cut.max()))
    cum_hazard = _prepay_hazard(loans, pd, ltv, max_age)
    p1 = _first_passage(cum_hazard, rng.exponential(1.0, n))
    cure_at = np.minimum(sr1, max_age)
    p2 = _first_passage(cum_hazard, cum_hazard[np.arange(n), cure_at] + rng.exponential(1.0, n))
    p2 = np.where(cured & (sr1 <= max_age) & (p2 < ss2), p2, NEVER)
    prepay = np.where(~default & (p1 < ss1), p1, p2)
    in_serious = ((term >= ss1) & (term < sr1)) | ((term >= ss2) & (term < sr2))
    prepay = np.where(~in_serious, np.minimum(prepay, term), prepay)  # a performing loan pays off at maturity

    repurchase = np.where(~default & (rng.random(n) < 0.002), rng.integers(3, 63, n), NEVER)
    repurchase = np.where(repurchase < ss1, repurchase, NEVER)
    first_end = np.where(np.isin(resolution, LIQUIDATIONS + ("96",)) & (ss1 < NEVER), sr1, NEVER)

    # Termination: the earliest event, ties broken by Freddie Mac's priority (15 > 09 > 96 > 03 > 02 > 01).
    candidates = np.stack([first_end, sr2, repurchase, sale16, prepay])
    codes = np.stack([resolution, code2, np.full(n, "96"), np.full(n, "16"), np.full(n, "01")])
    which = candidates.argmin(axis=0)
    end_age = candidates[which, np.arange(n)]
    end_code = codes[which, np.arange(n)]

    # Up to two short 30/60-day episodes that cure, for some loans, before any serious one.
    ms = 1 + rng.integers(0, 48, n)
    ml = np.where(rng.random(n) < 0.65, 1, 2)
    minor = (rng.random(n) < np.minimum(0.6, 0.12 + 2.0 * pd)) & (ms + ml < ss1)
    ms2 = ms + ml + _geometric(rng, 12.0, n)
    ml2 = np.where(rng.random(n) < 0.65, 1, 2)
    minor2 = minor & (rng.random(n) < 0.5) & (ms2 + ml2 < ss1)
    return {
        "age_cut": age_cut,
        "ss1": ss1,
        "sr1": sr1,
        "end1": np.where(first_end < NEVER, sr1 + 1, sr1),  # a liquidation row keeps counting months delinquent
        "ss2": ss2,
        "sr2": sr2,
        "modified": modified,
        "ms": np.where(minor, ms, NEVER),
        "ml": np.where(minor, ml, 0),
        "ms2": np.where(minor2, ms2, NEVER),
        "ml2": np.where(minor2, ml2, 0),
        "end_age": end_age,
        "end_code": end_code,
    }


def simulate_histories(loans: Loans, pd: np.ndarray, cutoff: int, year: int, rng: np.random.Generator) -> Histories:
    """Draw each loan's default (Bernoulli(pd)) and its monthly history up to ``cutoff`` (a month index)."""
    n = len(loans)
    default = rng.random(n) < pd
    ev = _loan_events(loans, pd, default, cutoff, year, rng)
    age_cut, end_age = ev["age_cut"], ev["end_age"]
    last = np.minimum(end_age, age_cut)
    # Freddie Mac's reporting starts at the note month (age 0) for most loans, a few months later for some.
    start = np.maximum(0, np.minimum(rng.choice(4, n, p=[0.75, 0.15, 0.07, 0.03]), last - 1))
    counts = last - start + 1
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    loan = np.repeat(np.arange(n), counts)
    age = start[loan] + np.arange(counts.sum()) - offsets[loan]
    period = loans.first_payment[loan] + age - 1

    status = np.zeros(age.size, dtype=np.int64)
    episodes = [(ev["ms"], ev["ms"] + ev["ml"]), (ev["ms2"], ev["ms2"] + ev["ml2"])]
    episodes += [(ev["ss1"], ev["end1"]), (ev["ss2"], ev["sr2"] + 1)]
    for begin, stop in episodes:
        inside = (age >= begin[loan]) & (age < stop[loan])
        status = np.where(inside, age - begin[loan] + 1, status)
    is_end = (age == end_age[loan]) & (end_age[loan] <= age_cut[loan])
    code = np.where(end_age <= age_cut, ev["end_code"], "")
    status = np.where(is_end & np.isin(code[loan], ("01", "16")), 0, status)

    kind = np.zeros(age.size, dtype=np.int8)
    reo = (code == "09") & (rng.random(n) < 0.7)  # REO acquired: the last row says RA
    kind[is_end & reo[loan]] = 1
    not_last = np.r_[loan[1:] == loan[:-1], False]
    unknown_early = (rng.random(n) < 0.015)[loan] & (age <= start[loan] + 1)
    kind[unknown_early & (status == 0) & not_last] = UNKNOWN_STATUS["XX"]
    kind[(rng.random(age.size) < 0.0002) & (status == 0) & not_last] = UNKNOWN_STATUS[""]

    balance = _scheduled_balance(loans, loan, np.maximum(0, age - status))
    upb = np.where(age < 6, np.rint(balance / 1000.0) * 1000.0, balance)  # first months are reported in $1,000s
    upb_cents = np.where(is_end, 0, np.rint(upb * 100.0)).astype(np.int64)
    end_rows = np.flatnonzero(is_end)
    removal = np.zeros(n, dtype=np.int64)
    removal[loan[end_rows]] = np.rint(balance[end_rows - 1] * 100.0).astype(np.int64)

    modification = np.zeros(age.size, dtype=np.int8)
    mod_age = np.where(ev["modified"], ev["sr1"], NEVER)[loan]
    modification[age == mod_age] = 1
    modification[age > mod_age] = 2
    trial = (age >= mod_age - 3) & (age < mod_age) & (period >= 2014 * 12)
    d1 = ev["ss1"] + 2
    return Histories(
        loan=loan,
        age=age,
        period=period,
        status=status,
        status_kind=kind,
        upb_cents=upb_cents,
        eltv=_eltv(loans, loan, period, upb_cents, is_end, rng),
        modification=modification,
        trial=trial,
        end=is_end,
        zero_balance_code=code,
        removal_cents=removal,
        losses=_losses(loans, code, removal, end_age - np.where(ev["ss2"] < NEVER, ev["ss2"], ev["ss1"]) + 1, rng),
        net_sale_unknown=(code == "15") | (rng.random(n) < 0.1),
        modification_cost_cents=_modification_cost(loans, ev["ss1"], rng),
        default=default,
        first_default_age=np.where(default, d1, NEVER),
        censored=(end_age > age_cut) & ~(default & (d1 <= age_cut)) & (age_cut < HORIZON),
    )


def _scheduled_balance(loans: Loans, loan: np.ndarray, paid: np.ndarray) -> np.ndarray:
    """Balance ($) after ``paid`` scheduled payments of a level-payment loan."""
    term = loans.fields["orig_term"][loan]
    r = loans.fields["orig_rate"][loan] / 1200.0
    k = np.clip(paid, 0, term)
    growth_n, growth_k = (1.0 + r) ** term, (1.0 + r) ** k
    return loans.fields["orig_upb"][loan] * (growth_n - growth_k) / (growth_n - 1.0)


def _modification_cost(loans: Loans, first_missed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cost of a modification (cents): 0.5-3% of the balance when payments stopped."""
    balance = _scheduled_balance(loans, np.arange(len(loans)), first_missed - 1)
    return np.rint(balance * rng.uniform(0.5, 3.0, len(loans))).astype(np.int64)


def _eltv(loans: Loans, loan, period, upb_cents, is_end, rng: np.random.Generator) -> np.ndarray:
    """Estimated LTV from April 2017 on (blank before, and on the zero-balance row); 999 = unknown now and then."""
    value = loans.value * np.exp(0.05 * rng.standard_normal(len(loans)))  # each home drifts from the index a bit
    growth = house_price_index(period) / house_price_index(loans.note_month[loan])
    eltv = np.clip(np.rint(upb_cents / 100.0 / (value[loan] * growth) * 100.0), 1, 998)
    eltv = np.where(rng.random(period.size) < 0.002, 999.0, eltv)
    return np.where((period >= 2017 * 12 + 3) & ~is_end, eltv, np.nan)


def _losses(loans: Loans, code, removal, months_delinquent, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Money fields of a credit-event termination (cents; Freddie Mac reports expenses and losses as negatives)."""
    n = len(loans)
    # Share of the balance recovered by the sale: REO lowest, short sale in between, third-party and note sales best.
    recovery = np.select(
        [code == "09", code == "03"], [rng.uniform(0.45, 0.85, n), rng.uniform(0.6, 0.9, n)], rng.uniform(0.7, 0.95, n)
    )
    net_sale = np.rint(removal * recovery)
    legal, maintenance = -rng.integers(100_000, 600_000, n), -rng.integers(50_000, 800_000, n)
    taxes, misc = -rng.integers(100_000, 1_000_000, n), -rng.integers(0, 150_000, n)
    expenses = legal + maintenance + taxes + misc
    rate = loans.fields["orig_rate"]
    accrued = np.rint(removal * rate / 1200.0 * np.clip(months_delinquent, 0, 120))
    shortfall = np.maximum(0, removal - net_sale + accrued - expenses)
    mi = np.minimum(shortfall, np.rint(removal * np.nan_to_num(loans.fields["mi_pct"]) / 100.0))
    non_mi = np.where(rng.random(n) < 0.3, rng.integers(0, 100_000, n), 0)
    loss = net_sale + mi + non_mi + expenses - removal - accrued
    return {
        "mi_recoveries": mi,
        "net_sale_proceeds": net_sale,
        "non_mi_recoveries": non_mi,
        "expenses": expenses,
        "legal_costs": legal,
        "maintenance_costs": maintenance,
        "taxes_insurance": taxes,
        "misc_expenses": misc,
        "actual_loss": loss,
        "delinquent_accrued_interest": accrued,
    }
