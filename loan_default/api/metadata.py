"""What /metadata reports, and the check that a bundle reads the same fields this API validates."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from loan_default.api.schemas import REQUIRED_FIELDS, Loan
from loan_default.bundle import Bundle, BundleError
from loan_default.freddie.schema import ORIGINATION_FIELDS


def check_feature_schema(schema: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a bundle whose input fields (names, kinds, ranges, codes) differ from what the request model checks:
    the API would let through values the model never saw, or refuse values it was trained on."""
    problems = []
    for name, spec in schema.items():
        field = ORIGINATION_FIELDS.get(name)
        if field is None or name not in Loan.model_fields:
            problems.append(f"{name}: not a field this API accepts")
            continue
        expected = {
            "kind": field.kind.value,
            "low": field.low,
            "high": field.high,
            "codes": None if field.codes is None else sorted(field.codes),
            "missing_codes": sorted(field.missing),
        }
        problems += [
            f"{name}.{key}: bundle has {spec.get(key)!r}, this version {value!r}"
            for key, value in expected.items()
            if spec.get(key) != value
        ]
    if problems:
        raise BundleError(
            "the bundle's feature schema does not match this version's request model; retrain with this version "
            "or serve with the version that trained it: " + "; ".join(problems)
        )


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
