"""Generator -> reader -> labeller on the full default size (100,000 loans). Slow: `make test-full`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loan_default.freddie.loans import load_loan_table
from loan_default.synthetic.generate import generate


@pytest.mark.slow
def test_100k_loans_round_trip(tmp_path):
    summary = generate(tmp_path, n_loans=100_000, seed=2024)
    table, report = load_loan_table(folder=tmp_path)
    truth = pd.read_csv(tmp_path / "truth.csv", dtype={"loan_id": str, "corruption": str})

    assert report.loans_read == 100_000 == len(truth)
    assert sum(report.skipped_rows.values()) == 0  # every generated line is valid Freddie Mac format
    assert len(table) + report.dropped.get("censored", 0) == 100_000
    assert table["loan_id"].is_unique
    assert set(table["loan_id"]) <= set(truth["loan_id"])

    # The labels the reader and labeller build agree with what the generator drew, vintage by vintage.
    by_year = table.groupby("vintage_year")["default"].agg(["sum", "size"])
    for year, facts in summary["per_vintage"].items():
        assert by_year.loc[int(year), "sum"] == facts["labelled_defaults"], year
        assert by_year.loc[int(year), "size"] == facts["loans"] - facts["censored"], year

    # The oracle is calibrated: mean true PD matches the observed default rate (labelled loans).
    assert table["true_pd"].mean() == pytest.approx(table["default"].mean(), abs=0.004)
    assert np.isfinite(table["true_pd"]).all()
