"""Drop outlying training rows with SUOD (through PyOD) and export the fitted detector for serving.

The caller passes the preprocessed numeric training matrix (``x_num``) and labels only; validation and test rows
never reach ``fit``. ``OutlierFilter.fit`` returns a keep-mask for those training rows; ``export`` writes the
detector as plain arrays that ``loan_default.core.outlier_scorer.OutlierScorer`` scores in-process at serving.

Defaults (conf/outlier/suod.yaml): IForest with 2048-row trees (a 256-row tree rarely holds a 0.2% cluster of errors)
and ECOD, combined by maximum (an error is usually far out in one field only, so one detector must be enough). SUOD
runs with ``bps_flag=False`` (its cost model writes into the installed package), ``approx_flag_global=False`` and
``rp_flag_global=False`` (unseeded RNGs: non-deterministic, not exportable), ``n_jobs=1`` (workers cost more than the
detectors on few cores) and joblib ``max_nbytes=None`` (nothing for loky's resource tracker to complain about).
The measurements behind each: docs/decisions/0002-outlier-detectors.md.

With ``n_jobs > 1`` SUOD spawns worker processes (and ``import suod`` switches joblib's loky backend to the
``spawn`` start method), so every entry point that fits must guard its top level with
``if __name__ == "__main__":``. SUOD's prints, joblib's progress lines, warnings and worker stderr are captured
during the fit and logged: a one-line WARNING if they hold a traceback, the full text at DEBUG. (The fit is one
opaque SUOD call with stderr captured, so it logs its start and result instead of drawing a progress bar.)

COPOD and ECOD are replaced by ``ReferenceCOPOD`` / ``ReferenceECOD``: the same scores, computed against a seeded
subsample of at most ``max_reference_rows`` training rows, each row scored as if alone (PyOD's own scores depend on
the batch they are computed in). That keeps the exported state small and the fitted and served scores equal.
Servable detectors: IForest, HBOS (integer ``n_bins``), COPOD, ECOD. LOF can filter but not be exported.

Above ``max_fit_rows`` training rows, SUOD is fitted on a seeded subsample of that many rows (IForest trees see
``max_samples`` rows each and COPOD/ECOD a capped reference anyway) and every other row is scored, ``CHUNK_ROWS`` at a
time, by the fitted SUOD's ``decision_function`` against the threshold learned on the fit rows: memory then grows by
~10 bytes a row instead of ~540 (SUOD's float64 copies and per-detector score matrices of every row), and time falls
(docs/decisions/0084-outlier-fit-memory.md). At or below the cap the fit is SUOD's on all rows, as it always was.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from joblib import parallel_config
from numpy.typing import ArrayLike
from pyod.models.base import BaseDetector
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from pyod.models.lof import LOF
from scipy.stats import skew
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from loan_default.common.progress import progress_bar
from loan_default.core.outlier_scorer import (
    FORMAT,
    FORMAT_VERSION,
    SERVABLE_DETECTORS,
    ECDFScorer,
    OutlierScorer,
    write_outlier_state,
)
from loan_default.core.preprocess import CHUNK_ROWS  # rows scored (or checked) at a time outside SUOD

log = logging.getLogger(__name__)

METHODS = ("suod", "none")
DETECTORS = ("IForest", "HBOS", "COPOD", "ECOD", "LOF")
COMBINATIONS = ("average", "maximization")


class RowSource(ABC):
    """Training rows built on demand, for `OutlierFilter.fit`: ``shape`` is (rows, features) and ``source[rows]`` (a
    slice, or sorted row indices) returns those rows as a float array. The filter asks for its fit subsample, then for
    CHUNK_ROWS-row slices, so the whole matrix is never held (``fitted.OutlierRows``)."""

    shape: tuple[int, int]
    dtype = np.dtype(np.float32)

    @abstractmethod
    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray: ...


def reference_rows(n_rows: int, max_rows: int, seed: int | None) -> np.ndarray:
    """Sorted indices of a seeded subsample of at most ``max_rows`` of ``n_rows`` (all rows when it fits)."""
    if n_rows <= max_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False))


class _ReferenceECDF:
    """Fit COPOD/ECOD on a capped reference subsample; score every row against it as if scored alone."""

    _kind: str
    contamination: float
    max_reference_rows: int
    random_state: int | None

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> _ReferenceECDF:
        """Keep the sorted reference columns and skewness signs, then score all training rows."""
        X = check_array(X)
        self._set_n_classes(y)
        reference = X[reference_rows(X.shape[0], self.max_reference_rows, self.random_state)]
        # A constant column has an undefined skew (PyOD then scores NaN); sign 0 scores both tails instead.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            skew_sign = np.nan_to_num(np.sign(skew(reference, axis=0)), nan=0.0)
        self.scorer_ = ECDFScorer(np.sort(reference, axis=0).T, skew_sign, self._kind)
        self.decision_scores_ = self.decision_function(X)
        self._process_decision_scores()
        return self

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Outlier score of each row (higher = more abnormal), independent of the other rows in ``X``."""
        check_is_fitted(self, ["scorer_"])
        X = check_array(X, dtype=np.float64)
        # Scored by chunk: each row's score depends on that row alone, so chunks give the same scores with
        # CHUNK_ROWS-sized temporaries (the scorer keeps ~8 float64 matrices of its batch alive).
        out = np.empty(X.shape[0])
        for start in range(0, X.shape[0], CHUNK_ROWS):
            out[start : start + CHUNK_ROWS] = self.scorer_.score(X[start : start + CHUNK_ROWS])
        return out


class ReferenceCOPOD(_ReferenceECDF, COPOD):
    """COPOD against a seeded reference subsample of the training rows."""

    _kind = "copod"

    def __init__(self, contamination: float = 0.1, max_reference_rows: int = 20000, random_state: int | None = None):
        super().__init__(contamination=contamination)
        self.max_reference_rows = max_reference_rows
        self.random_state = random_state


class ReferenceECOD(_ReferenceECDF, ECOD):
    """ECOD against a seeded reference subsample of the training rows."""

    _kind = "ecod"

    def __init__(self, contamination: float = 0.1, max_reference_rows: int = 20000, random_state: int | None = None):
        super().__init__(contamination=contamination)
        self.max_reference_rows = max_reference_rows
        self.random_state = random_state


def build_detectors(
    names: Sequence[str],
    contamination: float,
    seed: int,
    max_reference_rows: int = 20000,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[BaseDetector]:
    """Unfitted PyOD detectors by name, seeded; ``params[name]`` overrides that detector's keyword arguments."""
    params = params or {}
    defaults: dict[str, tuple[type[BaseDetector], dict[str, Any]]] = {
        "IForest": (IForest, {"n_estimators": 200, "max_samples": 2048, "random_state": seed}),  # module docstring
        "HBOS": (HBOS, {"n_bins": 10}),
        "COPOD": (ReferenceCOPOD, {"max_reference_rows": max_reference_rows, "random_state": seed}),
        "ECOD": (ReferenceECOD, {"max_reference_rows": max_reference_rows, "random_state": seed}),
        "LOF": (LOF, {"n_neighbors": 20}),
    }
    detectors = []
    for name in names:
        cls, kwargs = defaults[name]
        detectors.append(cls(contamination=contamination, **{**kwargs, **dict(params.get(name, {}))}))
    return detectors


def suod_class() -> type:
    """PyOD's SUOD wrapper, imported so that the ``suod`` package cannot silence warnings process-wide.

    ``suod`` runs ``warnings.filterwarnings("ignore")`` at import; ``catch_warnings`` restores the filters.
    Imported lazily because importing it also switches loky to ``spawn`` and appends to ``sys.path``.
    """
    with warnings.catch_warnings():
        from pyod.models.suod import SUOD
    return SUOD


@contextlib.contextmanager
def captured_output(what: str) -> Iterator[None]:
    """Capture stdout/stderr (Python- and fd-level, so worker processes spawned inside too) and warnings.

    The captured text is logged when the block ends, even if it raised: one WARNING line when it holds a
    traceback, the full text at DEBUG.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.flush()
    python_level = io.StringIO()
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved: list[tuple[int, int]] = []
        try:
            for fd in (1, 2):
                with contextlib.suppress(OSError):  # no such descriptor (embedded interpreters)
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
            with contextlib.redirect_stdout(python_level), contextlib.redirect_stderr(python_level):
                yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            _log_captured(what, python_level.getvalue() + sink.read().decode(errors="replace"))


def _log_captured(what: str, text: str) -> None:
    """One WARNING line if ``text`` holds tracebacks; the full text at DEBUG."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return
    tracebacks = text.count("Traceback (most recent call last)")
    if tracebacks:
        log.warning(
            "%s: hid %d traceback(s) in %d lines of worker output, last line: %s (logger %s at DEBUG shows all)",
            what,
            tracebacks,
            len(lines),
            lines[-1][:200],
            __name__,
        )
    log.debug("%s output:\n%s", what, text)


class OutlierFilter:
    """Fit an outlier detector on the training rows and say which to keep.

    ``method="suod"`` fits PyOD's SUOD over ``detectors``; ``method="none"`` keeps every row and exports a scorer
    that returns NaN scores and never flags. Rows scoring above the ``1 - contamination`` quantile of the training
    scores are flagged; with ``keep_defaults`` flagged defaults (``y == 1``) are kept anyway, because defaults are
    rare and often look unusual for the very reasons they default.
    """

    def __init__(
        self,
        method: str = "suod",
        detectors: Sequence[str] = ("IForest", "ECOD"),
        contamination: float = 0.02,
        combination: str = "maximization",
        n_jobs: int = 1,
        keep_defaults: bool = True,
        seed: int = 0,
        max_reference_rows: int = 20000,
        detector_params: Mapping[str, Mapping[str, Any]] | None = None,
        max_fit_rows: int = 200_000,
    ) -> None:
        self.method = str(method)
        self.detectors = tuple(str(name) for name in detectors)
        self.contamination = float(contamination)
        self.combination = str(combination)
        self.n_jobs = int(n_jobs)
        self.keep_defaults = bool(keep_defaults)
        self.seed = int(seed)
        self.max_reference_rows = int(max_reference_rows)
        self.detector_params = {str(k): dict(v) for k, v in (detector_params or {}).items()}
        self.max_fit_rows = int(max_fit_rows)
        self._validate()
        self.detector_: Any = None
        self.keep_mask_: np.ndarray | None = None
        self.scores_: np.ndarray | None = None
        self.n_features_: int | None = None
        self._report: dict[str, float] | None = None

    def _validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"outlier method must be one of {METHODS}, got {self.method!r}")
        unknown = sorted(set(self.detectors) - set(DETECTORS))
        if unknown:
            raise ValueError(f"unknown outlier detector(s) {unknown}; known: {', '.join(DETECTORS)}")
        if len(set(self.detectors)) != len(self.detectors):
            raise ValueError(f"outlier detectors must be distinct, got {list(self.detectors)}")
        if self.method == "suod" and len(self.detectors) < 2:
            raise ValueError("SUOD needs at least 2 detectors")
        stray = sorted(set(self.detector_params) - set(self.detectors))
        if stray:
            raise ValueError(f"detector_params given for detector(s) not in use: {stray}")
        if not 0.0 < self.contamination <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination}")
        if self.combination not in COMBINATIONS:
            raise ValueError(f"combination must be one of {COMBINATIONS}, got {self.combination!r}")
        if self.n_jobs == 0:
            raise ValueError("n_jobs must be a positive number of workers or -1 for all cores")
        if self.max_reference_rows < 2:
            raise ValueError(f"max_reference_rows must be at least 2, got {self.max_reference_rows}")
        if self.max_fit_rows < 2:
            raise ValueError(f"max_fit_rows must be at least 2, got {self.max_fit_rows}")

    def fit(self, X: ArrayLike | RowSource, y: ArrayLike) -> np.ndarray:
        """Fit on the training rows ``X`` (labels ``y``, 1 = default); return the boolean keep-mask.

        A float32 ``X`` (``Preprocessor.outlier_matrix``) is not copied whole: only the rows SUOD fits on, and each
        chunk scored, become float64. A `RowSource` is read the same way, a subsample and chunks at a time.
        """
        if not isinstance(X, RowSource):
            X = np.asarray(X)
            if not np.issubdtype(X.dtype, np.floating):
                X = X.astype(np.float64)
        y = np.asarray(y).ravel()
        if len(X.shape) != 2 or X.shape[0] < 2:
            raise ValueError(f"expected a 2-D training matrix with at least 2 rows, got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y has {y.size} labels for {X.shape[0]} training rows")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("y must hold only 0 (no default) and 1 (default)")
        if not all(np.isfinite(X[start : start + CHUNK_ROWS]).all() for start in range(0, X.shape[0], CHUNK_ROWS)):
            raise ValueError("outlier detection needs finite, preprocessed (imputed) features; X has NaN or inf")
        start = time.perf_counter()
        self.n_features_ = X.shape[1]
        if self.method == "none":
            flagged = np.zeros(X.shape[0], dtype=bool)
        else:
            flagged = self._fit_suod(X)
        positive = y == 1
        remove = flagged & ~positive if self.keep_defaults else flagged
        self.keep_mask_ = ~remove
        self._report = {
            "rows": int(X.shape[0]),
            "kept": int(self.keep_mask_.sum()),
            "removed": int(remove.sum()),
            "removed_class_0": int((remove & ~positive).sum()),
            "removed_class_1": int((remove & positive).sum()),
            "flagged": int(flagged.sum()),
            "flagged_class_1": int((flagged & positive).sum()),
            "fit_rows": int(min(X.shape[0], self.max_fit_rows)) if self.method == "suod" else 0,
            "fit_seconds": time.perf_counter() - start,
        }
        if self.method == "suod":
            self._report["threshold"] = float(self.detector_.threshold_)
        log.info(
            "Outlier filter (%s): removed %d of %d training rows (class 0: %d, class 1: %d) in %.1f s",
            self.method,
            self._report["removed"],
            self._report["rows"],
            self._report["removed_class_0"],
            self._report["removed_class_1"],
            self._report["fit_seconds"],
        )
        return self.keep_mask_

    def _fit_suod(self, X: np.ndarray | RowSource) -> np.ndarray:
        """Fit SUOD quietly on (at most ``max_fit_rows`` of) the rows; keep the model and the scores of every row;
        return the flagged rows."""
        fit_rows = reference_rows(X.shape[0], self.max_fit_rows, self.seed)
        capped = fit_rows.size < X.shape[0]
        X_fit = np.asarray(X[fit_rows] if capped else X[:], dtype=np.float64)
        detectors = build_detectors(
            self.detectors, self.contamination, self.seed, self.max_reference_rows, self.detector_params
        )
        log.info(
            "Fitting SUOD (%s) on %d of %d training rows x %d features, n_jobs=%d",
            ", ".join(self.detectors),
            X_fit.shape[0],
            X.shape[0],
            X.shape[1],
            self.n_jobs,
        )
        with captured_output("SUOD fit"), parallel_config(max_nbytes=None):
            model = suod_class()(
                base_estimators=detectors,
                contamination=self.contamination,
                combination=self.combination,
                n_jobs=self.n_jobs,
                rp_flag_global=False,
                bps_flag=False,
                approx_flag_global=False,
                verbose=False,
            )
            model.fit(X_fit)
        del X_fit
        self.detector_ = model
        if not capped:
            self.scores_ = np.asarray(model.decision_scores_, dtype=np.float64)
            return np.asarray(model.labels_, dtype=bool)
        self.scores_ = self._score_beside(X, fit_rows, np.asarray(model.decision_scores_, dtype=np.float64))
        # PyOD's rule (labels_ = decision_scores_ > threshold_), with the threshold of the fit rows.
        return self.scores_ > model.threshold_

    def _score_beside(self, X: np.ndarray | RowSource, fit_rows: np.ndarray, fit_scores: np.ndarray) -> np.ndarray:
        """Scores of all rows of ``X``: SUOD's training scores for the (sorted) ``fit_rows``, the fitted SUOD's
        ``decision_function`` for the others, CHUNK_ROWS at a time."""
        model = self.detector_
        scores = np.empty(X.shape[0])
        started = time.perf_counter()
        # The bar lives outside the captured block (which redirects the descriptors): a chunk at a time is captured.
        bar = progress_bar(total=X.shape[0], desc="outlier scores", unit="row", unit_scale=True)
        with bar, parallel_config(max_nbytes=None):
            for start in range(0, X.shape[0], CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, X.shape[0])
                lo, hi = np.searchsorted(fit_rows, (start, stop))
                others = np.ones(stop - start, dtype=bool)
                others[fit_rows[lo:hi] - start] = False
                if others.any():
                    rows = X[start:stop][others].astype(np.float64)
                    with captured_output("SUOD scoring"):
                        scores[start:stop][others] = model.decision_function(rows)
                scores[fit_rows[lo:hi]] = fit_scores[lo:hi]
                bar.update(stop - start)
        log.info(
            "Scored the other %d training rows with the fitted SUOD in %.1f s",
            X.shape[0] - fit_rows.size,
            time.perf_counter() - started,
        )
        return scores

    @property
    def report(self) -> dict[str, float]:
        """Row counts from the last fit (rows, kept, removed, removed per class, flagged, threshold, seconds)."""
        if self._report is None:
            raise RuntimeError("OutlierFilter.report is available after fit()")
        return dict(self._report)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted detector as (JSON-able metadata, named float/int arrays) for ``OutlierScorer``."""
        if self.keep_mask_ is None:
            raise RuntimeError("fit() the OutlierFilter before exporting it")
        meta: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "method": self.method,
            "n_features": self.n_features_,
        }
        if self.method == "none":
            return meta, {}
        model = self.detector_
        scaler = model.score_scalar_
        arrays: dict[str, np.ndarray] = {
            "score_mean": np.asarray(scaler.mean_, dtype=np.float64),
            "score_scale": np.asarray(scaler.scale_, dtype=np.float64),
        }
        specs = []
        for name, detector in zip(self.detectors, model.model_.base_estimators, strict=True):
            spec, detector_arrays = _detector_state(name, detector)
            specs.append(spec)
            arrays.update({f"{spec['key']}/{k}": v for k, v in detector_arrays.items()})
        meta.update(
            combination=self.combination,
            contamination=self.contamination,
            threshold=float(model.threshold_),
            seed=self.seed,
            detectors=specs,
        )
        return meta, arrays

    def scorer(self) -> OutlierScorer:
        """The in-process scorer that ``export`` + ``OutlierScorer.load`` would give, without the disk round trip."""
        return OutlierScorer(*self.state())

    def export(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``outlier_detector.json`` (+ ``.npz``) into ``directory``; return the JSON path."""
        return write_outlier_state(directory, *self.state())


def _detector_state(name: str, detector: BaseDetector) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Plain arrays + JSON spec for one fitted base detector; raises for detectors that cannot be served."""
    key = name.lower()
    if name == "IForest":
        return _iforest_state(key, detector)
    if name == "HBOS":
        if isinstance(detector.n_bins, str):
            raise ValueError("HBOS with n_bins='auto' cannot be exported for serving; set an integer n_bins")
        spec = {"name": name, "key": key, "alpha": float(detector.alpha), "tol": float(detector.tol)}
        return spec, {"bin_edges": np.asarray(detector.bin_edges_), "hist": np.asarray(detector.hist_)}
    if name in ("COPOD", "ECOD"):
        scorer = detector.scorer_
        spec = {"name": name, "key": key, "reference_rows": int(scorer.sorted_columns.shape[1])}
        return spec, {"sorted_columns": scorer.sorted_columns, "skew_sign": scorer.skew_sign}
    raise ValueError(
        f"outlier detector {name!r} cannot be exported for serving (it needs the whole training set and a "
        f"neighbour search at scoring time); servable detectors: {', '.join(SERVABLE_DETECTORS)}. "
        f"Use {name} for filtering only, or drop it from outlier.detectors."
    )


def _iforest_state(key: str, detector: IForest) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """sklearn's tree arrays padded to (n_trees, max_nodes); feature ids mapped back to columns of X."""
    forest = detector.detector_
    trees = [estimator.tree_ for estimator in forest.estimators_]
    n_nodes = max(tree.node_count for tree in trees)
    shape = (len(trees), n_nodes)
    # Node ids, feature ids and sample counts fit int32 (trees hold at most max_samples rows): a smaller export.
    feature = np.full(shape, -2, dtype=np.int32)
    threshold = np.zeros(shape)
    left = np.full(shape, -1, dtype=np.int32)
    right = np.full(shape, -1, dtype=np.int32)
    samples = np.zeros(shape, dtype=np.int32)
    subsample_features = forest._max_features != forest.n_features_in_
    for i, (tree, columns) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
        n = tree.node_count
        tree_feature = tree.feature
        if subsample_features:  # trees were grown on X[:, columns]
            tree_feature = np.where(tree_feature >= 0, np.asarray(columns)[np.maximum(tree_feature, 0)], -2)
        feature[i, :n] = tree_feature
        threshold[i, :n] = tree.threshold
        left[i, :n] = tree.children_left
        right[i, :n] = tree.children_right
        samples[i, :n] = tree.n_node_samples
    spec = {"name": "IForest", "key": key, "max_samples": int(forest.max_samples_), "offset": float(forest.offset_)}
    arrays = {
        "feature": feature,
        "threshold": threshold,
        "children_left": left,
        "children_right": right,
        "n_node_samples": samples,
    }
    return spec, arrays
