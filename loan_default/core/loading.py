"""Which bundle to serve, and opening it with every check: shared by the server, serve.py and batch scoring."""

from __future__ import annotations

from pathlib import Path

from loan_default.core.bundle import BundleError, load_bundle, newest_bundle
from loan_default.core.loan import EXAMPLE_LOAN, check_feature_schema, validate_loan
from loan_default.core.scorer import Scorer


def resolve_bundle(bundle: Path | None, root: Path, option: str = "python serve.py bundle=<path>") -> Path:
    """`bundle`, or the newest bundle under `root`; BundleError telling the user to train first when there is none
    (or to name one with `option`)."""
    if bundle is not None:
        return Path(bundle)
    found = newest_bundle([root])
    if found is None:
        raise BundleError(
            f"no model bundle found under {root}/: train one first with `python train.py`, or name one with `{option}`"
        )
    return found


def open_scorer(path: Path) -> Scorer:
    """Load and verify the bundle (checksums, format, feature schema), then explain one example loan: that warms
    the SHAP explainer and torch, and proves the bundle can score. BundleError with the reason if it cannot."""
    bundle = load_bundle(path)
    check_feature_schema(bundle.feature_schema)
    scorer = Scorer(bundle)
    try:
        scorer.explain([validate_loan(EXAMPLE_LOAN)], top_k=1)
    except Exception as err:  # any failure here means the bundle cannot be served: say so before taking traffic
        versions = path / "versions.json"
        raise BundleError(
            f"{path}: the bundle loads but cannot score a loan ({type(err).__name__}: {err}); it was probably "
            f"written by another version of loan-default (see {versions}); retrain with this version"
        ) from err
    return scorer
