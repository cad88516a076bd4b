"""POST /invocations: MLflow's scoring protocol, so MLflow clients switch without changes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Security
from starlette.concurrency import run_in_threadpool

from loan_default.serving import metrics, mlflow
from loan_default.serving.deps import MonitorDep, ScorerDep, SettingsDep
from loan_default.serving.routes.predict import LIMIT_RESPONSES
from loan_default.serving.schemas import InvocationsResponse
from loan_default.serving.security import require_api_key

router = APIRouter(tags=["mlflow"], dependencies=[Security(require_api_key)])


@router.post(
    "/invocations",
    response_model=InvocationsResponse,
    responses={
        **LIMIT_RESPONSES,
        415: {"description": "Content-Type other than JSON or CSV"},
        422: {"description": "A loan, a row or the body's shape is not valid; `detail` names where"},
    },
    openapi_extra=mlflow.openapi_body()[0],
)
async def invocations(
    request: Request, scorer: ScorerDep, settings: SettingsDep, monitor: MonitorDep
) -> dict[str, Any]:
    """MLflow scoring protocol: dataframe_split, dataframe_records or CSV in; {"predictions": [...]} out."""
    body = await request.body()  # JSON or CSV, so the body is read here rather than declared as a model

    def score() -> list[dict[str, Any]]:
        loans = mlflow.parse(body, request.headers.get("content-type"), settings.max_batch)
        scored = scorer.predict(loans)
        metrics.observe_predictions(scored)
        monitor.observe(loans, scored)
        return scored

    return {"predictions": await run_in_threadpool(score)}
