"""POST /explain: the /predict answer plus the top reasons per loan in plain words (SHAP, log-odds scale)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, Security

from loan_default.serving import metrics
from loan_default.serving.deps import MonitorDep, ScorerDep, SettingsDep
from loan_default.serving.routes.predict import LIMIT_RESPONSES, LoansParam, as_records, json_response, model_fields
from loan_default.serving.schemas import ExplainResponse
from loan_default.serving.security import require_api_key

router = APIRouter(tags=["scoring"], dependencies=[Security(require_api_key)])


@router.post("/explain", response_model=ExplainResponse, responses=LIMIT_RESPONSES)
def explain(
    body: LoansParam,
    scorer: ScorerDep,
    settings: SettingsDep,
    monitor: MonitorDep,
    top_k: Annotated[int | None, Query(ge=1, le=50, description="Reasons per loan (default: server setting)")] = None,
) -> Response:
    """Scores with the top factors that raised each loan's risk, every factor's contribution and the base value."""
    records = as_records(body, settings.max_explain_batch, "max_explain_batch")
    explained = scorer.explain(records, top_k or settings.top_k)
    metrics.observe_predictions(explained)
    monitor.observe(records, explained)
    return json_response(ExplainResponse, {**model_fields(scorer), "predictions": explained})
