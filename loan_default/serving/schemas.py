"""Request and response models of the scoring API (pydantic v2). The loan itself is `loan_default.core.loan.Loan`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag

from loan_default.core.loan import (  # noqa: F401  (re-exported for the routes)
    EXAMPLE_LOAN,
    EXAMPLE_SPARSE_LOAN,
    FEATURE_FIELDS,
    REQUIRED_FIELDS,
    Loan,
    LoanText,
    as_record,
    validate_loan,
)


def _one_or_many(value: Any) -> str:
    return "loans" if isinstance(value, list) else "loan"


# One loan (an object) or a batch (an array); errors name the branch taken, e.g. ["body", "loans", 3, "dti"].
LoansBody = Annotated[
    Annotated[Loan, Tag("loan")] | Annotated[list[Loan], Tag("loans")],  # type: ignore[valid-type]
    Discriminator(_one_or_many),
]


# ---------------------------------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------------------------------
class LoanScore(BaseModel):
    """The model's answer for one loan."""

    loan_id: str | None = Field(None, description="The request's loan_id, if it had one")
    default_probability: float = Field(description="Probability of default within the label horizon")
    decision: Literal["default", "no_default"] = Field(description="default when the probability >= the threshold")
    risk_band: str = Field(description="Risk band of the probability (bands are listed in /metadata)")
    outlier_score: float | None = Field(description="Outlier score (higher = more unusual); null without a detector")
    is_outlier: bool = Field(description="True when the loan is more unusual than the detector's training threshold")


class PredictResponse(BaseModel):
    """Scores for every loan of the request, in request order."""

    model_name: str
    model_version: str | None
    threshold: float
    predictions: list[LoanScore]


class Contribution(BaseModel):
    """One factor's SHAP contribution on the log-odds scale (positive = raised the risk)."""

    feature: str = Field(description="Input field (or engineered feature) the contribution belongs to")
    label: str = Field(description="Readable name of the feature")
    value: int | float | str | None = Field(description="The loan's value of the feature; null when not available")
    contribution: float = Field(description="SHAP value on the log-odds scale")
    text: str = Field(description="The factor in plain words")


class LoanExplanation(LoanScore):
    """A loan's score with its reasons: ``base_value + sum(contributions) == logit``."""

    logit: float = Field(description="Log-odds of default (the model's output before the sigmoid)")
    base_value: float = Field(description="Average log-odds over the background loans")
    reasons: list[Contribution] = Field(description="The top factors that raised the risk, largest first")
    contributions: list[Contribution] = Field(description="Every factor, largest absolute contribution first")


class ExplainResponse(BaseModel):
    """Scores and reasons for every loan of the request, in request order."""

    model_name: str
    model_version: str | None
    threshold: float
    predictions: list[LoanExplanation]


class InvocationsResponse(BaseModel):
    """MLflow scoring protocol answer: one record per input row."""

    predictions: list[LoanScore]


class FeatureInfo(BaseModel):
    """An input field: its kind, role in the model, valid range, codes and sentinel codes."""

    name: str
    kind: str
    role: str
    description: str
    required: bool
    low: float | None
    high: float | None
    codes: list[str] | None
    missing_codes: list[str]
    blank_means: str | None


class MonitoringResponse(BaseModel):
    """Drift of the loans this worker served lately (its window) against the bundle's training reference."""

    available: bool = Field(description="False when the bundle has no monitoring reference (an older bundle)")
    reason: str | None = Field(description="Why there is no comparison, when there is none")
    window: dict[str, Any] = Field(description="rows compared, max_rows kept, served_since_start, since (epoch s)")
    psi_floor: float | None = Field(None, description="Floor of an empty bin's fraction in PSI")
    psi_score: float | None = Field(None, description="PSI of the default probabilities")
    score_light: Literal["green", "amber", "red"] | None = None
    score: dict[str, Any] | None = Field(None, description="The score's bins: fractions now and in training")
    csi: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per field: psi, light, missing rates, share outside the training range, new categories, bins",
    )
    fields_red: list[str] = Field(default_factory=list)
    fields_amber: list[str] = Field(default_factory=list)
    status: Literal["stable", "drifted"] | None = Field(None, description="drifted when the score or a field is red")


class MetadataResponse(BaseModel):
    """What the served model is, what it reads and how it was evaluated."""

    model_name: str
    model_version: str | None
    bundle: str
    threshold: float
    decision: dict[str, Any]
    risk_bands: list[dict[str, Any]]
    outlier_detector: dict[str, Any]
    features: list[FeatureInfo]
    metrics: dict[str, Any]
    versions: dict[str, Any]
