"""The loan record: pydantic v2 models that validate a loan for the REST API and batch scoring alike.

The models are generated from `loan_default.freddie.schema.ORIGINATION_FIELDS` for the fields the Preprocessor reads
(`loan_default.core.features.INPUT_FIELDS`), so names, valid ranges, allowed codes and Freddie Mac's sentinel codes
("9999" = credit score not available) come from one place, and each value goes through the schema's own rule.

- `Loan` reads JSON bodies and is what the OpenAPI schema shows, exactly: numbers as JSON numbers, codes as strings
  (digit codes also as integers), text as strings (msa and postal_code also as integers), null or omitted as missing.
- `LoanText` reads text (CSV bodies, Freddie Mac files), where every value is a string: numeric text, codes in any
  case with spaces around them, blank as missing.

Anything else is refused with a message that names the field; unknown fields are refused too."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from loan_default.core.bundle import BundleError
from loan_default.core.features import INPUT_FIELDS
from loan_default.freddie.schema import ORIGINATION_FIELDS, FieldError, Kind
from loan_default.freddie.schema import Field as FreddieField

# Loan terms every origination record carries: a request without them is not a loan.
REQUIRED_FIELDS: tuple[str, ...] = ("first_payment_date", "orig_upb", "orig_rate", "orig_term")

# Formats of the open-ended text fields (Freddie Mac's layout: MSA "Num 5", state "Alpha 2", postal code "###00"),
# and for the 5-digit ones the integers JSON may send instead (pandas reads 43580 from a CSV file as a number):
# every multiple of the step from 10000 to 99999.
_TEXT_PATTERNS: dict[str, tuple[str, str, int | None]] = {
    "msa": (r"^[0-9]{5}$", "a 5-digit MSA code such as 43580", 1),
    "property_state": (r"^[A-Z]{2}$", "a 2-letter state or territory code such as CA", None),
    "postal_code": (r"^[0-9]{3}00$", "the first three ZIP digits followed by 00, such as 94100", 100),
}
# Years a date field (YYYYMM) may have: a window the OpenAPI schema can spell out as one range per year.
DATE_YEARS = (1900, 2099)
_TEXT_MAX_LENGTH = 100

EXAMPLE_LOAN: dict[str, Any] = {
    "loan_id": "F19Q10000001",
    "credit_score": 758,
    "first_payment_date": 201905,
    "first_time_homebuyer": "N",
    "maturity_date": 203404,
    "msa": "43580",
    "mi_pct": 0,
    "num_units": 1,
    "occupancy": "P",
    "cltv": 55,
    "dti": 14,
    "orig_upb": 248000,
    "ltv": 55,
    "orig_rate": 4.375,
    "channel": "R",
    "ppm_flag": "N",
    "amortization_type": "FRM",
    "property_state": "IA",
    "property_type": "SF",
    "postal_code": "51100",
    "loan_purpose": "N",
    "orig_term": 180,
    "num_borrowers": 2,
    "seller_name": "Other sellers",
    "program_indicator": "9",
    "valuation_method": "2",
}
# The same loan with sentinel codes for "not available" and optional fields left out.
EXAMPLE_SPARSE_LOAN: dict[str, Any] = {
    "credit_score": 9999,
    "first_payment_date": 200703,
    "orig_upb": 152000,
    "orig_rate": 6.5,
    "orig_term": 360,
    "ltv": 95,
    "dti": 999,
    "occupancy": "I",
    "property_state": "FL",
}


def _error(field: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_field", "{field}: {message}", {"field": field, "message": message})


def _schema_validator(f: FreddieField) -> Callable[[Any], Any]:
    """Validator of a number, date or code field: the schema's own rule (`Field.check`, shared with the file reader
    and the features), its complaint turned into a pydantic error that names the field."""
    check = f.check

    def validate(value: Any) -> Any:
        try:
            return check(value)
        except FieldError as err:
            raise _error(f.name, err.problem) from None

    return validate


def _text_validator(f: FreddieField) -> Callable[[Any], str | None]:
    """Validator of a TEXT field from text (CSV, files): stripped, checked against its layout format; blank is None."""
    pattern, hint = _TEXT_PATTERNS.get(f.name, (None, f"text of at most {_TEXT_MAX_LENGTH} characters", None))[:2]
    regex = re.compile(pattern) if pattern else None

    def validate(value: Any) -> str | None:
        kind = type(value)
        if kind is str:
            text = value.strip()
        elif value is None:
            return None
        elif kind is int:
            text = str(value)
        else:
            raise _error(f.name, f"expected {hint}, got {kind.__name__}")
        if not text:
            return None
        if len(text) > _TEXT_MAX_LENGTH or (regex is not None and not regex.search(text)):
            raise _error(f.name, f"expected {hint}, got {value!r:.{_TEXT_MAX_LENGTH}}")
        return text

    return validate


def _in_date_window(f: FreddieField, validate: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A DATE field's validator, also refusing years outside `DATE_YEARS` (a date the schema can spell out)."""
    low, high = DATE_YEARS[0] * 100 + 1, DATE_YEARS[1] * 100 + 12

    def check(value: Any) -> Any:
        date = validate(value)
        if date is not None and not low <= date <= high:
            raise _error(f.name, f"expected a date YYYYMM from {low} to {high}, got {value!r:.40}")
        return date

    return check


def _json_validator(f: FreddieField, validate: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A field's validator for JSON bodies: first the JSON type the OpenAPI schema gives (numbers as numbers, codes
    and text as strings, digit codes and numeric text formats also as integers, null), then `validate`.

    Text sources (CSV, files) carry every value as a string and go through `validate` alone (`LoanText`)."""
    number = f.kind in (Kind.INT, Kind.FLOAT, Kind.DATE)
    allowed = f.allowed if f.kind is Kind.CODE else frozenset()
    integers = _integer_forms(f, validate)
    pattern = _TEXT_PATTERNS.get(f.name, (None, "", None))[0]
    regex = re.compile(pattern) if pattern else None
    name, expected = f.name, _expected(f)

    def check(value: Any) -> Any:
        kind = type(value)
        if value is None:
            return validate(None)
        if number:
            if kind is not int and kind is not float:
                raise _error(name, f"expected {expected}, got {kind.__name__}")
        elif (kind is int or (kind is float and value.is_integer())) and int(value) in integers:
            value = int(value)  # 2.0 is the integer 2, as JSON Schema has it
        elif kind is not str:
            raise _error(name, f"expected {expected}, got {kind.__name__}")
        elif allowed and value not in allowed:  # exactly a code: " p" is read as P from a file, not from JSON
            raise _error(name, f"expected {expected}, got {value!r:.40}")
        elif len(value) > _TEXT_MAX_LENGTH or (regex is not None and not regex.search(value)):
            raise _error(name, f"expected {expected}, got {value!r:.{_TEXT_MAX_LENGTH}}")
        return validate(value)

    return check


def _integer_forms(f: FreddieField, validate: Callable[[Any], Any]) -> range | frozenset[int]:
    """Integers a code or text field takes in JSON: digit codes (valuation_method 2), found by asking the validator
    so the schema lists exactly what it accepts, and the 5-digit text formats (msa 43580)."""
    if f.kind is Kind.CODE:
        return frozenset(n for n in (int(c) for c in f.allowed if c.isdigit()) if _accepts(validate, n))
    step = _TEXT_PATTERNS.get(f.name, (None, "", None))[2]
    return range(10_000, 100_000, step) if step else frozenset()


def _accepts(validate: Callable[[Any], Any], value: Any) -> bool:
    try:
        validate(value)
    except (PydanticCustomError, FieldError):
        return False
    return True


def _expected(f: FreddieField) -> str:
    if f.kind is Kind.TEXT:
        return _TEXT_PATTERNS.get(f.name, (None, f"text of at most {_TEXT_MAX_LENGTH} characters"))[1]
    if f.kind is Kind.DATE:
        return f"a date YYYYMM from {DATE_YEARS[0]}01 to {DATE_YEARS[1]}12 (e.g. 201905)"
    return f.expected


def _json_schema(f: FreddieField, validate: Callable[[Any], Any]) -> dict[str, Any]:
    """OpenAPI schema of one field in a JSON body: exactly the values `_json_validator` accepts, so the schema and
    the server cannot disagree (schemathesis checks both directions in tests/test_openapi_contract.py)."""
    options: list[dict[str, Any]]
    if f.kind is Kind.DATE:  # YYYYMM with a month 01-12: one integer range per year
        options = [
            {"type": "integer", "minimum": y * 100 + 1, "maximum": y * 100 + 12}
            for y in range(DATE_YEARS[0], DATE_YEARS[1] + 1)
        ]
    elif f.kind in (Kind.INT, Kind.FLOAT):
        options = [
            {
                "type": "integer" if f.kind is Kind.INT else "number",
                "minimum": -sys.float_info.max if f.low is None else f.low,
                "maximum": sys.float_info.max if f.high is None else f.high,  # larger numbers are refused too
            }
        ] + [{"const": int(code)} for code in sorted(f.missing)]
    elif f.kind is Kind.CODE:
        options = [{"type": "string", "enum": sorted(f.allowed)}]
        integers = sorted(_integer_forms(f, validate))
        if integers:
            options.append({"type": "integer", "enum": integers})
    else:
        pattern = _TEXT_PATTERNS.get(f.name, (None, "", None))[0]
        options = [{"type": "string", "maxLength": _TEXT_MAX_LENGTH, **({"pattern": pattern} if pattern else {})}]
        integers = _integer_forms(f, validate)
        if integers:
            step = {"multipleOf": integers.step} if integers.step > 1 else {}
            options.append({"type": "integer", "minimum": integers.start, "maximum": integers[-1], **step})
    schema: dict[str, Any] = {"anyOf": [*options, {"type": "null"}], "title": f.name, "description": _describe(f)}
    if f.name in EXAMPLE_LOAN:
        schema["examples"] = [EXAMPLE_LOAN[f.name]]
    return schema


def _describe(f: FreddieField) -> str:
    text = f.description
    if f.missing:
        text += f". Not available: {', '.join(sorted(f.missing))}"
    if f.blank_means:
        text += f". Null means {f.blank_means}"
    return text + ("" if f.name in REQUIRED_FIELDS else ". Optional (null or omitted = not available)")


def _field_type(f: FreddieField, json: bool) -> Any:
    validator = _text_validator(f) if f.kind is Kind.TEXT else _schema_validator(f)
    if f.kind is Kind.DATE:
        validator = _in_date_window(f, validator)
    if not json:
        return Annotated[Any, PlainValidator(validator)]
    return Annotated[Any, PlainValidator(_json_validator(f, validator)), WithJsonSchema(_json_schema(f, validator))]


def _loan_model(name: str, json: bool) -> type[BaseModel]:
    fields: dict[str, Any] = {
        "loan_id": (
            str | None,
            Field(None, max_length=64, description="Your reference for the loan, echoed in the answer (not a feature)"),
        )
    }
    for field in INPUT_FIELDS:
        fields[field] = (_field_type(ORIGINATION_FIELDS[field], json), ... if field in REQUIRED_FIELDS else None)
    return create_model(
        name,
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_LOAN, EXAMPLE_SPARSE_LOAN]}),
        __doc__="One loan at origination, fields named after Freddie Mac's origination file (snake_case).",
        **fields,
    )


# JSON request bodies: the types the OpenAPI schema gives. Text (CSV bodies, files): every value may be a string.
Loan = _loan_model("Loan", json=True)
LoanText = _loan_model("LoanText", json=False)
FEATURE_FIELDS: tuple[str, ...] = tuple(INPUT_FIELDS)


def as_record(loan: BaseModel) -> dict[str, Any]:
    """A validated loan as the plain dict the Scorer reads (``dict(loan)`` goes through pydantic's ``__iter__``,
    which measured 35 times slower: 17 ms for a 1,000-loan batch)."""
    return dict(vars(loan))


def validate_loan(raw: Any) -> dict[str, Any]:
    """One raw loan (a dict of values as a file, a CSV body or JSON holds them) validated by `LoanText`, as a record;
    raises pydantic's ValidationError."""
    return as_record(LoanText.model_validate(raw))


def check_feature_schema(schema: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a bundle whose input fields (names, kinds, ranges, codes) differ from what the request model checks:
    the API would let through values the model never saw, or refuse values it was trained on."""
    problems = []
    for name, spec in schema.items():
        field = ORIGINATION_FIELDS.get(name)
        if field is None or name not in Loan.model_fields:
            problems.append(f"{name}: not a field the loan record accepts")
            continue
        expected = {
            "kind": field.kind.value,
            "low": field.low,
            "high": field.high,
            "codes": None if field.codes is None else sorted(field.codes),
            "missing_codes": sorted(field.missing),
        }
        problems += [
            f"{name}.{key}: bundle has {spec.get(key)!r}, this version {value!r}"
            for key, value in expected.items()
            if spec.get(key) != value
        ]
    if problems:
        raise BundleError(
            "the bundle's feature schema does not match this version's request model; retrain with this version "
            "or serve with the version that trained it: " + "; ".join(problems)
        )
