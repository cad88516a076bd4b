"""One set of field rules (freddie.schema.Field) behind the file reader, the API's loan model and the features.

Each case is written out by hand from Freddie Mac's layout (the oracle), then run through all three consumers: the
reader reads it from a file, `validate_loan` (the API and batch scoring) checks it, and the feature code reads it.
They differ only in policy: the reader keeps out-of-range numbers, the API refuses them, the features treat them as
missing; sentinel codes are null to the reader and the features and kept as given by the API.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pydantic import ValidationError

from loan_default.core import features as ft
from loan_default.core.loan import EXAMPLE_LOAN, validate_loan
from loan_default.freddie.errors import FreddieFormatError
from loan_default.freddie.reader import read_origination
from loan_default.freddie.schema import ORIGINATION_FIELDS, FieldError
from tests.test_reader import orig_line, write

BAD = "bad"  # the value is refused

# field, raw text as a file holds it, what the reader gives, what the API gives (sentinels kept), features' value
CASES = [
    ("occupancy", "P", "P", "P", "P"),
    ("occupancy", "i", "I", "I", "I"),  # codes are read upper-cased everywhere
    ("occupancy", "9", None, "9", None),  # sentinel: not available
    ("occupancy", "", None, None, None),
    ("occupancy", "Q", BAD, BAD, None),  # the features treat an unknown code as missing
    ("super_conforming", "", "N", "N", "N"),  # blank is an answer here
    ("super_conforming", "Y", "Y", "Y", "Y"),
    ("valuation_method", "2", "2", "2", "2"),
    ("credit_score", "758", 758.0, 758, 758.0),
    ("credit_score", "9999", None, 9999, None),  # sentinel
    ("credit_score", "7580", 7580.0, BAD, None),  # out of range: kept by the reader, refused by the API
    ("credit_score", "7x8", BAD, BAD, BAD),
    ("credit_score", "", None, None, None),
    ("dti", "999", None, 999, None),
    ("dti", "70", 70.0, BAD, None),
    ("orig_rate", "4.375", 4.375, 4.375, 4.375),
    ("orig_rate", "43.75", 43.75, BAD, None),
    ("first_payment_date", "201905", 201905.0, 201905, 201905.0),
    ("first_payment_date", "201913", BAD, BAD, 201913.0),  # features: month_index makes it missing later
]


def reader_value(tmp_path, field, raw):
    path = write(tmp_path / f"{field}.txt", [orig_line(loan_id="L1", **{field: raw})])
    try:
        value = read_origination(path)[field].iloc[0]
    except FreddieFormatError as err:
        assert err.field == field and err.line == 1
        return BAD
    return None if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA else value


def api_value(field, raw):
    try:
        return validate_loan({**EXAMPLE_LOAN, field: raw})[field]
    except ValidationError as err:
        [error] = err.errors()
        assert error["loc"] == (field,) and error["msg"].startswith(f"{field}: expected ")
        return BAD


def feature_value(field, raw):
    try:
        columns = ft.validate(ft.loan_columns({field: raw}))
    except FieldError as err:
        assert err.field == field
        return BAD
    value = columns[field][0]
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


@pytest.mark.parametrize(("field", "raw", "reader", "api", "features"), CASES)
def test_reader_api_and_features_apply_the_same_rules(tmp_path, field, raw, reader, api, features):
    assert reader_value(tmp_path, field, raw) == reader
    assert api_value(field, raw) == api
    assert feature_value(field, raw) == features


def test_errors_name_the_field_and_what_it_expects():
    with pytest.raises(
        FieldError, match=r"^dti: expected an integer from 0 to 65 \(or 999 for not available\), got 70$"
    ):
        ORIGINATION_FIELDS["dti"].check(70)
    with pytest.raises(FieldError, match=r"^occupancy: expected one of 9, I, P, S, or blank, got 'Q'$"):
        ORIGINATION_FIELDS["occupancy"].check("Q")
    with pytest.raises(FieldError, match=r"^num_units: .*got bool$"):
        ORIGINATION_FIELDS["num_units"].check(True)
    assert ORIGINATION_FIELDS["valuation_method"].check(3) == "3"  # digit codes may come as integers (JSON)


def test_in_range_is_the_documented_range_and_nan_is_never_in_it():
    dti, upb, msa = ORIGINATION_FIELDS["dti"], ORIGINATION_FIELDS["orig_upb"], ORIGINATION_FIELDS["msa"]
    assert [dti.in_range(x) for x in (-1, 0, 65, 65.5, math.nan)] == [False, True, True, False, False]
    assert upb.in_range(1e12) and not upb.in_range(-1)  # open above
    assert not msa.in_range(math.nan) and msa.in_range(7)  # no range at all: every number but NaN
