"""The reader's field rules and the labeller's outcome rules as Spark column expressions.

Each rule mirrors one function of the local engine, named beside it: `loan_default.freddie.reader` (field conversion,
from `loan_default.freddie.schema`) and `loan_default.freddie.labels` (`OutcomeAggregator`, `label_loans`,
`_vintages`). Only DataFrame expressions: executors run no Python, so a cluster needs no copy of this package.
`tests/test_spark_prep.py` checks the result against the local engine.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from loan_default.freddie import reader, schema
from loan_default.freddie.labels import (
    CENSORED,
    NO_FIRST_PAYMENT,
    NO_PERFORMANCE,
    LabelConfig,
)

_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$"  # reader._NUMBER


def trimmed(raw: Column) -> Column:
    return F.regexp_replace(raw, r"^\s+|\s+$", "")


def month_index(yyyymm: Column) -> Column:
    """labels.month_index: YYYYMM -> months since year 0."""
    return F.floor(yyyymm / 100) * 12 + yyyymm % 100 - 1


def convert(
    raw: Column, f: schema.Field, required: bool = False, trim: bool = True, number: Column | None = None
) -> tuple[Column, Column, str]:
    """(value, bad, skip reason) for one raw field (`trim=False`: already trimmed; `number`: its `parse_number`,
    computed once), as reader._convert gives them."""
    s = trimmed(raw) if trim else raw
    if f.name == "delinquency_status":  # reader._status
        digits = s.rlike(r"^[0-9]{1,3}$")
        value = (
            F.when(s.isin("", "XX"), F.lit(reader.STATUS_UNKNOWN))
            .when(s == "RA", F.lit(reader.STATUS_REO))
            .when(digits, s.cast("int"))
            .otherwise(F.lit(reader.STATUS_UNKNOWN))
        )
        return value, ~(s.isin("", "XX", "RA") | digits), reader.UNKNOWN_CODE
    if f.kind in (schema.Kind.INT, schema.Kind.FLOAT):  # reader._number: float64, sentinels missing
        missing = (s == "") | (s.isin(*sorted(f.missing)) if f.missing else F.lit(False))
        number = parse_number(s) if number is None else number  # null when not a number
        ok = number.isNotNull() & (number == F.floor(number) if f.kind is schema.Kind.INT else F.lit(True))
        value = F.when(~missing & ok, number)
        return value, ~missing & ~ok, reader.NOT_A_NUMBER
    if f.kind is schema.Kind.DATE:  # reader._date: int YYYYMM
        good = s.rlike(r"^[0-9]{4}(0[1-9]|1[0-2])$")
        value = F.when(good, s.cast("int"))
        bad = ~good if required else (s != "") & ~good
        return value, bad, reader.BAD_DATE
    if f.kind is schema.Kind.CODE:  # reader._code
        code = F.upper(s)
        code = F.when(code == "", F.lit(f.blank_means)).otherwise(code) if f.blank_means is not None else code
        width = f.code_width  # a "1" in the file reads as zero-balance code "01"
        if width:
            code = F.when(code.rlike(r"^[0-9]+$"), F.lpad(code, width, "0")).otherwise(code)
        missing = code.isNull() | (code == "") | (code.isin(*sorted(f.missing)) if f.missing else F.lit(False))
        allowed = sorted((f.codes or frozenset()) | ({f.blank_means} if f.blank_means else set()))
        good = F.lit(True) if f.codes is None else code.isin(*allowed)
        return F.when(~missing & good, code), ~missing & ~good, reader.UNKNOWN_CODE
    value = F.when(s != "", s)  # reader._text
    return value, (s == "") if required else F.lit(False), reader.BLANK_KEY


def parse_number(s: Column) -> Column:
    """A string -> double cast that gives null instead of failing under ANSI mode (Spark 4's default). Numbers are
    plain decimals as reader._NUMBER allows (no exponent: Freddie Mac writes none)."""
    return F.when(s.rlike(_NUMBER), s).cast("double")


def parse_lines(lines: DataFrame, layout: schema.Layout, wanted: list[str], required: set[str]) -> DataFrame:
    """Raw lines (`value`, `row`, ...) -> typed columns `wanted`, plus `bad_reason` / `bad_field` / `bad_value` for
    the first field at fault (null when the row is good). Wrong field counts and empty lines are bad rows too.
    Other columns of `lines` pass through."""
    keep = [c for c in lines.columns if c != "value"]
    present = [name for name in wanted if name in layout.columns]
    fields = F.split(F.col("value"), r"\|", -1)
    # Split and trim once per field (a first projection: Spark keeps it because each result is used several times).
    split = lines.select(
        *keep,
        F.col("value"),
        (F.size(fields) == layout.n_fields).alias("_count_ok"),
        (trimmed(F.col("value")) == "").alias("_empty"),
        # Guarded: under ANSI mode (Spark 4's default) a short line's missing field would fail the whole job.
        *[F.when(F.size(fields) == layout.n_fields, fields.getItem(layout.columns.index(name))).alias(f"_raw_{name}")
          for name in present],  # fmt: skip
    ).select(*keep, "value", "_count_ok", "_empty", *[f"_raw_{n}" for n in present],
             *[trimmed(F.col(f"_raw_{n}")).alias(f"_t_{n}") for n in present])  # fmt: skip
    numbers = [n for n in present if layout.fields[n].kind in (schema.Kind.INT, schema.Kind.FLOAT)]
    split = split.select("*", *[parse_number(F.col(f"_t_{n}")).alias(f"_d_{n}") for n in numbers])
    # Each field's value and bad flag as columns of their own, so the bad-row summary below refers to them instead of
    # repeating every field's rule (a plan that size takes Spark longer to analyse than the data takes to read).
    count_ok, empty = F.col("_count_ok"), F.col("_empty")
    checked, reasons = [], {}
    for name in present:
        number = F.col(f"_d_{name}") if name in numbers else None
        value, bad, why = convert(F.col(f"_t_{name}"), layout.fields[name], name in required, trim=False, number=number)
        checked += [F.when(count_ok, value).alias(name), (count_ok & bad).alias(f"_b_{name}")]
        reasons[name] = why
    split = split.select(*keep, "value", "_count_ok", "_empty", *[f"_raw_{n}" for n in present], *checked)
    reason = F.when(empty, F.lit(reader.EMPTY_LINE)).when(~count_ok, F.lit(reader.WRONG_FIELD_COUNT))
    field = F.when(empty | ~count_ok, F.lit(None).cast("string"))
    bad_value = F.when(empty | ~count_ok, F.col("value"))
    for name in present:
        reason = reason.when(F.col(f"_b_{name}"), F.lit(reasons[name]))
        field = field.when(F.col(f"_b_{name}"), F.lit(name))
        bad_value = bad_value.when(F.col(f"_b_{name}"), F.col(f"_raw_{name}"))
    return split.select(*keep, *present, reason.alias("bad_reason"), field.alias("bad_field"),
                        bad_value.alias("bad_value"))  # fmt: skip


def outcomes(performance: DataFrame, config: LabelConfig) -> DataFrame:
    """labels.OutcomeAggregator.result: one row per loan id with `rows`, `first_event`, `last_known`,
    `credit_zero_balance`, `zero_balance` (month indices, null where none) and `final_zero_balance_code`."""
    month = month_index(F.col("period"))
    status = F.col("delinquency_status")
    zero_month = month_index(F.coalesce(F.col("zero_balance_date"), F.col("period")))
    has_zero = F.col("zero_balance_code").isNotNull()
    credit = has_zero & F.col("zero_balance_code").isin(*config.credit_event_codes)
    return (
        performance.groupBy("loan_id")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.min(F.when(status >= config.min_dpd_months, month)).cast("double").alias("first_event"),
            F.max(F.when(status != reader.STATUS_UNKNOWN, month)).cast("double").alias("last_known"),
            F.min(F.when(credit, zero_month)).cast("double").alias("credit_zero_balance"),
            # The latest zero balance, and its code: ties go to the later row of the file (labels sorts stably).
            F.max(
                F.when(has_zero, F.struct(zero_month.alias("m"), F.col("row").alias("r"), F.col("zero_balance_code")))
            ).alias("last_zero"),
        )
        .select(
            "loan_id",
            "rows",
            "first_event",
            "last_known",
            "credit_zero_balance",
            F.col("last_zero.m").cast("double").alias("zero_balance"),
            F.col("last_zero.zero_balance_code").alias("final_zero_balance_code"),
        )
    )


def label(
    origination: DataFrame, stats: DataFrame, config: LabelConfig, keys: Sequence[str] = ("loan_id",)
) -> DataFrame:
    """labels.label_loans: origination rows with their outcome and label columns, and `drop_reason` (null for kept
    loans; the caller counts and filters). `keys` join the two (loan id, and the source vintage when several)."""
    joined = origination.join(stats, on=list(keys), how="left")
    first_payment = month_index(F.col("first_payment_date"))
    first_event = F.least(F.col("first_event"), F.col("credit_zero_balance"))  # least skips nulls, like np.fmin
    first_default_age = first_event - first_payment + 1
    last_known_age = F.col("last_known") - first_payment + 1
    terminated = F.col("zero_balance").isNotNull()
    if config.horizon_months is None:
        default = first_event.isNotNull()
        censored = F.lit(False)
    else:
        default = F.coalesce(first_default_age <= config.horizon_months, F.lit(False))
        observed = terminated | F.coalesce(last_known_age >= config.horizon_months, F.lit(False))
        censored = ~default & ~observed
    no_performance = F.col("rows").isNull()
    no_first_payment = ~no_performance & F.col("first_payment_date").isNull()
    censored = censored & ~no_performance & ~no_first_payment
    drop = F.when(no_performance, F.lit(NO_PERFORMANCE)).when(no_first_payment, F.lit(NO_FIRST_PAYMENT))
    if not config.keep_censored:
        drop = drop.when(censored, F.lit(CENSORED))
    year, quarter = vintage(F.col("loan_id"), F.col("first_payment_date"))
    return joined.select(
        *[F.col(c) for c in origination.columns],
        default.cast("tinyint").alias("default"),
        year.alias("vintage_year"),
        quarter.alias("vintage_quarter"),
        F.concat(year.cast("string"), F.lit("Q"), quarter.cast("string")).alias("vintage"),
        F.coalesce(F.greatest(last_known_age, F.lit(0.0)), F.lit(0.0)).cast("bigint").alias("months_observed"),
        first_default_age.cast("double").alias("first_default_age"),
        censored.alias("censored"),
        F.col("final_zero_balance_code"),
        drop.alias("drop_reason"),
    )


def vintage(loan_id: Column, first_payment_date: Column) -> tuple[Column, Column]:
    """labels._vintages: (year, quarter) from the loan id (schema.vintage_from_loan_id), else from the first payment
    date two months back."""
    new = F.regexp_extract(loan_id, r"^[FA](\d{2})Q([1-4])", 1)
    old = F.regexp_extract(loan_id, r"^[FA]1(\d{2})Q([1-4])", 1)
    yy = F.when(new != "", new).when(old != "", old).cast("bigint")
    q = F.when(new != "", F.regexp_extract(loan_id, r"^[FA]\d{2}Q([1-4])", 1)).when(
        old != "", F.regexp_extract(loan_id, r"^[FA]1\d{2}Q([1-4])", 1)
    )
    month = month_index(first_payment_date) - 2
    year = F.when(yy.isNotNull(), F.when(yy >= 90, yy + 1900).otherwise(yy + 2000)).otherwise(F.floor(month / 12))
    quarter = F.when(yy.isNotNull(), q.cast("bigint")).otherwise(F.floor((month % 12) / 3) + 1)
    return year.cast("bigint"), quarter.cast("bigint")
