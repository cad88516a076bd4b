"""GET /monitoring: drift of the loans this worker served lately against the bundle's training reference."""

from __future__ import annotations

from fastapi import APIRouter, Response, Security

from loan_default.serving.deps import MonitorDep
from loan_default.serving.routes.predict import json_response
from loan_default.serving.schemas import MonitoringResponse
from loan_default.serving.security import require_api_key

router = APIRouter(tags=["health"])


# Behind the API key like /metadata and /metrics: it describes the lender's applicants.
@router.get(
    "/monitoring",
    response_model=MonitoringResponse,
    dependencies=[Security(require_api_key)],
    responses={401: {"description": "API key missing"}, 403: {"description": "API key wrong"}},
)
def monitoring(monitor: MonitorDep) -> Response:
    """PSI of the scores and CSI of each field over the last loans this worker served (setting monitoring_window),
    against the bundle's training distributions, with traffic lights; `available` is false for a bundle without a
    monitoring reference."""
    return json_response(MonitoringResponse, monitor.report())
