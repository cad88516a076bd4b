"""GET /metrics: Prometheus text format (see `loan_default.serving.metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Response, Security

from loan_default.serving import metrics as collected
from loan_default.serving.security import require_api_key

router = APIRouter(tags=["health"])


# Behind the API key like /metadata, not open like /health: it tells the mix of decisions and scores of the lender's
# applicants, which a liveness probe does not need; Prometheus sends the header (scrape config `http_headers`).
@router.get(
    "/metrics",
    dependencies=[Security(require_api_key)],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
        401: {"description": "API key missing"},
        403: {"description": "API key wrong"},
    },
)
def metrics() -> Response:
    """Requests and latency per endpoint and status, predictions per decision and risk band, outliers, scores."""
    return Response(collected.exposition(), media_type=collected.CONTENT_TYPE)
