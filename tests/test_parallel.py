"""common.parallel.ordered_map: results in the items' order, worker warnings and errors reach the caller."""

from __future__ import annotations

import warnings

import pytest

from loan_default.common.parallel import ordered_map, resolve_workers


def _square_slowest_first(x: int) -> int:
    import time

    time.sleep(0.2 if x == 0 else 0.0)  # the first item finishes last
    return x * x


def _warn(x: int) -> int:
    warnings.warn(f"item {x}", UserWarning, stacklevel=1)
    return x


def _fail(x: int) -> int:
    if x == 2:
        raise KeyError(f"bad item {x}")
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_the_items_order(workers: int) -> None:
    seen = []
    assert ordered_map(_square_slowest_first, range(5), workers, done=seen.append) == [0, 1, 4, 9, 16]
    assert sorted(seen) == [0, 1, 4, 9, 16]


def test_a_workers_warnings_and_errors_reach_the_caller() -> None:
    with pytest.warns(UserWarning) as caught:
        assert ordered_map(_warn, [1, 2], workers=2) == [1, 2]
    assert sorted(str(w.message) for w in caught) == ["item 1", "item 2"]
    with pytest.raises(KeyError, match="bad item 2"):
        ordered_map(_fail, [1, 2, 3], workers=2)


def test_worker_counts() -> None:
    assert resolve_workers(4, tasks=2) == 2
    assert resolve_workers(None, tasks=8, small=True) == 1
    assert 1 <= resolve_workers(None, tasks=3) <= 3
    with pytest.raises(ValueError, match="at least 1"):
        resolve_workers(0, tasks=3)


# ---------------------------------------------------------------------------------------------------------------------
# Users: the loan table read in worker processes is the one read in this process
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_vintages(tmp_path_factory):
    from loan_default.synthetic.generate import generate

    folder = tmp_path_factory.mktemp("three")
    generate(folder, 1_500, seed=4, vintages="2006-2008", workers=1)
    return folder


@pytest.mark.parametrize("compact", [False, True])
def test_loan_table_read_by_workers_equals_one_process(three_vintages, compact: bool) -> None:
    import pandas as pd

    from loan_default.freddie.loans import load_loan_table

    one, one_report = load_loan_table(folder=three_vintages, compact=compact, workers=1)
    two, two_report = load_loan_table(folder=three_vintages, compact=compact, workers=2)
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    assert one_report == two_report and one_report.vintages == ["2006", "2007", "2008"]
    assert one["vintage"].is_monotonic_increasing and one["true_pd"].notna().all()


def test_bad_rows_in_a_worker_warn_or_raise_in_the_caller(three_vintages, tmp_path) -> None:
    import shutil

    from loan_default.freddie.errors import FreddieDataWarning, FreddieFormatError
    from loan_default.freddie.loans import load_loan_table

    folder = tmp_path / "bad"
    shutil.copytree(three_vintages, folder)
    with (folder / "sample_svcg_2007.txt").open("a") as f:
        f.write("F07Q1999999|not|a|row\n")
    with pytest.raises(FreddieFormatError, match="sample_svcg_2007.txt, line"):
        load_loan_table(folder=folder, workers=2)
    with pytest.warns(FreddieDataWarning, match="vintage 2007: skipped 1"):
        _, report = load_loan_table(folder=folder, on_bad_row="skip", workers=2)
    assert sum(report.skipped_rows.values()) == 1
