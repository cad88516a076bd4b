"""Score and explain validated loans with a bundle: the one code path behind every endpoint and batch scoring.

One loan goes through `Preprocessor.transform_one` (no DataFrame: pandas costs more than the model on a single row);
several go through one DataFrame. Both give the same features (the Preprocessor tests that). The outlier score is
computed in-process by the bundle's exported `OutlierScorer` (never SUOD's process-spawning path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from loan_default.core.bundle import Bundle
from loan_default.core.features import INPUT_FIELDS as FEATURE_FIELDS
from loan_default.core.reasons import ReasonBuilder


@dataclass(frozen=True)
class Features:
    """Model and outlier-detector inputs of a batch of loans."""

    x_num: np.ndarray
    x_cat: np.ndarray
    x_outlier: np.ndarray


class Scorer:
    """Turns validated loans (`schemas.validate_loan` records) into score and explanation records."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.reasons = ReasonBuilder(bundle.preprocessor)

    def features(self, loans: Sequence[Mapping[str, Any]]) -> Features:
        pp = self.bundle.preprocessor
        if len(loans) == 1:
            x_num, x_cat = pp.transform_one(loans[0])
            return Features(x_num, x_cat, pp.outlier_matrix_one(loans[0]))
        frame = pd.DataFrame.from_records(list(loans), columns=list(FEATURE_FIELDS))
        x_num, x_cat = pp.transform(frame)
        return Features(x_num, x_cat, pp.outlier_matrix(frame))

    def predict(self, loans: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One `schemas.LoanScore` record per loan."""
        if not loans:
            return []
        feats = self.features(loans)
        return self._records(loans, feats, self.bundle.logits(feats.x_num, feats.x_cat))

    def explain(self, loans: Sequence[Mapping[str, Any]], top_k: int) -> list[dict[str, Any]]:
        """One `schemas.LoanExplanation` record per loan: the score plus SHAP contributions in plain words."""
        if not loans:
            return []
        feats = self.features(loans)
        logits = self.bundle.logits(feats.x_num, feats.x_cat)
        records = self._records(loans, feats, logits)
        values, base = self.bundle.explain(feats.x_num, feats.x_cat)
        grouped = values @ self.reasons.matrix
        for i, record in enumerate(records):
            contributions = self.reasons.contributions(loans[i], feats.x_num[i], grouped[i])
            record.update(
                logit=float(logits[i]),
                base_value=float(base),
                reasons=[c for c in contributions if c["contribution"] > 0][:top_k],
                contributions=sorted(contributions, key=lambda c: -abs(c["contribution"])),
            )
        return records

    def _records(self, loans: Sequence[Mapping[str, Any]], feats: Features, logits: np.ndarray) -> list[dict]:
        bundle = self.bundle
        p = expit(logits)
        outlier = bundle.outlier.score(feats.x_outlier)
        # NaN threshold (no detector) compares False: nothing is flagged.
        flagged = outlier > bundle.outlier.threshold
        decisions = np.where(p >= bundle.threshold, "default", "no_default")
        # Python lists first: indexing numpy arrays element by element costs more than the model on big batches.
        columns = zip(
            p.tolist(),
            decisions.tolist(),
            bundle.risk_bands(p).tolist(),
            np.where(np.isnan(outlier), None, outlier).tolist(),
            flagged.tolist(),
            strict=True,
        )
        return [
            {
                "loan_id": loan.get("loan_id"),
                "default_probability": probability,
                "decision": decision,
                "risk_band": band,
                "outlier_score": outlier_score,
                "is_outlier": is_outlier,
            }
            for loan, (probability, decision, band, outlier_score, is_outlier) in zip(loans, columns, strict=True)
        ]
