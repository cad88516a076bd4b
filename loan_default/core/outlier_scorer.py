"""Serve the fitted outlier detector in-process from plain arrays: npz + JSON, numpy only, no pickle.

Training fits SUOD (see ``outliers.py``); SUOD's own scoring path clones work into worker processes and costs
milliseconds a row. This module re-implements the scoring of the servable detectors so that one row scores in tens
of microseconds, and equals ``pyod.models.suod.SUOD.decision_function`` to 1e-6:

- IForest: sklearn's tree arrays; score = ``offset_ + 2 ** (-mean path length / c(max_samples))`` (PyOD inverts
  sklearn's ``decision_function``), inputs rounded to float32 first as sklearn does before walking the trees.
- HBOS: histograms + bin edges; the same bin rules as PyOD's numba kernel, including the ``tol`` margin.
- COPOD / ECOD: sorted reference columns (a capped training subsample) and the skewness sign of each column.
- Combination: base scores standardised with the training mean/std (PyOD's ``standardizer``), then averaged or
  maximised; a row is an outlier when its score is above the training contamination quantile.

Serving imports only this module, so it never imports PyOD, SUOD or any training code.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike

from loan_default.common.atomic import atomic_write

FORMAT = "loan-default/outlier-detector"
FORMAT_VERSION = 1
JSON_NAME = "outlier_detector.json"
NPZ_NAME = "outlier_detector.npz"
SERVABLE_DETECTORS = ("IForest", "HBOS", "COPOD", "ECOD")

# Rows per chunk when walking the forest: bounds the (rows x trees) index arrays to a few MB.
_IFOREST_CHUNK_CELLS = 1 << 20
# Up to this many rows, COPOD/ECOD search all columns in one call (see ECDFScorer._counts).
_ECDF_SMALL_BATCH_ROWS = 8


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): mean path length of an unsuccessful BST search on n points (sklearn's ``_average_path_length``)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class BaseScorer(Protocol):
    """One exported base detector: raw PyOD ``decision_function`` of float64 rows."""

    def score(self, X: np.ndarray) -> np.ndarray: ...


class IForestScorer:
    """Isolation forest from sklearn's tree arrays, padded to (n_trees, max_nodes)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], max_samples: int, offset: float) -> None:
        feature = np.asarray(arrays["feature"], dtype=np.intp)
        left = np.asarray(arrays["children_left"], dtype=np.intp)
        right = np.asarray(arrays["children_right"], dtype=np.intp)
        n_trees, n_nodes = feature.shape
        base = (np.arange(n_trees, dtype=np.intp) * n_nodes)[:, None]
        is_leaf = left < 0
        # Flat global indices; a leaf points at itself so extra traversal steps leave it in place.
        own = base + np.arange(n_nodes, dtype=np.intp)[None, :]
        self._left = np.where(is_leaf, own, left + base).ravel()
        self._right = np.where(is_leaf, own, right + base).ravel()
        self._feature = np.where(is_leaf, 0, feature).ravel()
        self._threshold = np.asarray(arrays["threshold"], dtype=np.float64).ravel()
        self._roots = base.ravel()
        depth = self._node_depths(self._roots, self._left, self._right, is_leaf.ravel())
        self._n_steps = int(depth.max())
        # sklearn adds (nodes on the path - 1) + c(samples in the leaf) per tree, i.e. depth + c(n).
        self._leaf_value = depth + average_path_length(arrays["n_node_samples"]).ravel()
        self._denominator = n_trees * float(average_path_length(np.array([max_samples]))[0])
        self._offset = float(offset)

    @staticmethod
    def _node_depths(roots: np.ndarray, left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray) -> np.ndarray:
        """Depth of every node (root = 0), one vectorised pass per tree level."""
        depth = np.full(left.shape, -1.0)
        frontier = roots
        level = 0.0
        while frontier.size:
            depth[frontier] = level
            internal = frontier[~is_leaf[frontier]]
            frontier = np.concatenate([left[internal], right[internal]])
            level += 1.0
        return depth

    def score(self, X: np.ndarray) -> np.ndarray:
        """PyOD IForest score (higher = more abnormal)."""
        # sklearn validates to float32 and compares float32 values with float64 thresholds.
        X32 = X.astype(np.float32).astype(np.float64)
        n_trees = self._roots.size
        chunk = max(1, _IFOREST_CHUNK_CELLS // n_trees)
        depths = np.empty(X.shape[0])
        for start in range(0, X.shape[0], chunk):
            rows = X32[start : start + chunk]
            node = np.broadcast_to(self._roots, (rows.shape[0], n_trees))
            for _ in range(self._n_steps):
                values = np.take_along_axis(rows, self._feature[node], axis=1)
                node = np.where(values <= self._threshold[node], self._left[node], self._right[node])
            depths[start : start + chunk] = self._leaf_value[node].sum(axis=1)
        if self._denominator == 0:  # forest grown on a single sample: sklearn scores 1
            return np.full(X.shape[0], 1.0 + self._offset)
        return 2.0 ** (-depths / self._denominator) + self._offset


class HBOSScorer:
    """Histogram-based outlier score with static bins (PyOD's ``_calculate_outlier_scores``)."""

    def __init__(self, bin_edges: np.ndarray, hist: np.ndarray, alpha: float, tol: float) -> None:
        self._edges = np.asarray(bin_edges, dtype=np.float64)  # (n_bins + 1, n_features)
        self._log_density = np.log2(np.asarray(hist, dtype=np.float64) + alpha)  # (n_bins, n_features)
        self._min_log_density = self._log_density.min(axis=0)
        self._tol = float(tol)
        self._columns = np.arange(self._edges.shape[1])

    def score(self, X: np.ndarray) -> np.ndarray:
        """PyOD HBOS score (higher = more abnormal)."""
        n_bins = self._log_density.shape[0]
        edges = self._edges
        # np.digitize(x, edges, right=True) == number of edges strictly below x.
        bin_index = np.zeros(X.shape, dtype=np.intp)
        for edge in edges:
            bin_index += X > edge
        per_feature = self._log_density[np.clip(bin_index - 1, 0, n_bins - 1), self._columns]
        # Values beyond the outer edges by more than tol * bin width get the rarest bin's density.
        far_below = (bin_index == 0) & (edges[0] - X > (edges[1] - edges[0]) * self._tol)
        far_above = (bin_index == n_bins + 1) & (X - edges[-1] > (edges[-1] - edges[-2]) * self._tol)
        per_feature = np.where(far_below | far_above, self._min_log_density, per_feature)
        return -np.sum(per_feature, axis=1)


class ECDFScorer:
    """COPOD or ECOD against sorted reference columns (a capped training subsample).

    Each row is scored as if appended alone to the reference: this is PyOD's ``decision_function`` on a batch of
    one row (PyOD concatenates the whole batch with its training data, so its scores depend on the batch), with
    the skewness sign of each column frozen at fit time. So the score is batch-independent and servable.
    """

    def __init__(self, sorted_columns: np.ndarray, skew_sign: np.ndarray, kind: str) -> None:
        if kind not in ("copod", "ecod"):
            raise ValueError(f"unknown ECDF detector kind {kind!r}; expected 'copod' or 'ecod'")
        self.sorted_columns = np.ascontiguousarray(sorted_columns, dtype=np.float64)  # (n_features, n_reference)
        self.skew_sign = np.asarray(skew_sign, dtype=np.float64)
        self.kind = kind
        self._keys: np.ndarray | None = None

    def _counts(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per cell: how many reference values are <= x, and how many are >= x."""
        n_features, m = self.sorted_columns.shape
        if X.shape[0] <= _ECDF_SMALL_BATCH_ROWS:
            # One searchsorted over all columns at once: complex numbers sort lexicographically, so
            # (column id + 1j * value) keys order by column, then value (numpy call overhead dominates small batches).
            if self._keys is None:
                self._keys = np.empty(self.sorted_columns.shape, dtype=np.complex128)
                self._keys.real = np.arange(n_features)[:, None]
                self._keys.imag = self.sorted_columns
                self._keys = self._keys.ravel()
            queries = np.empty(X.shape, dtype=np.complex128)
            queries.real = np.arange(n_features)
            queries.imag = X
            offsets = np.arange(n_features) * m
            counts_le = np.searchsorted(self._keys, queries, side="right") - offsets
            counts_ge = m - (np.searchsorted(self._keys, queries, side="left") - offsets)
            return counts_le.astype(np.float64), counts_ge.astype(np.float64)
        counts_le = np.empty(X.shape, dtype=np.float64)
        counts_ge = np.empty(X.shape, dtype=np.float64)
        for j, column in enumerate(self.sorted_columns):
            # Sorted needles let searchsorted reuse the previous position: about twice as fast on big batches.
            order = np.argsort(X[:, j])
            needles = X[order, j]
            counts_le[order, j] = np.searchsorted(column, needles, side="right")
            counts_ge[order, j] = m - np.searchsorted(column, needles, side="left")
        return counts_le, counts_ge

    def score(self, X: np.ndarray) -> np.ndarray:
        """PyOD COPOD/ECOD score of each row as if scored alone (higher = more abnormal)."""
        m = self.sorted_columns.shape[1]
        counts_le, counts_ge = self._counts(X)
        u_left = -np.log((counts_le + 1.0) / (m + 1.0))
        u_right = -np.log((counts_ge + 1.0) / (m + 1.0))
        sign = self.skew_sign
        # PyOD's expression verbatim: the tail the column is skewed towards (both tails when the skew is 0).
        u_skew = u_left * -1 * np.sign(sign - 1) + u_right * np.sign(sign + 1)
        if self.kind == "copod":
            outlyingness = np.maximum(u_skew, np.add(u_left, u_right) / 2)
        else:
            outlyingness = np.maximum(u_skew, np.maximum(u_left, u_right))
        return outlyingness.sum(axis=1)


def _build_scorer(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> BaseScorer:
    """Construct one base scorer from its JSON spec and its npz arrays (keys ``<key>/<array>``)."""
    name, key = spec["name"], spec["key"]

    def arr(field: str) -> np.ndarray:
        return arrays[f"{key}/{field}"]

    if name == "IForest":
        fields = ("feature", "threshold", "children_left", "children_right", "n_node_samples")
        return IForestScorer({f: arr(f) for f in fields}, int(spec["max_samples"]), float(spec["offset"]))
    if name == "HBOS":
        return HBOSScorer(arr("bin_edges"), arr("hist"), float(spec["alpha"]), float(spec["tol"]))
    if name in ("COPOD", "ECOD"):
        return ECDFScorer(arr("sorted_columns"), arr("skew_sign"), name.lower())
    raise ValueError(f"outlier detector {name!r} cannot be served; servable: {', '.join(SERVABLE_DETECTORS)}")


class OutlierScorer:
    """In-process outlier scoring for serving; ``method='none'`` scores NaN and flags nothing.

    ``score(X)`` equals the fitted SUOD's ``decision_function`` (higher = more abnormal); ``is_outlier(X)`` is
    ``score > threshold`` where ``threshold`` is the training-score quantile at ``1 - contamination``.
    """

    def __init__(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"not a {FORMAT} v{FORMAT_VERSION} state: format={meta.get('format')!r} version={meta.get('version')!r}"
            )
        self.meta = dict(meta)
        self.method: str = meta["method"]
        self.n_features: int | None = meta.get("n_features")
        self.detectors: tuple[str, ...] = tuple(spec["name"] for spec in meta.get("detectors", ()))
        if self.method == "none":
            self.threshold = float("nan")
            return
        if self.method != "suod":
            raise ValueError(f"unknown outlier method {self.method!r} in outlier state")
        self.threshold = float(meta["threshold"])
        self.combination: str = meta["combination"]
        self._scorers = [_build_scorer(spec, arrays) for spec in meta["detectors"]]
        self._mean = np.asarray(arrays["score_mean"], dtype=np.float64)
        self._scale = np.asarray(arrays["score_scale"], dtype=np.float64)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> OutlierScorer:
        """Load ``outlier_detector.json`` (+ ``.npz`` unless method is none) from ``directory``; checks the checksum."""
        directory = Path(directory)
        meta = json.loads((directory / JSON_NAME).read_text())
        if meta.get("method") == "none":
            return cls(meta, {})
        npz_path = directory / NPZ_NAME
        digest = hashlib.sha256(npz_path.read_bytes()).hexdigest()
        if digest != meta.get("npz_sha256"):
            raise ValueError(f"{npz_path} does not match {directory / JSON_NAME} (sha256 {digest})")
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return cls(meta, arrays)

    def _validate(self, X: ArrayLike) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2:
            raise ValueError(f"expected rows of features, got an array of shape {X.shape}")
        if self.n_features is not None and X.shape[1] != self.n_features:
            raise ValueError(f"outlier detector expects {self.n_features} features, got {X.shape[1]}")
        if self.method != "none" and not np.isfinite(X).all():
            raise ValueError("outlier scoring needs finite, preprocessed features (got NaN or inf)")
        return X

    def base_scores(self, X: ArrayLike) -> np.ndarray:
        """Raw score of each base detector, shape (n_rows, n_detectors)."""
        X = self._validate(X)
        if self.method == "none":
            return np.empty((X.shape[0], 0))
        return np.column_stack([scorer.score(X) for scorer in self._scorers])

    def score(self, X: ArrayLike) -> np.ndarray:
        """Combined outlier score of each row (1-D input = one row); NaN when no detector was fitted."""
        X = self._validate(X)
        if self.method == "none":
            return np.full(X.shape[0], np.nan)
        standardized = (self.base_scores(X) - self._mean) / self._scale
        if self.combination == "average":
            return np.mean(standardized, axis=1)
        return np.max(standardized, axis=1)

    def is_outlier(self, X: ArrayLike) -> np.ndarray:
        """True where the score is above the training threshold; all False when no detector was fitted."""
        scores = self.score(X)
        if self.method == "none":
            return np.zeros(scores.shape, dtype=bool)
        return scores > self.threshold


def write_outlier_state(
    directory: str | os.PathLike[str], meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> Path:
    """Write the state ``OutlierScorer(meta, arrays)`` takes as ``outlier_detector.json`` (+ ``.npz``); return the JSON path.

    Each file is written to a temporary name in ``directory`` and renamed, so a failure leaves no half-written file;
    the JSON (written last) records the npz checksum so a mismatched pair is refused at load.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    if arrays:
        npz_path = directory / NPZ_NAME
        atomic_write(npz_path, lambda f: np.savez(f, **arrays))
        meta["npz_sha256"] = hashlib.sha256(npz_path.read_bytes()).hexdigest()
    else:  # a previous export's arrays would no longer belong to this JSON
        (directory / NPZ_NAME).unlink(missing_ok=True)
    json_path = directory / JSON_NAME
    atomic_write(json_path, lambda f: f.write(json.dumps(meta, indent=2, allow_nan=False).encode()))
    return json_path
