"""POST /predict: default probability, decision, risk band and outlier flag for one loan or a list of loans."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response, Security
from pydantic import BaseModel

from loan_default.core.scorer import Scorer
from loan_default.serving import metrics
from loan_default.serving.deps import MonitorDep, ScorerDep, SettingsDep
from loan_default.serving.schemas import EXAMPLE_LOAN, EXAMPLE_SPARSE_LOAN, LoansBody, PredictResponse, as_record
from loan_default.serving.security import require_api_key

router = APIRouter(tags=["scoring"], dependencies=[Security(require_api_key)])

LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be read (not UTF-8, or not the declared content)"},
    401: {"description": "API key missing"},
    403: {"description": "API key wrong"},
    413: {"description": "Request body or number of loans over the server's limit"},
}
EXAMPLES = {
    "one loan": {"summary": "One loan", "value": EXAMPLE_LOAN},
    "sentinel codes": {
        "summary": "Freddie Mac's 'not available' codes, optional fields left out",
        "value": EXAMPLE_SPARSE_LOAN,
    },
    "batch": {"summary": "A list of loans", "value": [EXAMPLE_LOAN, EXAMPLE_SPARSE_LOAN]},
}
LoansParam = Annotated[LoansBody, Body(openapi_examples=EXAMPLES)]


def as_records(body: Any, limit: int, setting: str) -> list[dict[str, Any]]:
    """The validated loan(s) of a request body as dicts; 413 past ``limit``."""
    loans = body if isinstance(body, list) else [body]
    if len(loans) > limit:
        raise HTTPException(413, f"{len(loans)} loans in one request; the limit is {limit} (setting {setting})")
    return [as_record(loan) for loan in loans]


def json_response(model: type[BaseModel], content: dict[str, Any]) -> Response:
    """`content` validated against `model` and serialized here, in the worker thread. (Returned as a plain dict, a
    `def` route's answer is validated in a second trip through the thread pool: ~0.2 ms, 10% of a one-loan request.)"""
    return Response(model.model_validate(content).model_dump_json(), media_type="application/json")


def model_fields(scorer: Scorer) -> dict[str, Any]:
    info = scorer.bundle.model_info
    return {"model_name": info["name"], "model_version": info.get("version"), "threshold": scorer.bundle.threshold}


@router.post("/predict", response_model=PredictResponse, responses=LIMIT_RESPONSES)
def predict(body: LoansParam, scorer: ScorerDep, settings: SettingsDep, monitor: MonitorDep) -> Response:
    """Default probability, decision at the model's threshold, risk band and outlier score for one loan or a list."""
    records = as_records(body, settings.max_batch, "max_batch")
    scored = scorer.predict(records)
    metrics.observe_predictions(scored)
    monitor.observe(records, scored)
    return json_response(PredictResponse, {**model_fields(scorer), "predictions": scored})
