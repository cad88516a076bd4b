"""Preprocessor: turns loan-table rows (or one raw REST loan) into the model's ``(x_num, x_cat)`` arrays.

Fitted on the training rows only. The numeric pipeline per field:

1. read: sentinel codes (9999, 999, 99, blank) -> missing;
2. validate: values outside the schema's documented range (``Field.low/high``, e.g. DTI 70, credit score 7580)
   -> missing too, since the model should not trust them; the field's one missing indicator is 1 for both;
3. log1p for skewed amounts (original UPB);
4. clip to training quantiles (default 0.5% / 99.5%);
5. impute the training median; 6. standard-scale with the training mean and std.

``x_num`` columns, in order: scaled numeric fields, scaled engineered features (SATO, CLTV - LTV), 0/1 missing
indicators, 0/1 one-hot codes (plus a "missing" column per code field), 0/1 engineered flags. ``x_cat`` holds one
integer id per open-ended text field (state, MSA, ZIP3, seller): 1.. for values seen at least ``min_frequency`` times
in training, 0 for unseen, rare or missing.

`outlier_matrix` is the outlier detectors' view of a loan, built to find mis-keyed records (a balance x1000, a rate
x10, CLTV typed below LTV): the continuous fields `features.OUTLIER_NUMERIC` (credit score, LTV, DTI, log UPB) and the
rate as SATO, read but not validated or clipped (an error keeps its size), median-imputed and standardised with the
model features' training statistics, plus `features.OUTLIER_CHECKS`, which are 0 for every possible loan. Discrete
fields stay out: their rare-but-valid values outrank real errors. Why each column is there, with the measurements:
docs/decisions/0001-outlier-matrix-features.md.

State is one JSON file (no pickle); floats round-trip exactly, so a loaded Preprocessor gives bitwise equal output.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loan_default.common.atomic import atomic_write_text
from loan_default.core import features as ft
from loan_default.freddie.schema import ORIGINATION_FIELDS

log = logging.getLogger(__name__)

# 2: `outlier_matrix` columns changed (v1 bundles' outlier detectors expect the 10 numeric fields): refuse v1.
FORMAT_VERSION = 2
_PARAMS = ("clip_low", "clip_high", "median", "mean", "std")
STATE_FILE = "preprocessor.json"
CHUNK_ROWS = 65_536  # fit and outlier_matrix read the table this many rows at a time: temporaries stay bounded


@dataclass(frozen=True)
class NumericStats:
    """Fitted transform of one continuous feature."""

    name: str
    clip_low: float
    clip_high: float
    median: float
    mean: float
    std: float


@dataclass(frozen=True)
class OneHot:
    """One-hot columns of a code field: the codes frequent enough in training, and whether a missing column exists."""

    field: str
    codes: tuple[str, ...]
    missing_column: bool

    @property
    def values(self) -> tuple[str | None, ...]:
        """The value each column flags, None for the missing column."""
        return self.codes + ((None,) if self.missing_column else ())


class Preprocessor:
    """Feature pipeline fitted on training loans; see the module docstring for the steps.

    Args:
        min_frequency: a code or text value needs this many training loans to get its own column / embedding id.
        clip_quantiles: lower and upper training quantiles that continuous features are clipped to.
        display_names: overrides for the readable feature names (feature name -> label).
    """

    def __init__(
        self,
        min_frequency: int = 20,
        clip_quantiles: tuple[float, float] = (0.005, 0.995),
        display_names: Mapping[str, str] | None = None,
    ) -> None:
        low, high = clip_quantiles
        if not (0 <= low < high <= 1):
            raise ValueError(f"clip_quantiles must satisfy 0 <= low < high <= 1, got {clip_quantiles}")
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
        self.min_frequency = int(min_frequency)
        self.clip_quantiles = (float(low), float(high))
        self._display_overrides = dict(display_names or {})
        self._fitted = False

    # ----------------------------------------------------------------------------------------------------------------
    # Fitting
    # ----------------------------------------------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, rows: np.ndarray | None = None, chunk: int = CHUNK_ROWS) -> Preprocessor:
        """Fit on ``df`` (or only its rows at positions ``rows``, e.g. ``split_loans(...)["train"]``).

        The table is read ``chunk`` rows at a time; what is kept whole is the fields the continuous features come
        from (float32 where exact, one column each: quantiles and medians need every value), widened to float64 one
        feature at a time, and value counts per code field: the result is the same as reading all rows at once.
        """
        positions = np.arange(len(df)) if rows is None else np.asarray(rows)
        if len(positions) == 0:
            raise ValueError("cannot fit the Preprocessor on an empty table")
        counted = (*ft.ONE_HOT_FIELDS, *ft.CATEGORICAL_FIELDS)
        kept = (*ft.NUMERIC_FIELDS, "first_payment_date")  # what the continuous features are computed from
        # Filled in place, float32 while every value survives the round trip (the compact table's columns do), widened
        # to float64 once otherwise: no per-chunk pieces left between the chunks' temporaries, no concatenated copy.
        cols = {name: np.empty(len(positions), dtype=np.float32) for name in kept}
        counts = {field: Counter() for field in counted}
        has_missing = dict.fromkeys(ft.ONE_HOT_FIELDS, False)
        start = 0
        for part in _chunks(df, positions, chunk):
            validated = ft.validate(ft.frame_columns(part))
            for name in kept:
                values = validated[name]
                if cols[name].dtype == np.float32 and not _exact_in_float32(values):
                    cols[name] = cols[name].astype(np.float64)
                cols[name][start : start + len(values)] = values
            start += len(part)
            for field in counted:
                counts[field].update(pd.Series(validated[field], dtype=object).value_counts(dropna=True).to_dict())
            for field in ft.ONE_HOT_FIELDS:
                has_missing[field] |= bool(pd.isna(validated[field]).any())
            del validated
        wide = {name: cols[name].astype(np.float64) for name in ("first_payment_date", "orig_rate")}
        self._rates = ft.RateTable.fit(wide["first_payment_date"], wide["orig_rate"])
        del wide

        self._numeric: list[NumericStats] = []
        self._indicators: list[str] = []
        for name, values in self._continuous_values(cols):
            observed = values[~np.isnan(values)]
            if observed.size == 0:
                log.info("feature %s: no observed values in training data, left out", name)
                continue
            self._numeric.append(self._fit_numeric(name, values, observed))
            # Raw fields get an indicator when training has gaps or the schema has sentinel codes, so serving never
            # meets a new column; engineered features are missing exactly when an input is, which is indicated.
            if name in ft.NUMERIC_FIELDS and (observed.size < values.size or ORIGINATION_FIELDS[name].missing):
                self._indicators.append(name)

        self._one_hot = [self._fit_one_hot(field, counts[field], has_missing[field]) for field in ft.ONE_HOT_FIELDS]
        self._vocab = {field: self._frequent(counts[field]) for field in ft.CATEGORICAL_FIELDS}
        self._derive()
        self._fitted = True
        log.info(
            "Preprocessor fitted on %d loans: %d numeric columns, %d categorical (%s)",
            len(positions),
            len(self.numeric_names),
            len(self.categorical_names),
            ", ".join(f"{f}={c}" for f, c in zip(self.categorical_names, self.cat_cardinalities, strict=True)),
        )
        return self

    def _continuous_values(self, cols: Mapping[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
        """Each continuous feature of the fit's rows in float64 (the numeric fields, then the engineered ones), one at
        a time: all of them at once were ~120 bytes a training row on top of the columns."""
        for name, how in ft.NUMERIC_FIELDS.items():
            x = cols[name].astype(np.float64)
            yield name, ft.signed_log1p(x) if how == "log" else x
        needed = ("orig_rate", "first_payment_date", "cltv", "ltv")
        yield from ft.engineered_numeric({n: cols[n].astype(np.float64) for n in needed}, self._rates).items()

    def _fit_numeric(self, name: str, values: np.ndarray, observed: np.ndarray) -> NumericStats:
        low, high = np.quantile(observed, self.clip_quantiles)
        clipped = np.clip(observed, low, high)
        median = float(np.median(clipped))
        filled = np.concatenate([clipped, np.full(values.size - observed.size, median)])
        std = float(filled.std())
        return NumericStats(name, float(low), float(high), median, float(filled.mean()), std if std > 0 else 1.0)

    def _frequent(self, counts: Mapping[str, int]) -> list[str]:
        """Values seen at least ``min_frequency`` times, most frequent first (ties alphabetical), missing excluded."""
        kept = {value: n for value, n in counts.items() if n >= self.min_frequency}
        return sorted(kept, key=lambda v: (-kept[v], v))

    def _fit_one_hot(self, field: str, counts: Mapping[str, int], has_missing: bool) -> OneHot:
        can_be_missing = bool(ORIGINATION_FIELDS[field].missing) or has_missing
        return OneHot(field, tuple(sorted(self._frequent(counts))), can_be_missing)

    def _derive(self) -> None:
        """Column names and labels, parameter vectors and id lookups, derived from the fitted state."""
        continuous = [s.name for s in self._numeric]
        labels = {name: ft.FIELD_LABELS[name] for name in continuous}
        labels |= {f"{f}_missing": f"{ft.FIELD_LABELS[f]} missing" for f in self._indicators}
        for oh in self._one_hot:
            labels |= {f"{oh.field}_{c}": ft.code_label(oh.field, c) for c in oh.codes}
            if oh.missing_column:
                labels[f"{oh.field}_missing"] = f"{ft.FIELD_LABELS[oh.field]} missing"
        labels |= {f: ft.FIELD_LABELS[f] for f in ft.ENGINEERED_FLAGS}
        self._numeric_names = list(labels)  # insertion order is the x_num column order
        labels |= {f: ft.FIELD_LABELS[f] for f in ft.CATEGORICAL_FIELDS}
        self._labels = labels | {k: v for k, v in self._display_overrides.items() if k in labels}
        self._params = {k: np.array([getattr(s, k) for s in self._numeric]) for k in _PARAMS}
        self._indicator_positions = np.array([continuous.index(f) for f in self._indicators], dtype=np.intp)
        outlier_numeric = [continuous.index(n) for n in ft.OUTLIER_NUMERIC if n in continuous]
        self._outlier_positions = np.array(outlier_numeric, dtype=np.intp)
        self._ids = {field: {v: i + 1 for i, v in enumerate(vocab)} for field, vocab in self._vocab.items()}

    # ----------------------------------------------------------------------------------------------------------------
    # Transforming
    # ----------------------------------------------------------------------------------------------------------------
    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(x_num float32 (N, F), x_cat int64 (N, C))`` for a loan table."""
        return self._encode(ft.frame_columns(df))

    def transform_one(self, loan: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(x_num (1, F), x_cat (1, C))`` for one raw loan dict (loan-table column names; raw strings, numbers or
        Freddie sentinel codes); equal to the batch result for the same loan."""
        return self._encode(ft.loan_columns(loan))

    def outlier_matrix(self, df: pd.DataFrame, chunk: int = CHUNK_ROWS, rows: np.ndarray | None = None) -> np.ndarray:
        """float32 (N, len(outlier_names)): the outlier detector's view of each loan (see the module docstring), of
        ``df``'s rows at positions ``rows`` (default: all). Built ``chunk`` rows at a time, reading only those rows
        of ``df`` (each row's values depend on that row alone)."""
        positions = np.arange(len(df)) if rows is None else np.asarray(rows)
        out = np.empty((len(positions), len(self.outlier_names)), dtype=np.float32)
        start = 0
        for part in _chunks(df, positions, chunk):
            out[start : start + len(part)] = self._outliers(ft.frame_columns(part))
            start += len(part)
        return out

    def outlier_matrix_one(self, loan: Mapping[str, Any]) -> np.ndarray:
        """`outlier_matrix` (1, K) for one raw loan dict."""
        return self._outliers(ft.loan_columns(loan))

    @staticmethod
    def _numeric_values(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            name: ft.signed_log1p(cols[name]) if how == "log" else cols[name] for name, how in ft.NUMERIC_FIELDS.items()
        }

    def _encode(self, raw: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        cols = ft.validate(raw)
        values = {**self._numeric_values(cols), **ft.engineered_numeric(cols, self._rates)}
        v = np.column_stack([values[s.name] for s in self._numeric])
        missing = np.isnan(v)
        p = self._params
        continuous = (np.where(missing, p["median"], np.clip(v, p["clip_low"], p["clip_high"])) - p["mean"]) / p["std"]
        columns = [cols[oh.field] == code for oh in self._one_hot for code in oh.values]
        columns += ft.engineered_flags(cols).values()
        x_num = np.concatenate(
            [continuous, missing[:, self._indicator_positions], np.column_stack(columns)], axis=1, dtype=np.float32
        )
        x_cat = np.empty((len(v), len(ft.CATEGORICAL_FIELDS)), dtype=np.int64)
        for k, field in enumerate(ft.CATEGORICAL_FIELDS):
            ids = self._ids[field]
            x_cat[:, k] = np.fromiter((ids.get(x, 0) for x in cols[field]), dtype=np.int64, count=len(v))
        return x_num, x_cat

    def _outliers(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        self._check_fitted()
        # Not validated: out-of-range values (a rate x10 above the schema's 30%) keep their extreme size.
        values = {**self._numeric_values(raw), "sato": ft.sato(raw, self._rates)}
        pos = self._outlier_positions
        v = np.column_stack([values[self._numeric[i].name] for i in pos])
        p = {k: a[pos] for k, a in self._params.items()}
        scaled = (np.where(np.isnan(v), p["median"], v) - p["mean"]) / p["std"]
        checks = ft.consistency_checks(raw)
        return np.column_stack([scaled, *(checks[name] for name in ft.OUTLIER_CHECKS)]).astype(np.float32)

    # ----------------------------------------------------------------------------------------------------------------
    # Names and schema
    # ----------------------------------------------------------------------------------------------------------------
    @property
    def numeric_names(self) -> list[str]:
        """Names of the x_num columns, in order."""
        self._check_fitted()
        return list(self._numeric_names)

    @property
    def n_continuous(self) -> int:
        """How many leading x_num columns take real values; every column after them is 0/1 by construction
        (indicators, one-hot codes, flags), which lets training hold those as bits (`training.packed`)."""
        self._check_fitted()
        return len(self._numeric)

    @property
    def categorical_names(self) -> list[str]:
        """Names of the x_cat columns, in order."""
        return list(ft.CATEGORICAL_FIELDS)

    @property
    def cat_cardinalities(self) -> list[int]:
        """Number of ids per x_cat column, the unknown id 0 included."""
        self._check_fitted()
        return [len(self._vocab[f]) + 1 for f in ft.CATEGORICAL_FIELDS]

    @property
    def outlier_names(self) -> list[str]:
        """Names of the `outlier_matrix` columns: `features.OUTLIER_NUMERIC` fitted, then `features.OUTLIER_CHECKS`."""
        self._check_fitted()
        return [self._numeric[i].name for i in self._outlier_positions] + list(ft.OUTLIER_CHECKS)

    @property
    def display_names(self) -> dict[str, str]:
        """Readable name of every x_num and x_cat column (e.g. "Credit score missing"), overrides applied."""
        self._check_fitted()
        return dict(self._labels)

    def feature_schema(self) -> dict[str, dict[str, Any]]:
        """The raw input fields this Preprocessor reads: kind, missing codes, allowed codes, valid range, role."""
        roles = {
            **{f: "numeric" for f in ft.NUMERIC_FIELDS},
            **{f: "one_hot" for f in ft.ONE_HOT_FIELDS},
            **{f: "categorical" for f in ft.CATEGORICAL_FIELDS},
            **{f: "derived_only" for f in ft.DERIVATION_FIELDS},
        }
        schema = {}
        for name in ft.INPUT_FIELDS:
            f = ORIGINATION_FIELDS[name]
            schema[name] = {
                "kind": f.kind.value,
                "description": f.description,
                "role": roles[name],
                "missing_codes": sorted(f.missing),
                "codes": None if f.codes is None else sorted(f.codes),
                "low": f.low,
                "high": f.high,
                "blank_means": f.blank_means,
            }
        return schema

    # ----------------------------------------------------------------------------------------------------------------
    # Saving and loading
    # ----------------------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything fitted, as plain JSON-serialisable values."""
        self._check_fitted()
        return {
            "format_version": FORMAT_VERSION,
            "min_frequency": self.min_frequency,
            "clip_quantiles": list(self.clip_quantiles),
            "display_overrides": dict(self._display_overrides),
            "rate_table": {"months": self._rates.months.tolist(), "means": self._rates.means.tolist()},
            "numeric": [asdict(s) for s in self._numeric],
            "indicators": list(self._indicators),
            "one_hot": [
                {"field": o.field, "codes": list(o.codes), "missing_column": o.missing_column} for o in self._one_hot
            ],
            "vocab": {f: list(v) for f, v in self._vocab.items()},
            "numeric_names": list(self._numeric_names),  # checked on load against what this code derives
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the state to ``directory/preprocessor.json`` (atomically: temporary file, then rename)."""
        text = json.dumps(self.state(), indent=1, allow_nan=False)
        return atomic_write_text(Path(directory) / STATE_FILE, text)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Preprocessor:
        """A Preprocessor from `save`'s output; refuses other format versions."""
        path = Path(directory) / STATE_FILE
        return cls.from_state(json.loads(path.read_text(encoding="utf-8")), where=str(path))

    @classmethod
    def from_state(cls, state: Mapping[str, Any], where: str = "state") -> Preprocessor:
        """Rebuild from `state()`."""
        version = state.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{where}: preprocessor format version {version!r}, this code reads {FORMAT_VERSION}")
        pp = cls(state["min_frequency"], tuple(state["clip_quantiles"]), state["display_overrides"])
        rates = state["rate_table"]
        pp._rates = ft.RateTable(np.asarray(rates["months"], dtype=np.int64), np.asarray(rates["means"], dtype=float))
        pp._numeric = [NumericStats(**s) for s in state["numeric"]]
        pp._indicators = list(state["indicators"])
        pp._one_hot = [OneHot(o["field"], tuple(o["codes"]), o["missing_column"]) for o in state["one_hot"]]
        pp._vocab = {f: list(v) for f, v in state["vocab"].items()}
        pp._derive()
        if pp._numeric_names != state["numeric_names"]:
            raise ValueError(f"{where}: saved feature columns differ from those this code builds from the state")
        pp._fitted = True
        return pp

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("the Preprocessor is not fitted: call fit(train_df) or Preprocessor.load(dir)")


def _exact_in_float32(values: np.ndarray) -> bool:
    """Whether float32 holds every value exactly (the fit widens each column to float64 again when it uses it)."""
    return np.array_equal(values.astype(np.float32).astype(np.float64), values, equal_nan=True)


def _chunks(df: pd.DataFrame, positions: np.ndarray, chunk: int) -> Iterator[pd.DataFrame]:
    """``df``'s rows at ``positions``, ``chunk`` rows at a time (the whole frame itself when it is one chunk)."""
    if len(positions) <= chunk and len(positions) == len(df) and np.array_equal(positions, np.arange(len(df))):
        yield df
        return
    for start in range(0, len(positions), chunk):
        yield df.iloc[positions[start : start + chunk]]
