"""The model bundle: the one contract between training and serving.

A bundle is one folder:

    manifest.json         sha256 of every other file (verified at load: a changed file is refused)
    model.safetensors     network weights (no pickle): one LoanNet, or the K nets of a cross-validation fold ensemble
    model.json            network shape (``{"folds": K, "fold": ...}`` for an ensemble), logit offset (prior
                          correction), model name and version
    preprocessor/         fitted Preprocessor state (JSON)
    outlier/              fitted outlier detector exported to arrays (JSON + npz)
    decision.json         threshold, how it was chosen, risk bands
    feature_schema.json   raw input fields with types, codes and valid ranges
    background.npz        SHAP background rows (transformed features)
    config.yaml           resolved training config
    metrics.json          evaluation metrics
    versions.json         package versions used to train
    monitoring.json       training distributions of the score and every input field (core.drift.Reference; bundles
                          written before it have none: they still load and serve, monitoring is unavailable)

It is written into a temporary folder and swapped into place in one step (`_swap_in`), so an interrupted run never
leaves half a bundle and a bundle being replaced stays complete and readable until the new one is. Files are 0644 and
folders 0755: a server running as another user must read them. `load_bundle` never re-fits anything and imports no
training code (no Lightning).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from scipy.special import expit

from loan_default.common.atomic import make_tree_readable, replace_folder
from loan_default.core.drift import Reference
from loan_default.core.ensemble import FoldEnsemble, build_network
from loan_default.core.network import LoanNet
from loan_default.core.outlier_scorer import OutlierScorer
from loan_default.core.preprocess import Preprocessor

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
MONITORING = "monitoring.json"
_PACKAGES = ("loan-default", "torch", "lightning", "numpy", "pandas", "scikit-learn", "pyod", "shap", "pyarrow")


log = logging.getLogger(__name__)


class BundleError(RuntimeError):
    """A bundle that is missing, incomplete, tampered with, or from an incompatible format."""


def default_risk_bands(threshold: float) -> list[dict[str, Any]]:
    """Bands anchored on the decision threshold: below half of it is low risk, at or above it is high."""
    return [
        {"name": "low", "upper": threshold / 2},
        {"name": "moderate", "upper": threshold},
        {"name": "high", "upper": min(1.0, 3 * threshold)},
        {"name": "very high", "upper": 1.0},
    ]


@dataclass
class Bundle:
    """A loaded model bundle: transform raw loans, score them, explain them."""

    path: Path
    net: LoanNet | FoldEnsemble
    preprocessor: Preprocessor
    outlier: OutlierScorer
    logit_offset: float
    decision: dict[str, Any]
    feature_schema: dict[str, Any]
    background: tuple[np.ndarray, np.ndarray]
    model_info: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    monitoring: Reference | None = None  # None for a bundle written before monitoring.json existed
    _explainer: Any = field(default=None, repr=False)

    @property
    def threshold(self) -> float:
        return float(self.decision["threshold"])

    # -- transform and score --------------------------------------------------------------------------------------
    def transform(self, loans: pd.DataFrame | Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Raw loans (loan-table rows or API dicts, sentinel codes allowed) -> (x_num, x_cat)."""
        if isinstance(loans, pd.DataFrame):
            return self.preprocessor.transform(loans)
        return self.preprocessor.transform(pd.DataFrame(list(loans)))

    def logits(self, x_num: np.ndarray, x_cat: np.ndarray) -> np.ndarray:
        """Calibrated logits (prior offset applied), shape (N,)."""
        with torch.inference_mode():
            raw = self.net(torch.as_tensor(x_num), torch.as_tensor(x_cat))
        return raw[:, 0].double().numpy() + self.logit_offset

    def predict_proba(self, loans: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Default probability per loan."""
        return expit(self.logits(*self.transform(loans)))

    def risk_bands(self, p: np.ndarray) -> np.ndarray:
        bands = self.decision["risk_bands"]
        uppers = np.array([b["upper"] for b in bands[:-1]])
        names = np.array([b["name"] for b in bands], dtype=object)
        return names[np.searchsorted(uppers, p, side="right")]

    # -- explain ---------------------------------------------------------------------------------------------------
    @property
    def explainer(self):
        """SHAP explainer on the logit scale (built once, on first use; the server warms it at start)."""
        if self._explainer is None:
            from loan_default.core.explain import ShapExplainer

            self._explainer = ShapExplainer(
                self.net,
                torch.as_tensor(self.background[0]),
                torch.as_tensor(self.background[1]),
                self.preprocessor.numeric_names + self.preprocessor.categorical_names,
                max_background=len(self.background[0]),
            )
        return self._explainer

    def explain(self, x_num: np.ndarray, x_cat: np.ndarray) -> tuple[np.ndarray, float]:
        """(SHAP values per feature (N, F + C), base value) on the calibrated logit scale."""
        values, base = self.explainer.explain(torch.as_tensor(x_num), torch.as_tensor(x_cat))
        return values, base + self.logit_offset


# ---------------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------------
def write_bundle(
    path: str | Path,
    *,
    net: LoanNet | FoldEnsemble,
    net_kwargs: dict[str, Any],
    preprocessor: Preprocessor,
    outlier_filter: Any,
    logit_offset: float,
    decision: dict[str, Any],
    background: tuple[np.ndarray, np.ndarray],
    config_yaml: str,
    metrics: dict[str, Any],
    model_name: str = "loan-default-ann",
    monitoring: Reference | None = None,
) -> Path:
    """Write a bundle atomically: into a temporary sibling folder, then swapped in for any bundle already at ``path``.

    ``monitoring`` (the training rows' score and field distributions, ``core.drift.build_reference``) becomes
    monitoring.json.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, tmp / "model.safetensors")
        _write_json(
            tmp / "model.json",
            {
                "format": BUNDLE_FORMAT,
                "name": model_name,
                "version": _version("loan-default"),
                "network": net_kwargs,
                "logit_offset": float(logit_offset),
            },
        )
        preprocessor.save(tmp / "preprocessor")
        outlier_filter.export(tmp / "outlier")
        decision = {"risk_bands": default_risk_bands(float(decision["threshold"])), **decision}
        _write_json(tmp / "decision.json", decision)
        _write_json(tmp / "feature_schema.json", preprocessor.feature_schema())
        np.savez(tmp / "background.npz", x_num=background[0], x_cat=background[1])
        (tmp / "config.yaml").write_text(config_yaml)
        _write_json(tmp / "metrics.json", metrics)
        _write_json(tmp / "versions.json", {p: _version(p) for p in _PACKAGES})
        if monitoring is not None:
            (tmp / MONITORING).write_text(monitoring.to_json())
        _write_json(tmp / MANIFEST, {"format": BUNDLE_FORMAT, "files": _checksums(tmp)})
        make_tree_readable(tmp)
        replace_folder(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the half-written bundle, or the replaced one
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------------
def load_bundle(path: str | Path) -> Bundle:
    """Load and verify a bundle. Refuses a bundle whose files do not match its manifest."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path} is not a model bundle (no {MANIFEST}); train one with `python train.py`")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {manifest.get('format')}, this version reads {BUNDLE_FORMAT}")
    verify_checksums(path, manifest["files"])

    model_info = json.loads((path / "model.json").read_text())
    net = build_network(model_info["network"])  # one LoanNet, or the cross-validation fold ensemble
    net.load_state_dict(load_file(path / "model.safetensors"))
    net.eval()
    background = np.load(path / "background.npz", allow_pickle=False)
    return Bundle(
        path=path,
        net=net,
        preprocessor=Preprocessor.load(path / "preprocessor"),
        outlier=OutlierScorer.load(path / "outlier"),
        logit_offset=float(model_info["logit_offset"]),
        decision=json.loads((path / "decision.json").read_text()),
        feature_schema=json.loads((path / "feature_schema.json").read_text()),
        background=(background["x_num"], background["x_cat"]),
        model_info=model_info,
        metrics=json.loads((path / "metrics.json").read_text()),
        monitoring=_load_monitoring(path),
    )


def _load_monitoring(path: Path) -> Reference | None:
    """The monitoring reference, or None when the bundle predates it or holds one this version cannot read."""
    if not (path / MONITORING).is_file():
        return None
    try:
        return Reference.from_json((path / MONITORING).read_text())
    except (ValueError, TypeError, KeyError) as err:
        log.warning("%s: monitoring reference unreadable (%s); monitoring unavailable", path / MONITORING, err)
        return None


def verify_checksums(path: Path, expected: Mapping[str, str]) -> None:
    actual = _checksums(path)
    missing = sorted(set(expected) - set(actual))
    changed = sorted(name for name in expected if name in actual and actual[name] != expected[name])
    extra = sorted(set(actual) - set(expected))
    if missing or changed or extra:
        raise BundleError(
            f"{path}: bundle does not match its manifest "
            f"(changed: {changed or '-'}, missing: {missing or '-'}, unexpected: {extra or '-'}); refusing to load it"
        )


def newest_bundle(roots: Iterable[str | Path]) -> Path | None:
    """The most recently written bundle under any of `roots` (runs and sweep jobs), or None."""
    found = [m.parent for root in roots if Path(root).exists() for m in Path(root).rglob(f"bundle/{MANIFEST}")]
    return max(found, key=lambda p: (p / MANIFEST).stat().st_mtime, default=None)


def _checksums(folder: Path) -> dict[str, str]:
    sums = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.name != MANIFEST:
            sums[f.relative_to(folder).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return sums


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
