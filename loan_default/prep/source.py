"""The prepared loan table as a training data source (`data=parquet data.path=<folder or URI>`)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Any

import pandas as pd

from loan_default.freddie.labels import LabelConfig
from loan_default.prep.table import read_loan_table

log = logging.getLogger(__name__)


def load_prepared_table(
    path: str | os.PathLike, label: LabelConfig | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(loan table, label report) from a prepared table. The label was fixed when the table was written: `label`,
    when given, must be the same, so a run never trains on another definition of default than it asked for."""
    table, manifest = read_loan_table(path)
    recorded = LabelConfig(**manifest["label"])
    if label is not None and label != recorded:
        differ = {k: (v, getattr(recorded, k)) for k, v in asdict(label).items() if v != getattr(recorded, k)}
        detail = ", ".join(f"{k}={want} (table: {have})" for k, (want, have) in differ.items())
        raise ValueError(
            f"{path} was labelled with other settings: {detail}. Leave data.label unset to use the table's, "
            "or prepare the table again with these settings (python -m loan_default.prep)"
        )
    log.info(
        "Loan table %s: %s loans, %s engine, label %s", path, f"{len(table):,}", manifest["engine"], asdict(recorded)
    )
    return table, {**manifest["report"], "table": os.fspath(path), "label": asdict(recorded)}
