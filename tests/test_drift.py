"""PSI / CSI (core.drift) against a hand-worked example and scipy, and on populations drifted on purpose."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import rel_entr

from loan_default.core.drift import (
    MONITORED_FIELDS,
    PSI_FLOOR,
    Reference,
    build_reference,
    compare,
    numeric_reference,
    psi,
    traffic_light,
)
from loan_default.synthetic.loans import draw_loans, mask_missing, shift_fields


def test_psi_matches_a_hand_worked_example() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * (0.693147 + 0.405465), abs=1e-6)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_is_the_symmetric_kullback_leibler_divergence() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        e, a = rng.dirichlet(np.full(10, 5.0)), rng.dirichlet(np.full(10, 5.0))  # no bin near the floor
        assert psi(e, a) == pytest.approx(float(np.sum(rel_entr(a, e) + rel_entr(e, a))), rel=1e-12)


def test_empty_bins_take_the_stated_floor() -> None:
    assert PSI_FLOOR == 1e-4
    expected = (1 - 0.5) * np.log(1 / 0.5) + (PSI_FLOOR - 0.5) * np.log(PSI_FLOOR / 0.5)
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected, rel=1e-12)
    assert psi([0.5, 0.5], [1.0, 0.0], floor=1e-3) < psi([0.5, 0.5], [1.0, 0.0])
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1.0])


def test_traffic_light_bands() -> None:
    assert [traffic_light(v) for v in (0.0, 0.0999, 0.1, 0.25, 0.2501, 3.0)] == [
        "green", "green", "amber", "amber", "red", "red"
    ]  # fmt: skip
    assert traffic_light(None) is None


def test_numeric_bins_are_training_quantiles_with_a_missing_bin() -> None:
    values = np.array([*range(1, 11), np.nan], dtype=float)
    ref = numeric_reference("x", values, bins=5)
    # Quantiles 0.2, 0.4, 0.6, 0.8 of 1..10 (linear interpolation): 2.8, 4.6, 6.4, 8.2; two values per bin.
    assert ref.edges == pytest.approx([2.8, 4.6, 6.4, 8.2])
    assert ref.fractions == pytest.approx([2 / 11] * 5 + [1 / 11])
    assert (ref.low, ref.high, ref.missing_rate) == (1.0, 10.0, pytest.approx(1 / 11))
    # A value many loans share closes its bin on the right; repeated quantiles merge.
    held = numeric_reference("mi", np.array([0.0] * 8 + [12.0, 25.0]), bins=10)
    # Deciles of eight 0s, 12 and 25: 0 (x7), 0.2 * 12 = 2.4, 12 + 0.1 * 13 = 13.3.
    assert held.edges == pytest.approx([0.0, 2.4, 13.3])
    assert held.fractions == pytest.approx([0.8, 0.0, 0.1, 0.1, 0.0])
    got = ref.compare(np.array([0.0, 5.0, 11.0, np.nan]))
    assert got["out_of_range_share"] == pytest.approx(2 / 3) and got["missing_rate"] == 0.25


def test_sentinel_codes_count_as_missing_not_as_values() -> None:
    frame = pd.DataFrame({"credit_score": ["9999", "700", "", "650"], "dti": [999, 30, 40, 50]})
    ref = build_reference(None, frame, fields=["credit_score", "dti"], bins=2)
    assert ref.fields["credit_score"].missing_rate == 0.5 and ref.fields["credit_score"].high == 700.0
    assert ref.fields["dti"].missing_rate == 0.25 and ref.fields["dti"].high == 50.0


def _loans(seed: int, n: int = 4_000, shift: dict | None = None) -> pd.DataFrame:
    """Synthetic origination records of 2006 and 2010 as the reader would return them (NaN for missing)."""
    frames = []
    for year in (2006, 2010):
        rng = np.random.default_rng([seed, year])
        loans = draw_loans(year, n // 2, rng)
        shift_fields(loans, shift or {})
        mask_missing(loans, year, rng)
        frames.append(pd.DataFrame(loans.fields))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def reference() -> Reference:
    train = _loans(1)
    scores = np.random.default_rng(0).beta(1, 15, len(train))
    return build_reference(scores, train)


def test_reference_of_rows_equals_reference_of_their_copy() -> None:
    """``rows=`` reads positions column by column (the evaluation's way, no copy of the training rows)."""
    loans = _loans(4).drop(columns=["dti"])  # an absent field counts as missing on every row either way
    rows = np.sort(np.random.default_rng(1).permutation(len(loans))[: len(loans) // 3])
    scores = np.random.default_rng(2).beta(1, 15, len(rows))
    assert build_reference(scores, loans, rows=rows).to_json() == build_reference(scores, loans.iloc[rows]).to_json()


def test_same_population_is_stable_and_shifted_credit_scores_are_red(reference: Reference) -> None:
    fresh = _loans(2)
    same = compare(reference, np.random.default_rng(5).beta(1, 15, len(fresh)), fresh)
    assert same["status"] == "stable" and same["fields_red"] == [], same["fields_red"]
    assert same["psi_score"] < 0.1 and max(c["psi"] for c in same["csi"].values()) < 0.1
    assert set(same["csi"]) == set(MONITORED_FIELDS)

    shifted = compare(reference, frame=_loans(2, shift={"credit_score": -60, "orig_rate": 1.5}))
    assert shifted["status"] == "drifted" and shifted["psi_score"] is None
    assert {"credit_score", "orig_rate"} <= set(shifted["fields_red"])
    assert shifted["csi"]["credit_score"]["psi"] > 0.25
    assert shifted["csi"]["dti"]["light"] == "green"


def test_csi_agrees_with_an_independent_binning(reference: Reference) -> None:
    fresh = _loans(3, shift={"credit_score": -30})
    ref = reference.fields["credit_score"]
    x = fresh["credit_score"].to_numpy(dtype=float)
    # pandas cuts on the reference's edges (closed on the right), NaN in its own bin, then PSI via scipy.
    cut = pd.cut(x, [-np.inf, *ref.edges, np.inf], right=True)
    actual = np.append(pd.Series(cut).value_counts(sort=False).to_numpy(), np.isnan(x).sum()) / len(x)
    e, a = np.maximum(ref.fractions, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    expected = float(np.sum(rel_entr(a, e) + rel_entr(e, a)))
    assert compare(reference, frame=fresh)["csi"]["credit_score"]["psi"] == pytest.approx(expected, rel=1e-9)


def test_categories_rare_bins_new_values_and_missing() -> None:
    train = pd.DataFrame({"property_state": ["CA"] * 120 + ["TX"] * 78 + ["VT"] * 2})  # VT: 1%, not rarer
    ref = build_reference(None, train, fields=["property_state"]).fields["property_state"]
    assert ref.categories == ["CA", "TX", "VT"] and ref.other_categories == []
    train = pd.DataFrame({"property_state": ["CA"] * 120 + ["TX"] * 79 + ["VT"]})  # VT: 0.5%, "other"
    ref = build_reference(None, train, fields=["property_state"]).fields["property_state"]
    assert ref.categories == ["CA", "TX"] and ref.other_categories == ["VT"]
    assert ref.fractions == pytest.approx([0.6, 0.395, 0.005, 0.0])
    got = ref.compare(np.array(["CA", "ZZ", "ZZ", "VT", None], dtype=object))
    assert got["new_categories"] == ["ZZ"] and got["out_of_range_share"] == 0.5 and got["missing_rate"] == 0.2
    assert got["fractions"] == pytest.approx([0.2, 0.0, 0.6, 0.2])


def test_reference_round_trips_through_json_without_borrower_rows(reference: Reference) -> None:
    text = reference.to_json()
    again = Reference.from_json(text)
    fresh = _loans(4)
    assert compare(again, frame=fresh) == compare(reference, frame=fresh)
    assert again == reference and Reference.from_json(json.loads(text)) == reference
    assert len(text) < 200_000 and "F06Q" not in text  # distributions only: no loan ids, no rows
    with pytest.raises(ValueError, match="version"):
        Reference.from_json({**json.loads(text), "version": 99})
