"""What /monitoring compares with the bundle's reference: the loans this worker process served most recently.

A bounded window (setting ``monitoring_window``, rows) of each served loan's default probability and the fields the
reference describes, kept in memory per process: with several uvicorn workers each answers for the loans it served.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from loan_default.core.drift import Reference, compare


class Window:
    """The last ``size`` loans served (score and monitored fields), safe to fill from several request threads."""

    def __init__(self, reference: Reference | None, size: int) -> None:
        self.reference = reference
        self.fields = list(reference.fields) if reference is not None else []
        self.rows: deque[tuple[float, tuple[Any, ...]]] = deque(maxlen=size)
        self.served = 0
        self.started = time.time()
        self._lock = threading.Lock()

    def observe(self, loans: Sequence[Mapping[str, Any]], scored: Sequence[Mapping[str, Any]]) -> None:
        if self.reference is None:
            return
        rows = [
            (s["default_probability"], tuple(loan.get(f) for f in self.fields))
            for loan, s in zip(loans, scored, strict=True)
        ]
        with self._lock:
            self.rows.extend(rows)
            self.served += len(rows)

    def report(self) -> dict[str, Any]:
        """PSI of the window's scores and CSI of its fields against the reference (`core.drift.compare`)."""
        window = {"rows": 0, "max_rows": self.rows.maxlen, "served_since_start": self.served, "since": self.started}
        if self.reference is None:
            return {
                "available": False,
                "reason": "the bundle has no monitoring reference (written before monitoring.json existed)",
                "window": window,
            }
        with self._lock:
            rows = list(self.rows)
        window["rows"] = len(rows)
        if not rows:
            return {"available": True, "reason": "no loans served yet", "window": window}
        scores = np.fromiter((score for score, _ in rows), dtype=np.float64, count=len(rows))
        frame = pd.DataFrame([values for _, values in rows], columns=self.fields)
        return {"available": True, "reason": None, "window": window, **compare(self.reference, scores, frame)}
