"""What /metadata reports."""

from __future__ import annotations

import json
from typing import Any

from loan_default.core.bundle import Bundle
from loan_default.core.loan import REQUIRED_FIELDS


def metadata(bundle: Bundle) -> dict[str, Any]:
    """The /metadata answer (built once at startup)."""
    versions_file = bundle.path / "versions.json"
    return {
        "model_name": bundle.model_info["name"],
        "model_version": bundle.model_info.get("version"),
        "bundle": str(bundle.path),
        "threshold": bundle.threshold,
        "decision": {k: v for k, v in bundle.decision.items() if k != "risk_bands"},
        "risk_bands": bundle.decision["risk_bands"],
        "outlier_detector": {
            "method": bundle.outlier.method,
            "detectors": list(bundle.outlier.detectors),
            "threshold": None if bundle.outlier.method == "none" else bundle.outlier.threshold,
        },
        "features": [
            {"name": name, "required": name in REQUIRED_FIELDS, **{k: spec.get(k) for k in _FEATURE_KEYS}}
            for name, spec in bundle.feature_schema.items()
        ],
        "metrics": bundle.metrics,
        "versions": json.loads(versions_file.read_text()) if versions_file.is_file() else {},
    }


_FEATURE_KEYS = ("kind", "role", "description", "low", "high", "codes", "missing_codes", "blank_means")
