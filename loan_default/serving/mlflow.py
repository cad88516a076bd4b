"""MLflow's scoring protocol: request bodies in ``dataframe_split``, ``dataframe_records`` or CSV form -> loans.

JSON is parsed with the standard library and CSV with the `csv` module (every cell a string, blank = missing): nothing
in a request is unpickled or evaluated. Every row is validated by the same `schemas.Loan` model as /predict, and
errors are located in the body the client sent, e.g. ``["body", "dataframe_split", "data", 3, "dti"]``.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from loan_default.serving.errors import validation_error
from loan_default.serving.schemas import EXAMPLE_LOAN, EXAMPLE_SPARSE_LOAN, Loan, as_record

FORMATS = ("dataframe_split", "dataframe_records")
_LOANS = TypeAdapter(list[Loan])


class DataframeSplit(BaseModel):
    """pandas ``to_dict(orient="split")``: column names and rows of values."""

    model_config = ConfigDict(extra="forbid")
    columns: list[str]
    data: list[list[Any]]
    index: list[Any] | None = None


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Any]] | None = None


def parse(body: bytes, content_type: str | None, max_rows: int) -> list[dict[str, Any]]:
    """Validated loans (dicts) from an /invocations body; 415, 413 or 422 when it is not acceptable."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media == "text/csv":
        rows, where = _csv_rows(body), ("body", "csv")
    elif media == "application/json":
        rows, where = _json_rows(body)
    else:
        raise HTTPException(415, f"Content-Type {media!r} is not accepted: send application/json or text/csv")
    if len(rows) > max_rows:
        raise HTTPException(413, f"{len(rows)} rows in one request; the limit is {max_rows} (setting max_batch)")
    try:
        loans = _LOANS.validate_python(rows)
    except ValidationError as err:
        raise validation_error(err, where) from None
    return [as_record(loan) for loan in loans]


def _json_rows(body: bytes) -> tuple[list[dict[str, Any]], tuple[str | int, ...]]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"JSON decode error: {err}", "input": {}}]
        ) from None
    try:
        envelope = _Envelope.model_validate(payload)
    except ValidationError as err:
        raise validation_error(err, ("body",)) from None
    given = [name for name in FORMATS if getattr(envelope, name) is not None]
    if len(given) != 1:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body",),
                    "input": None,
                    "msg": f"give exactly one of {', '.join(FORMATS)} (MLflow's dataframe formats), got {len(given)}",
                }
            ]
        )
    if envelope.dataframe_records is not None:
        return envelope.dataframe_records, ("body", "dataframe_records")
    split = envelope.dataframe_split
    assert split is not None
    return _split_rows(split.columns, split.data, ("body", "dataframe_split")), ("body", "dataframe_split", "data")


def _split_rows(columns: list[str], data: list[list[Any]], where: tuple[str, ...]) -> list[dict[str, Any]]:
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": (*where, "columns"),
                    "input": duplicated,
                    "msg": f"duplicated column names: {duplicated}",
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
        return []
    header = [name.strip() for name in lines[0]]
    rows = [[cell if cell.strip() else None for cell in line] for line in lines[1:]]
    return _split_rows(header, rows, ("body", "csv"))


# OpenAPI: the body is read by hand (JSON or CSV), so /docs gets its schema and examples from here.
OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "dataframe_split": {
                            "type": "object",
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "data": {"type": "array", "items": {"type": "array", "items": {}}},
                                "index": {"type": "array", "items": {}},
                            },
                            "required": ["columns", "data"],
                        },
                        "dataframe_records": {"type": "array", "items": {"$ref": "#/components/schemas/Loan"}},
                    },
                },
                "examples": {
                    "dataframe_split": {
                        "summary": "pandas orient='split'",
                        "value": {
                            "dataframe_split": {
                                "columns": list(EXAMPLE_LOAN),
                                "data": [list(EXAMPLE_LOAN.values())],
                            }
                        },
                    },
                    "dataframe_records": {
                        "summary": "pandas orient='records'",
                        "value": {"dataframe_records": [EXAMPLE_LOAN, EXAMPLE_SPARSE_LOAN]},
                    },
                },
            },
            "text/csv": {
                "schema": {"type": "string"},
                "example": ",".join(EXAMPLE_LOAN) + "\n" + ",".join(str(v) for v in EXAMPLE_LOAN.values()) + "\n",
            },
        },
    }
}
