"""GET /health and /ping (alive), /ready (bundle loaded), /metadata (what is served)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse

from loan_default.serving.schemas import MetadataResponse
from loan_default.serving.security import require_api_key

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The server is alive."""
    return {"status": "ok"}


@router.get("/ping", include_in_schema=False)
async def ping() -> dict[str, str]:
    # MLflow's scoring server answers its health checks here.
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "The bundle is not loaded"}})
async def ready(request: Request) -> JSONResponse:
    """The model bundle is loaded and the explainer warmed: requests will be answered."""
    if getattr(request.app.state, "scorer", None) is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "bundle": request.app.state.metadata["bundle"]})


@router.get(
    "/metadata",
    response_model=MetadataResponse,
    dependencies=[Security(require_api_key)],
    responses={401: {"description": "API key missing"}, 403: {"description": "API key wrong"}},
)
async def metadata(request: Request) -> dict[str, Any]:
    """Model name and version, input fields with types and valid ranges, threshold, risk bands, training metrics."""
    return request.app.state.metadata
