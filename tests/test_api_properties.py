"""Property tests: no request body makes the API answer 500, and every valid loan is scored exactly as in-process.

Arbitrary JSON (any keys, any values, any nesting) and arbitrary bytes go to every scoring endpoint; valid loans are
generated from the Freddie Mac schema itself (in-range values, sentinel codes, blanks, numbers as strings).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loan_default.freddie.schema import ORIGINATION_FIELDS, Kind
from loan_default.serving.app import create_app
from loan_default.serving.schemas import FEATURE_FIELDS, REQUIRED_FIELDS
from loan_default.serving.settings import ServeSettings

ALLOWED = {200, 400, 413, 415, 422}
PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@pytest.fixture(scope="module")
def client(bundle_path: Path) -> Iterator[TestClient]:
    app = create_app(ServeSettings(bundle=bundle_path, max_batch=20, max_explain_batch=5, max_body_bytes=64_000))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


# ---------------------------------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["9999", "999", "99", "9", "", " ", "1e400", "-0", "0x1F", "201913", "NaN", "P", "SF", "00"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["loan_id", *FEATURE_FIELDS]) | st.text(max_size=10)
loan_like = st.dictionaries(field_names, json_values, max_size=12)
bodies = loan_like | st.lists(loan_like, max_size=25) | json_values


def field_value(name: str) -> st.SearchStrategy:
    """Values the JSON request model must accept for one field (what the OpenAPI schema admits)."""
    f = ORIGINATION_FIELDS[name]
    missing = st.sampled_from([None] + [int(c) if f.kind is not Kind.CODE else c for c in sorted(f.missing)])
    if f.kind is Kind.DATE:
        return st.builds(lambda y, m: y * 100 + m, st.integers(1990, 2060), st.integers(1, 12))
    if f.kind is Kind.INT:
        good = st.integers(int(f.low if f.low is not None else 0), int(f.high if f.high is not None else 10**6))
        return good | good.map(float) | missing
    if f.kind is Kind.FLOAT:
        good = st.floats(f.low or 0.0, f.high or 5e6, allow_nan=False)
        return good | (st.none() if name not in REQUIRED_FIELDS else good)
    if f.kind is Kind.CODE:
        codes = sorted(f.allowed)
        digits = [int(c) for c in codes if c.isdigit()] if all(c.isdigit() for c in codes) else []
        return st.sampled_from(codes) | st.none() | (st.sampled_from(digits) if digits else st.nothing())
    examples = {
        "msa": st.from_regex(r"\A[0-9]{5}\Z") | st.integers(10_000, 99_999),
        "property_state": st.sampled_from(["CA", "FL", "TX", "NY", "GU", "ZZ"]),
        "postal_code": st.from_regex(r"\A[0-9]{3}00\Z") | st.integers(100, 999).map(lambda n: n * 100),
    }
    return examples.get(name, st.text(max_size=30)) | st.none()


@st.composite
def valid_loans(draw: st.DrawFn) -> dict:
    loan = {}
    for name in FEATURE_FIELDS:
        if name in REQUIRED_FIELDS or draw(st.booleans()):
            value = draw(field_value(name))
            if name in REQUIRED_FIELDS and value is None:
                continue  # drawn below instead
            loan[name] = value
    for name in REQUIRED_FIELDS:
        while loan.get(name) is None:
            loan[name] = draw(field_value(name))
    return loan


# ---------------------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------------------
def check(response) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    if response.status_code == 200:
        for prediction in response.json()["predictions"]:
            assert 0.0 <= prediction["default_probability"] <= 1.0


@PROPERTY
@given(body=bodies)
def test_no_json_body_makes_a_500(client, body):
    payload = json.dumps(body, allow_nan=True)
    headers = {"Content-Type": "application/json"}
    for path in ("/predict", "/explain?top_k=2"):
        check(client.post(path, content=payload, headers=headers))
    check(client.post("/invocations", content=json.dumps({"dataframe_records": body}, allow_nan=True), headers=headers))
    check(client.post("/invocations", content=payload, headers=headers))


@PROPERTY
@given(
    raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
    media=st.sampled_from(["application/json", "text/csv", "text/plain", "", "application/json; charset=latin-1"]),
)
def test_no_raw_body_makes_a_500(client, raw, media):
    headers = {"Content-Type": media} if media else {}
    for path in ("/predict", "/invocations"):
        check(client.post(path, content=raw, headers=headers))


@PROPERTY
@given(columns=st.lists(field_names, max_size=6), rows=st.lists(st.lists(json_values, max_size=6), max_size=5))
def test_no_dataframe_split_makes_a_500(client, columns, rows):
    body = json.dumps({"dataframe_split": {"columns": columns, "data": rows}}, allow_nan=True)
    check(client.post("/invocations", content=body, headers={"Content-Type": "application/json"}))


@settings(PROPERTY, max_examples=40)
@given(loans=st.lists(valid_loans(), min_size=1, max_size=5))
def test_valid_loans_are_scored_like_in_process(client, bundle, loans):
    response = client.post("/predict", json=loans)
    assert response.status_code == 200, response.text
    got = np.array([p["default_probability"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(got, bundle.predict_proba(loans), rtol=0, atol=1e-6)
    single = client.post("/predict", json=loans[0]).json()["predictions"][0]["default_probability"]
    assert single == pytest.approx(got[0], abs=1e-6)
    explained = client.post("/explain", json=loans[:1]).json()["predictions"][0]
    total = explained["base_value"] + sum(c["contribution"] for c in explained["contributions"])
    assert total == pytest.approx(explained["logit"], abs=1e-4)
    assert 1 / (1 + math.exp(-explained["logit"])) == pytest.approx(single, abs=1e-6)
