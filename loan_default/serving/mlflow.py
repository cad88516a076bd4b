"""MLflow's scoring protocol: request bodies in ``dataframe_split``, ``dataframe_records`` or CSV form -> loans.

JSON is parsed with the standard library and CSV with the `csv` module (every cell a string, blank = missing): nothing
in a request is unpickled or evaluated. JSON rows are validated by the same `Loan` model as /predict, CSV rows by
`LoanText` (the same rules, read from text), and errors are located in the body the client sent, e.g.
``["body", "dataframe_split", "data", 3, "dti"]``."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any, Literal

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from loan_default.serving.errors import relocated, validation_error
from loan_default.serving.schemas import (
    EXAMPLE_LOAN,
    EXAMPLE_SPARSE_LOAN,
    FEATURE_FIELDS,
    REQUIRED_FIELDS,
    Loan,
    LoanText,
    as_record,
)

FORMATS = ("dataframe_split", "dataframe_records")
_LOANS = TypeAdapter(list[Loan])
_TEXT_LOANS = TypeAdapter(list[LoanText])
_COLUMNS = ("loan_id", *FEATURE_FIELDS)
Column = Literal[_COLUMNS]  # type: ignore[valid-type]


class DataframeSplit(BaseModel):
    """pandas ``to_dict(orient="split")``: column names and rows of values, each row as long as ``columns`` and
    each value valid for its column (the Loan fields); the server checks both and names row and column."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"allOf": [{"properties": {"columns": {"contains": {"const": n}}}} for n in REQUIRED_FIELDS]},
    )
    columns: list[Column] = Field(json_schema_extra={"uniqueItems": True})
    data: list[list[Any]]
    index: list[Any] | None = None


class SplitBody(BaseModel):
    """MLflow's ``dataframe_split`` body."""

    model_config = ConfigDict(extra="forbid")
    dataframe_split: DataframeSplit


class RecordsBody(BaseModel):
    """MLflow's ``dataframe_records`` body: one object per loan."""

    model_config = ConfigDict(extra="forbid")
    dataframe_records: list[Loan]  # type: ignore[valid-type]


def _format(body: Any) -> str | None:
    """The dataframe format of a JSON body: exactly one of `FORMATS`, else None (refused, naming both)."""
    if isinstance(body, dict) and len(body) == 1 and next(iter(body)) in FORMATS:
        return next(iter(body))
    return None


# The JSON body, one format or the other: the route parses it with this model and the OpenAPI schema is generated
# from it (a oneOf of the two objects), so they cannot drift apart.
InvocationsJSON = Annotated[
    Annotated[SplitBody, Tag("dataframe_split")] | Annotated[RecordsBody, Tag("dataframe_records")],
    Discriminator(
        _format,
        custom_error_type="dataframe_format",
        custom_error_message=f"give exactly one of {', '.join(FORMATS)} (MLflow's dataframe formats)",
    ),
]
_BODY = TypeAdapter(InvocationsJSON)


def parse(body: bytes, content_type: str | None, max_rows: int) -> list[dict[str, Any]]:
    """Validated loans (dicts) from an /invocations body; 415, 413 or 422 when it is not acceptable."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media == "text/csv":
        rows, where = _csv_rows(body), ("body", "csv")
        _check_rows(rows, max_rows)
        try:
            return [as_record(loan) for loan in _TEXT_LOANS.validate_python(rows)]
        except ValidationError as err:
            raise validation_error(err, where) from None
    if media != "application/json":
        raise HTTPException(415, f"Content-Type {media!r} is not accepted: send application/json or text/csv")
    payload = _json(body)
    _check_rows(payload.get(_format(payload) or "", ()) if isinstance(payload, dict) else (), max_rows)
    try:
        parsed = _BODY.validate_python(payload)
    except ValidationError as err:  # drop the tag pydantic puts first: ["body", "dataframe_records", 3, "dti"]
        raise RequestValidationError(relocated(_untagged(err), ("body",))) from None
    if isinstance(parsed, RecordsBody):
        return [as_record(loan) for loan in parsed.dataframe_records]
    split = parsed.dataframe_split
    where = ("body", "dataframe_split")
    rows = _split_rows(split.columns, split.data, where)
    try:
        return [as_record(loan) for loan in _LOANS.validate_python(rows)]
    except ValidationError as err:
        raise validation_error(err, (*where, "data")) from None


def _check_rows(rows: Any, max_rows: int) -> None:
    split = rows.get("data") if isinstance(rows, dict) else rows  # a dataframe_split's rows are in "data"
    if isinstance(split, list) and len(split) > max_rows:
        raise HTTPException(413, f"{len(split)} rows in one request; the limit is {max_rows} (setting max_batch)")


def _untagged(err: ValidationError) -> list[dict[str, Any]]:
    errors = err.errors(include_url=False)
    return [{**e, "loc": e["loc"][1:]} if e["loc"] and e["loc"][0] in FORMATS else e for e in errors]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"JSON decode error: {err}", "input": {}}]
        ) from None


def _split_rows(columns: list[str], data: list[list[Any]], where: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows as dicts; the columns are checked even when there are no rows (as the schema says: known names, each
    once, the required ones present)."""
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    unknown = [c for c in columns if c not in _COLUMNS]
    absent = [name for name in REQUIRED_FIELDS if name not in columns]
    problems = [
        f"{what}: {names}"
        for what, names in (("duplicated", duplicated), ("unknown", unknown), ("required but absent", absent))
        if names
    ]
    if problems:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": (*where, "columns"),
                    "input": columns,
                    "msg": "columns " + "; ".join(problems),
                }
            ]
        )
    errors = [
        {"type": "value_error", "loc": (*where, "data", i), "input": len(row),
         "msg": f"row has {len(row)} values for {len(columns)} columns"}
        for i, row in enumerate(data) if len(row) != len(columns)
    ]  # fmt: skip
    if errors:
        raise RequestValidationError(errors[:20])
    return [dict(zip(columns, row, strict=True)) for row in data]


def _csv_rows(body: bytes) -> list[dict[str, Any]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", "csv"), "input": None, "msg": f"CSV is not UTF-8: {err}"}]
        ) from None
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", "csv"), "input": None, "msg": f"unreadable CSV: {err}"}]
        ) from None
    lines = [line for line in lines if line]  # blank lines carry no loan
    if not lines:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "csv"),
                    "input": None,
                    "msg": "empty CSV: a header line comes first",
                }
            ]
        )
    header = [name.strip() for name in lines[0]]
    rows = [[cell if cell.strip() else None for cell in line] for line in lines[1:]]
    return _split_rows(header, rows, ("body", "csv"))


def openapi_body() -> tuple[dict[str, Any], dict[str, Any]]:
    """The /invocations request body for OpenAPI, generated from `InvocationsJSON` (the body is read by hand, JSON or
    CSV, so FastAPI cannot declare it), and the component schemas it refers to."""
    schema = _BODY.json_schema(ref_template="#/components/schemas/{model}")
    components = schema.pop("$defs", {})
    body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": schema,
                "examples": {
                    "dataframe_split": {
                        "summary": "pandas orient='split'",
                        "value": {
                            "dataframe_split": {"columns": list(EXAMPLE_LOAN), "data": [list(EXAMPLE_LOAN.values())]}
                        },
                    },
                    "dataframe_records": {
                        "summary": "pandas orient='records'",
                        "value": {"dataframe_records": [EXAMPLE_LOAN, EXAMPLE_SPARSE_LOAN]},
                    },
                },
            },
            "text/csv": {
                "schema": {"type": "string", "description": "A header of Loan field names, then one loan a line"},
                "example": ",".join(EXAMPLE_LOAN) + "\n" + ",".join(str(v) for v in EXAMPLE_LOAN.values()) + "\n",
            },
        },
    }
    return {"requestBody": body}, components
