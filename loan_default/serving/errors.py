"""Error answers: validation problems name the field (422); anything unexpected is a logged 500 with an id, never a
traceback sent to the caller."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

log = logging.getLogger(__name__)


def validation_error(error: ValidationError, prefix: Sequence[str | int]) -> RequestValidationError:
    """A pydantic error on part of the body, as FastAPI's 422 with locations under ``prefix``."""
    return RequestValidationError(relocated(error.errors(include_url=False), prefix))


def relocated(errors: Iterable[dict[str, Any]], prefix: Sequence[str | int]) -> list[dict[str, Any]]:
    return [{**e, "loc": (*prefix, *e["loc"])} for e in errors]


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 body, made safe for what a bad request echoes back: NaN and Infinity become strings, bytes
    that are not UTF-8 are decoded with replacement characters (FastAPI's own handler answers 500 on both)."""
    return JSONResponse({"detail": jsonable_encoder(_json_safe(exc.errors()))}, status_code=422)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.exception("error %s while handling %s %s", error_id, request.method, request.url.path)
    return JSONResponse(
        {"detail": f"internal error {error_id} while scoring; the server log has the details"}, status_code=500
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected_error)
