"""Population stability: PSI of the score and CSI of each input field against a reference from the training rows.

One implementation for the training validation report, the batch monitor (``python -m loan_default.monitor``) and the
server's ``/monitoring``. A ``Reference`` holds, per field, bin edges (numbers: quantiles of the training values) or
categories, the training share of each bin (plus one bin for missing values), the missing rate and the training range;
no borrower-level rows.

PSI = sum over bins of (actual - expected) * ln(actual / expected), on bin fractions. A bin that is empty on one side
would make it infinite, so both fractions are floored at ``PSI_FLOOR`` (1e-4, not renormalised): one training bin of
10% that is empty in the new data then adds (0.1 - 1e-4) * ln(0.1 / 1e-4) = 0.69, a plain red. The floor changes the
number, so it is part of the definition and is reported with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loan_default.core import features as ft
from loan_default.freddie.schema import ORIGINATION_FIELDS, Kind

PSI_FLOOR = 1e-4
GREEN_BELOW, RED_ABOVE = 0.1, 0.25  # the usual bands: < 0.1 stable, 0.1-0.25 watch, > 0.25 shifted
MIN_CATEGORY_SHARE = 0.01  # rarer training categories share one "other" bin: sparse bins are noise (decision 0007)
MAX_LISTED = 20  # new categories named in a comparison, at most
# Every field the model reads directly (dates only serve to derive features and always move on).
MONITORED_FIELDS: tuple[str, ...] = (*ft.NUMERIC_FIELDS, *ft.ONE_HOT_FIELDS, *ft.CATEGORICAL_FIELDS)
REFERENCE_VERSION = 1


def psi(expected_fractions: Sequence[float], actual_fractions: Sequence[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index of two distributions over the same bins (each a list of fractions)."""
    e = np.maximum(np.asarray(expected_fractions, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual_fractions, dtype=np.float64), floor)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs the same bins on both sides, got {e.size} and {a.size}")
    return float(np.sum((a - e) * np.log(a / e)))


def traffic_light(value: float | None) -> str | None:
    """'green' below 0.1, 'amber' from 0.1 to 0.25, 'red' above 0.25 (None when there is no value)."""
    if value is None or not np.isfinite(value):
        return None
    return "green" if value < GREEN_BELOW else "amber" if value <= RED_ABOVE else "red"


@dataclass
class FieldReference:
    """One field's (or the score's) training distribution over fixed bins; the last bin holds missing values.

    Numbers: ``edges`` are the inner bin edges, bins closed on the right: (-inf, e1], (e1, e2], ..., (ek, inf).
    Categories: one bin per ``categories`` entry, then "other" (training categories rarer than 1%, listed in
    ``other_categories``, and categories never seen in training), then missing.
    """

    name: str
    kind: str  # "numeric" | "categorical"
    fractions: list[float]
    missing_rate: float
    n: int
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    other_categories: list[str] = field(default_factory=list)
    low: float | None = None  # training range of the values (numbers only)
    high: float | None = None

    def bin_counts(self, values: np.ndarray) -> np.ndarray:
        """How many of ``values`` fall in each bin (numbers: NaN is missing; categories: None is missing)."""
        values = np.asarray(values)
        if self.kind == "numeric":
            x = values.astype(np.float64)
            missing = np.isnan(x)
            index = np.searchsorted(np.asarray(self.edges, dtype=np.float64), x[~missing], side="left")
            counts = np.bincount(index, minlength=len(self.edges) + 1)
        else:
            # Each distinct value looked up once (as text): a few dozen lookups, not a Python string per loan.
            codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
            position = {c: i for i, c in enumerate(self.categories)}
            other, missing = len(self.categories), len(self.categories) + 1
            bins = np.array([position.get(str(u), other) for u in uniques] + [missing], dtype=np.int64)
            return np.bincount(bins[codes], minlength=missing + 1).astype(np.int64)  # code -1 (missing): last entry
        return np.append(counts, int(missing.sum())).astype(np.int64)

    def bin_labels(self) -> list[str]:
        """Readable bin names, for reports."""
        if self.kind == "numeric":
            e = [f"{v:g}" for v in self.edges]
            inner = [f"({a}, {b}]" for a, b in zip(e, e[1:], strict=False)]
            return ([f"<= {e[0]}", *inner, f"> {e[-1]}"] if e else ["all values"]) + ["missing"]
        return [*self.categories, "other", "missing"]

    def compare(self, values: np.ndarray) -> dict[str, Any]:
        """PSI against new values, with missing-rate change, share outside the training range and new categories."""
        values = np.asarray(values)
        counts = self.bin_counts(values)
        n = int(counts.sum())
        fractions = counts / n if n else np.zeros(len(counts))
        value = psi(self.fractions, fractions) if n else None
        result: dict[str, Any] = {
            "psi": value,
            "light": traffic_light(value),
            "n": n,
            "missing_rate_ref": self.missing_rate,
            "missing_rate": float(fractions[-1]) if n else None,
            "out_of_range_share": 0.0,
            "new_categories": [],
            "fractions_ref": list(self.fractions),
            "fractions": [float(f) for f in fractions],
        }
        if self.kind == "numeric":
            x = values.astype(np.float64)
            known = x[~np.isnan(x)]
            if known.size and self.low is not None:
                result["out_of_range_share"] = float(np.mean((known < self.low) | (known > self.high)))
        else:
            text = pd.Series(values, dtype=object).dropna()
            seen = set(self.categories) | set(self.other_categories)
            new = text[~text.isin(seen)]
            result["out_of_range_share"] = float(len(new) / len(text)) if len(text) else 0.0
            result["new_categories"] = new.value_counts().index[:MAX_LISTED].astype(str).tolist()
        return result


@dataclass
class Reference:
    """The training distributions a later population is compared with: the score and every monitored field."""

    score: FieldReference | None
    fields: dict[str, FieldReference]
    bins: int = 10
    psi_floor: float = PSI_FLOOR
    version: int = REFERENCE_VERSION

    def to_json(self) -> str:
        """The reference as JSON text (what the bundle stores as monitoring.json)."""
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> Reference:
        """A reference from ``to_json`` text (or the parsed dict)."""
        raw = json.loads(data) if isinstance(data, str | bytes) else dict(data)
        if raw.get("version") != REFERENCE_VERSION:
            raise ValueError(f"monitoring reference version {raw.get('version')!r}, expected {REFERENCE_VERSION}")
        score = raw.get("score")
        return cls(
            score=None if score is None else FieldReference(**score),
            fields={name: FieldReference(**f) for name, f in raw["fields"].items()},
            bins=int(raw["bins"]),
            psi_floor=float(raw["psi_floor"]),
            version=int(raw["version"]),
        )


def field_kind(name: str) -> str:
    """'numeric' for number fields of the schema, 'categorical' for codes and text."""
    kind = ORIGINATION_FIELDS[name].kind
    return "numeric" if kind in (Kind.INT, Kind.FLOAT, Kind.DATE) else "categorical"


def field_values(frame: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Each field's values as the model reads them: sentinel codes (9999, 999, '9') and blanks become missing
    (NaN / None), codes take their canonical form. A field absent from ``frame`` is missing on every row."""
    cols = ft.frame_columns(frame, [name for name in names if name in ft.INPUT_FIELDS])
    out = {}
    for name in names:
        if name in cols:
            out[name] = cols[name]
        elif name in frame.columns:
            codes, uniques = pd.factorize(frame[name], use_na_sentinel=True)
            parsed = [ft.parse_value(name, u) for u in uniques] + [ft.parse_value(name, None)]
            out[name] = np.asarray(parsed, dtype=np.float64 if field_kind(name) == "numeric" else object)[codes]
        else:
            out[name] = np.full(len(frame), np.nan if field_kind(name) == "numeric" else None, dtype=object)
    return out


def numeric_reference(name: str, values: np.ndarray, bins: int = 10) -> FieldReference:
    """Quantile bins of training values (NaN = missing); repeated quantiles (a value held by many loans) merge."""
    x = np.asarray(values, dtype=np.float64)
    known = x[~np.isnan(x)]
    edges = np.unique(np.quantile(known, np.arange(1, bins) / bins)) if known.size else np.array([])
    ref = FieldReference(name, "numeric", [], 0.0, int(x.size), edges=[float(e) for e in edges])
    if known.size:
        ref.low, ref.high = float(known.min()), float(known.max())
    counts = ref.bin_counts(x)
    ref.fractions = [float(c) for c in counts / max(1, x.size)]
    ref.missing_rate = ref.fractions[-1]
    return ref


def categorical_reference(name: str, values: np.ndarray) -> FieldReference:
    """One bin per category holding at least 1% of training rows, one for the rarer ones, one for missing."""
    values = np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)  # counted per distinct value, as text
    counts = pd.Series(np.bincount(codes[codes >= 0], minlength=len(uniques)), index=[str(u) for u in uniques])
    shares = counts.groupby(level=0).sum() / max(1, len(values))
    common = sorted(shares.index[shares >= MIN_CATEGORY_SHARE])
    rare = sorted(shares.index[shares < MIN_CATEGORY_SHARE])
    ref = FieldReference(name, "categorical", [], 0.0, len(values), categories=common, other_categories=rare)
    counts = ref.bin_counts(values)
    ref.fractions = [float(c) for c in counts / max(1, len(values))]
    ref.missing_rate = ref.fractions[-1]
    return ref


def build_reference(
    scores: np.ndarray | None,
    frame: pd.DataFrame | None,
    fields: Sequence[str] | None = None,
    bins: int = 10,
    rows: np.ndarray | None = None,
) -> Reference:
    """The reference from training rows: score deciles (``bins`` quantiles) and each field's distribution.

    ``fields`` defaults to every field the model reads (``MONITORED_FIELDS``); ``frame`` holds them raw or as the
    reader returns them; ``rows`` (positions) reads only those rows of it, a column at a time, without a copy of them.
    """
    names = list(MONITORED_FIELDS if fields is None else fields)
    score = None if scores is None else numeric_reference("score", np.asarray(scores, dtype=np.float64), bins)
    refs: dict[str, FieldReference] = {}
    if frame is not None:
        for name in names:  # one field at a time: parsed columns of every field at once were ~260 bytes a row
            values = field_values(_column(frame, name, rows), [name])[name]
            kind = field_kind(name)
            refs[name] = (
                numeric_reference(name, values, bins) if kind == "numeric" else categorical_reference(name, values)
            )
    return Reference(score=score, fields=refs, bins=bins)


def _column(frame: pd.DataFrame, name: str, rows: np.ndarray | None) -> pd.DataFrame:
    """``frame``'s column ``name`` (an empty frame when it has none) at positions ``rows`` (all when None)."""
    if rows is None:
        return frame
    if name not in frame.columns:
        return pd.DataFrame(index=range(len(rows)))
    return frame[name].iloc[rows].to_frame()


def compare(reference: Reference, scores: np.ndarray | None = None, frame: pd.DataFrame | None = None) -> dict:
    """Drift of new scores and/or loans against ``reference``.

    Returns ``psi_score`` (None without scores), ``score`` (its bins), ``csi`` per field (psi, light, missing_rate_ref,
    missing_rate, out_of_range_share, new_categories, bin fractions), ``fields_red``, ``fields_amber`` and ``status``:
    "drifted" when the score's PSI or any field's CSI is red, else "stable".
    """
    result: dict[str, Any] = {"psi_floor": reference.psi_floor, "psi_score": None, "score_light": None, "score": None}
    if scores is not None and reference.score is not None:
        result["score"] = reference.score.compare(np.asarray(scores, dtype=np.float64))
        result["psi_score"], result["score_light"] = result["score"]["psi"], result["score"]["light"]
    csi: dict[str, dict] = {}
    if frame is not None and reference.fields:
        csi = {name: ref.compare(field_values(frame, [name])[name]) for name, ref in reference.fields.items()}
    result["csi"] = csi
    result["fields_red"] = sorted(name for name, c in csi.items() if c["light"] == "red")
    result["fields_amber"] = sorted(name for name, c in csi.items() if c["light"] == "amber")
    drifted = bool(result["fields_red"]) or result["score_light"] == "red"
    result["status"] = "drifted" if drifted else "stable"
    return result
