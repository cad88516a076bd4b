"""Train / validation / test splits of the loan table: stratified random, or out-of-time by vintage.

Both return positional row indices (sorted ascending) so callers can ``df.iloc[idx["train"]]`` or index tensors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VintageList = Sequence[str | int] | None


def split_loans(
    df: pd.DataFrame,
    method: str = "stratified",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    stratify_vintage: bool = False,
    seed: int = 0,
    train_vintages: VintageList = None,
    val_vintages: VintageList = None,
    test_vintages: VintageList = None,
    vintage_unit: str = "quarter",
    label: str = "default",
) -> dict[str, np.ndarray]:
    """Split loans into ``{"train", "val", "test"}`` arrays of row positions.

    ``method="stratified"``: random split that keeps the default rate (and, with ``stratify_vintage``, each vintage's
    share) equal across splits; deterministic given ``seed``.

    ``method="out_of_time"``: train on the earliest vintages, validate on later ones, test on the latest. Vintages
    (``vintage_unit`` "quarter" or "year") are sorted and cut by cumulative loan share so the splits hold about
    ``1 - val - test``, ``val`` and ``test`` of the loans, each at least one vintage. Or name them explicitly with
    ``train_vintages`` / ``val_vintages`` / ``test_vintages`` (all three; items like ``"2007Q3"`` or ``2007``); rows
    of unlisted vintages are left out. Raises ``ValueError`` if a split would be empty or hold no defaults.
    """
    _check_fractions(val_fraction, test_fraction)
    y = _labels(df, label)
    if method == "stratified":
        if any(v is not None for v in (train_vintages, val_vintages, test_vintages)):
            raise ValueError("explicit vintage lists only apply to method='out_of_time'")
        keys = _vintage_keys(df, vintage_unit) if stratify_vintage else None
        idx = _stratified(y, keys, val_fraction, test_fraction, seed)
    elif method == "out_of_time":
        idx = _out_of_time(df, val_fraction, test_fraction, train_vintages, val_vintages, test_vintages, vintage_unit)
    else:
        raise ValueError(f"unknown split method {method!r}; use 'stratified' or 'out_of_time'")
    _check_nonempty(idx, y, method)
    return idx


def describe_splits(df: pd.DataFrame, idx: dict[str, np.ndarray], label: str = "default") -> dict[str, dict]:
    """Rows, defaults and default rate per split (plus first/last vintage when the table has them), and log them."""
    y = _labels(df, label)
    has_vintage = "vintage" in df.columns
    summary: dict[str, dict] = {}
    for name, rows in idx.items():
        n, k = int(len(rows)), int(y[rows].sum())
        entry: dict = {"rows": n, "defaults": k, "default_rate": k / n if n else float("nan")}
        if has_vintage and n:
            v = df["vintage"].iloc[rows]
            entry["first_vintage"], entry["last_vintage"] = str(v.min()), str(v.max())
        summary[name] = entry
        span = f", vintages {entry['first_vintage']}..{entry['last_vintage']}" if "first_vintage" in entry else ""
        log.info("split %-5s %8d loans, %6d defaults (%.2f%%)%s", name, n, k, 100 * entry["default_rate"], span)
    return summary


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"need 0 < val_fraction, test_fraction and val_fraction + test_fraction < 1, "
            f"got val_fraction={val_fraction}, test_fraction={test_fraction}"
        )


def _labels(df: pd.DataFrame, label: str) -> np.ndarray:
    if label not in df.columns:
        raise KeyError(f"the loan table has no label column {label!r}")
    y = df[label].to_numpy()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"label column {label!r} must hold only 0 and 1")
    return y.astype(np.int64)


def _vintage_keys(df: pd.DataFrame, unit: str) -> np.ndarray:
    """Sortable integer vintage per row: year (``unit="year"``) or ``year * 10 + quarter`` (``"quarter"``)."""
    if unit not in ("quarter", "year"):
        raise ValueError(f"vintage_unit must be 'quarter' or 'year', got {unit!r}")
    year = df["vintage_year"].to_numpy(np.int64)
    return year if unit == "year" else year * 10 + df["vintage_quarter"].to_numpy(np.int64)


def _key_name(key: int, unit: str) -> str:
    return str(key) if unit == "year" else f"{key // 10}Q{key % 10}"


def _stratified(
    y: np.ndarray, vintage: np.ndarray | None, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    counts = np.bincount(y, minlength=2)
    if counts.min() < 3:
        raise ValueError(
            f"stratified split needs at least 3 defaults and 3 non-defaults, got {counts[1]} and {counts[0]}"
        )
    rows = np.arange(len(y))
    strata = y if vintage is None else vintage * 2 + y  # label within vintage
    rest, test = train_test_split(
        rows,
        test_size=test_fraction,
        random_state=seed,
        stratify=_merge_small_strata(strata, y, test_fraction),
    )
    val_share = val_fraction / (1 - test_fraction)
    train, val = train_test_split(
        rest,
        test_size=val_share,
        random_state=seed,
        stratify=_merge_small_strata(strata[rest], y[rest], val_share),
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _merge_small_strata(strata: np.ndarray, y: np.ndarray, fraction: float) -> np.ndarray:
    """Fold strata too small to give both sides of a ``fraction`` split a row into the largest stratum of their label.

    sklearn refuses strata with a single member or more strata than rows on the smaller side; a vintage with one or
    two defaults is common, so such strata are pooled rather than failing.
    """
    min_count = max(2, math.ceil(1 / min(fraction, 1 - fraction)))
    keys, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    if counts.min() >= min_count:
        return strata
    merged = strata.copy()
    for label in np.unique(y):
        of_label = np.unique(inverse[y == label])
        target = keys[of_label[np.argmax(counts[of_label])]]
        small = of_label[counts[of_label] < min_count]
        merged[np.isin(inverse, small)] = target
    return merged


def _out_of_time(
    df: pd.DataFrame,
    val_fraction: float,
    test_fraction: float,
    train_vintages: VintageList,
    val_vintages: VintageList,
    test_vintages: VintageList,
    unit: str,
) -> dict[str, np.ndarray]:
    lists = (train_vintages, val_vintages, test_vintages)
    if any(v is not None for v in lists):
        if any(v is None for v in lists):
            raise ValueError("give all three of train_vintages, val_vintages and test_vintages, or none")
        return _explicit_vintages(df, dict(zip(SPLITS, lists, strict=True)))

    keys = _vintage_keys(df, unit)
    vintages, counts = np.unique(keys, return_counts=True)
    if len(vintages) < 3:
        names = [_key_name(k, unit) for k in vintages]
        raise ValueError(f"out-of-time split needs at least 3 vintages ({unit}s), the table has {names}")
    # Assign each vintage by where the middle of its loans falls on the cumulative share axis.
    middle = (np.cumsum(counts) - counts / 2) / counts.sum()
    n_train = int(np.searchsorted(middle, 1 - val_fraction - test_fraction))
    n_train_val = int(np.searchsorted(middle, 1 - test_fraction))
    n_train = min(max(n_train, 1), len(vintages) - 2)  # every split gets at least one vintage
    n_train_val = min(max(n_train_val, n_train + 1), len(vintages) - 1)
    cuts = {
        "train": vintages[:n_train],
        "val": vintages[n_train:n_train_val],
        "test": vintages[n_train_val:],
    }
    return {name: np.flatnonzero(np.isin(keys, v)) for name, v in cuts.items()}


def _explicit_vintages(df: pd.DataFrame, lists: dict[str, Sequence[str | int]]) -> dict[str, np.ndarray]:
    """Rows whose vintage is listed for each split; a list item is a quarter ``"2007Q3"`` or a year ``2007``."""
    quarter = _vintage_keys(df, "quarter")
    year = quarter // 10
    idx: dict[str, np.ndarray] = {}
    for name, items in lists.items():
        mask = np.zeros(len(df), dtype=bool)
        for item in items:
            text = str(item).strip().upper()
            if "Q" in text:
                y, q = text.split("Q")
                mask |= quarter == int(y) * 10 + int(q)
            else:
                mask |= year == int(text)
        idx[name] = np.flatnonzero(mask)
    for earlier, later in (("train", "val"), ("val", "test")):
        a, b = quarter[idx[earlier]], quarter[idx[later]]
        if len(a) and len(b) and a.max() >= b.min():
            raise ValueError(
                f"out-of-time split: {earlier} vintages must all precede {later} vintages, but {earlier} reaches "
                f"{_key_name(int(a.max()), 'quarter')} and {later} starts at {_key_name(int(b.min()), 'quarter')}"
            )
    left_out = len(df) - sum(len(v) for v in idx.values())
    if left_out:
        log.info("out-of-time split: %d loans of unlisted vintages left out", left_out)
    return idx


def _check_nonempty(idx: dict[str, np.ndarray], y: np.ndarray, method: str) -> None:
    for name in SPLITS:
        rows = idx[name]
        if len(rows) == 0:
            raise ValueError(f"{method} split: the {name} split is empty; adjust the fractions or vintages")
        if y[rows].sum() == 0:
            raise ValueError(
                f"{method} split: the {name} split ({len(rows)} loans) holds no defaults; metrics and training need "
                f"some, so choose other vintages or fractions"
            )
