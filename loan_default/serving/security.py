"""Optional API key: when the environment variable named by `api_key_env` is set, callers send it as X-API-Key.

Missing key: 401; wrong key: 403 (compared in constant time). /health, /ping and /ready stay open for probes.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Required when the server has an API key")


async def require_api_key(request: Request, key: Annotated[str | None, Security(_header)]) -> None:
    expected: str | None = request.app.state.api_key
    if expected is None:
        return
    if not key:
        raise HTTPException(
            401,
            f"missing API key: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    if not secrets.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(403, "invalid API key")
