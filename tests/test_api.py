"""REST API: parity with in-process scoring, validation (422 names the field), limits (413), API key, bundle checks
at startup, /metadata, /explain reasons and additivity, and `python serve.py` without a bundle."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from demo_bundle import demo_loans, loan_requests
from fastapi.testclient import TestClient

from loan_default.core.bundle import BundleError
from loan_default.core.scorer import Scorer
from loan_default.serving.app import create_app
from loan_default.serving.deps import get_scorer
from loan_default.serving.schemas import EXAMPLE_LOAN, EXAMPLE_SPARSE_LOAN, FEATURE_FIELDS
from loan_default.serving.server import settings_env
from loan_default.serving.settings import ServeSettings

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-6


@pytest.fixture(scope="module")
def loans() -> list[dict]:
    """Fresh loans (another seed than training) as a client would send them."""
    return loan_requests(demo_loans(300, seed=11))


@pytest.fixture(scope="module")
def client(bundle_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServeSettings(bundle=bundle_path, api_key_env="LOAN_DEFAULT_TEST_NO_KEY"))) as c:
        yield c


def probabilities(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([p["default_probability"] for p in response.json()["predictions"]])


# ---------------------------------------------------------------------------------------------------------------------
# Parity with in-process scoring
# ---------------------------------------------------------------------------------------------------------------------
def test_single_loan_matches_in_process_bundle(client, bundle, loans):
    sample = loans[:25]
    expected = bundle.predict_proba(sample)
    got = np.concatenate([probabilities(client.post("/predict", json=loan)) for loan in sample])
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)


def test_batch_matches_in_process_bundle_and_keeps_order(client, bundle, loans):
    response = client.post("/predict", json=loans)
    np.testing.assert_allclose(probabilities(response), bundle.predict_proba(loans), rtol=0, atol=TOL)
    assert [p["loan_id"] for p in response.json()["predictions"]] == [loan["loan_id"] for loan in loans]


def test_scores_match_an_independent_computation(client, bundle, loans):
    """Oracle apart from the serving code (Scorer, Bundle.logits/predict_proba/risk_bands): the bundle's Preprocessor
    on a DataFrame, its network called directly, the sigmoid, decision and bands worked by hand from decision.json."""
    body = client.post("/predict", json=loans).json()
    got = body["predictions"]
    frame = pd.DataFrame([{k: loan.get(k) for k in FEATURE_FIELDS} for loan in loans])
    x_num, x_cat = bundle.preprocessor.transform(frame)
    with torch.inference_mode():
        logits = bundle.net(torch.from_numpy(x_num), torch.from_numpy(x_cat))[:, 0].double().numpy()
    probability = [1 / (1 + math.exp(-(z + bundle.logit_offset))) for z in logits]
    decision = json.loads((bundle.path / "decision.json").read_text())
    threshold, bands = decision["threshold"], decision["risk_bands"]
    band = [next(b["name"] for b in bands if p < b["upper"] or b is bands[-1]) for p in probability]
    np.testing.assert_allclose([p["default_probability"] for p in got], probability, rtol=0, atol=TOL)
    assert body["threshold"] == pytest.approx(threshold)
    assert [p["decision"] for p in got] == ["default" if p >= threshold else "no_default" for p in probability]
    assert [p["risk_band"] for p in got] == band
    assert {p["decision"] for p in got} == {"default", "no_default"}  # the sample exercises both sides
    assert len(set(band)) >= 2
    # The outlier score itself is the exported detector's (checked against PyOD in test_outliers); the flag is not.
    outlier = bundle.outlier.score(bundle.preprocessor.outlier_matrix(frame))
    np.testing.assert_allclose([p["outlier_score"] for p in got], outlier, rtol=0, atol=1e-9)
    assert [p["is_outlier"] for p in got] == [bool(s > bundle.outlier.threshold) for s in outlier]


def test_sentinel_codes_mean_missing(client, bundle):
    omitted = probabilities(client.post("/predict", json=EXAMPLE_SPARSE_LOAN))
    blank = probabilities(client.post("/predict", json={**EXAMPLE_SPARSE_LOAN, "credit_score": None}))
    sentinel = probabilities(client.post("/predict", json={**EXAMPLE_SPARSE_LOAN, "credit_score": 9999}))
    np.testing.assert_array_equal(omitted, blank)
    np.testing.assert_array_equal(omitted, sentinel)
    np.testing.assert_allclose(sentinel, bundle.predict_proba([EXAMPLE_SPARSE_LOAN]), rtol=0, atol=TOL)
    assert abs(probabilities(client.post("/predict", json={**EXAMPLE_SPARSE_LOAN, "credit_score": 580}))[0]
               - omitted[0]) > 1e-9  # fmt: skip


def test_invocations_formats_match_in_process_bundle(client, bundle, loans):
    expected = bundle.predict_proba(loans)
    records = client.post("/invocations", json={"dataframe_records": loans})
    columns = ["loan_id", *FEATURE_FIELDS]
    split = {"columns": columns, "data": [[loan.get(c) for c in columns] for loan in loans]}
    split_response = client.post("/invocations", json={"dataframe_split": split})
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows([["" if loan.get(c) is None else loan[c] for c in columns] for loan in loans])
    csv_response = client.post("/invocations", content=text.getvalue(), headers={"Content-Type": "text/csv"})
    for response in (records, split_response, csv_response):
        np.testing.assert_allclose(probabilities(response), expected, rtol=0, atol=TOL)
        assert set(response.json()) == {"predictions"}


def test_invocations_refuses_other_formats(client):
    assert client.post("/invocations", json={"instances": [EXAMPLE_LOAN]}).status_code == 422
    both = {"dataframe_records": [EXAMPLE_LOAN], "dataframe_split": {"columns": [], "data": []}}
    assert "exactly one" in client.post("/invocations", json=both).text
    assert client.post("/invocations", content=b"x", headers={"Content-Type": "application/xml"}).status_code == 415
    columns = ["first_payment_date", "orig_upb", "orig_rate", "orig_term"]
    short_row = {"dataframe_split": {"columns": columns, "data": [[201901, 1000, 5.0]]}}
    error = client.post("/invocations", json=short_row).json()["detail"][0]
    assert error["loc"] == ["body", "dataframe_split", "data", 0]
    # Columns are checked even without rows: unknown or duplicated names, required ones absent.
    for bad in (["orig_upb", "orig_upb"], ["orig_upb", "orig_rate"], [*columns, "nonsense"]):
        answer = client.post("/invocations", json={"dataframe_split": {"columns": bad, "data": []}})
        assert answer.status_code == 422, bad
    empty = client.post("/invocations", json={"dataframe_split": {"columns": columns, "data": []}})
    assert empty.json() == {"predictions": []}
    for csv_body in ("", "orig_upb,orig_rate\n", "{}"):
        answer = client.post("/invocations", content=csv_body, headers={"Content-Type": "text/csv"})
        assert answer.status_code == 422, csv_body


# ---------------------------------------------------------------------------------------------------------------------
# Validation and limits
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"credit_score": 7580}, "credit_score", "from 300 to 850"),
        ({"credit_score": 712.5}, "credit_score", "integer"),
        ({"dti": "abc"}, "dti", "expected an integer"),
        ({"occupancy": "Q"}, "occupancy", "expected one of"),
        ({"first_payment_date": 201913}, "first_payment_date", "YYYYMM"),
        ({"postal_code": "94105"}, "postal_code", "followed by 00"),
        ({"orig_rate": float("inf")}, "orig_rate", "from 0 to 30"),
        ({"num_units": True}, "num_units", "got bool"),
        ({"nonsense": 1}, "nonsense", "Extra inputs"),
    ],
)
def test_bad_field_gets_422_naming_it(client, change, field, words):
    body = json.dumps({**EXAMPLE_LOAN, **change}, allow_nan=True)
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "loan", field]
    assert words in error["msg"]


def test_json_takes_the_types_the_schema_gives_and_csv_takes_text(client):
    """JSON: numbers as numbers, codes exactly, digit codes and msa/postal_code also as integers (pandas reads them
    so); CSV: every value is text, codes in any case, blank = missing. Both give the same score."""
    typed = {**EXAMPLE_LOAN, "valuation_method": 2, "msa": 43580, "postal_code": 51100}
    expected = probabilities(client.post("/predict", json=EXAMPLE_LOAN))
    np.testing.assert_array_equal(probabilities(client.post("/predict", json=typed)), expected)
    for field, value in (("credit_score", "758"), ("occupancy", "p"), ("occupancy", ""), ("seller_name", 7),
                         ("msa", 4358), ("postal_code", 51123), ("first_payment_date", 189912)):  # fmt: skip
        answer = client.post("/predict", json={**EXAMPLE_LOAN, field: value})
        assert answer.status_code == 422, (field, value)
        assert answer.json()["detail"][0]["loc"] == ["body", "loan", field]
    text = {**EXAMPLE_LOAN, "occupancy": " p ", "credit_score": "758", "dti": ""}
    body = ",".join(text) + "\n" + ",".join(str(v) for v in text.values()) + "\n"
    answer = client.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
    blank_dti = probabilities(client.post("/predict", json={**EXAMPLE_LOAN, "dti": None}))
    np.testing.assert_array_equal(probabilities(answer), blank_dti)


def test_missing_required_field_and_batch_position_are_named(client):
    loan = {k: v for k, v in EXAMPLE_LOAN.items() if k != "orig_rate"}
    error = client.post("/predict", json=[EXAMPLE_LOAN, loan]).json()["detail"][0]
    assert error["loc"] == ["body", "loans", 1, "orig_rate"] and error["type"] == "missing"
    csv_error = client.post(
        "/invocations",
        content="first_payment_date,orig_upb,orig_rate,orig_term\n201901,1000,x,360\n",
        headers={"Content-Type": "text/csv"},
    ).json()["detail"]
    assert ["body", "csv", 0, "orig_rate"] in [e["loc"] for e in csv_error]


def test_limits_answer_413(bundle_path):
    settings = ServeSettings(
        bundle=bundle_path, max_batch=3, max_explain_batch=2, max_body_bytes=4096, api_key_env="LOAN_DEFAULT_NONE"
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/predict", json=[EXAMPLE_LOAN] * 3).status_code == 200
        too_many = client.post("/predict", json=[EXAMPLE_LOAN] * 4)
        assert too_many.status_code == 413 and "max_batch" in too_many.text
        assert client.post("/explain", json=[EXAMPLE_LOAN] * 3).status_code == 413
        assert client.post("/invocations", json={"dataframe_records": [EXAMPLE_LOAN] * 4}).status_code == 413
        big = json.dumps([EXAMPLE_LOAN] * 10)
        assert len(big) > 4096
        response = client.post("/predict", content=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413

        def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield json.dumps(EXAMPLE_LOAN).encode()

        response = client.post("/predict", content=chunked(), headers={"Content-Type": "application/json"})
        assert response.status_code == 413


def test_unexpected_error_is_a_clean_500(bundle_path):
    class Broken:
        def predict(self, loans):
            raise RuntimeError("secret internals")

    app = create_app(ServeSettings(bundle=bundle_path, api_key_env="LOAN_DEFAULT_NONE"))
    app.dependency_overrides[get_scorer] = lambda: Broken()
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/predict", json=EXAMPLE_LOAN)
    assert response.status_code == 500
    assert "internal error" in response.json()["detail"] and "secret" not in response.text


# ---------------------------------------------------------------------------------------------------------------------
# Security and startup
# ---------------------------------------------------------------------------------------------------------------------
def test_api_key_guards_scoring_but_not_health(bundle_path, monkeypatch):
    monkeypatch.setenv("LOAN_DEFAULT_TEST_KEY", "s3cret")
    with TestClient(create_app(ServeSettings(bundle=bundle_path, api_key_env="LOAN_DEFAULT_TEST_KEY"))) as client:
        for path in ("/predict", "/explain"):
            assert client.post(path, json=EXAMPLE_LOAN).status_code == 401
            assert client.post(path, json=EXAMPLE_LOAN, headers={"X-API-Key": "wrong"}).status_code == 403
            assert client.post(path, json=EXAMPLE_LOAN, headers={"X-API-Key": "s3cret"}).status_code == 200
        records = {"dataframe_records": [EXAMPLE_LOAN]}
        assert client.post("/invocations", json=records).status_code == 401
        assert client.post("/invocations", json=records, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/metadata").status_code == 401
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        assert client.get("/ping").status_code == 200


def test_tampered_bundle_is_refused_at_startup(bundle_path, tmp_path):
    tampered = tmp_path / "bundle"
    shutil.copytree(bundle_path, tampered)
    with open(tampered / "decision.json", "a") as f:
        f.write(" ")
    with pytest.raises(BundleError, match=r"does not match its manifest.*decision\.json"):
        with TestClient(create_app(ServeSettings(bundle=tampered))):
            pass


def test_bundle_with_another_feature_schema_is_refused(bundle_path, tmp_path):
    changed = tmp_path / "bundle"
    shutil.copytree(bundle_path, changed)
    schema = json.loads((changed / "feature_schema.json").read_text())
    schema["credit_score"]["high"] = 900
    (changed / "feature_schema.json").write_text(json.dumps(schema))
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["files"]["feature_schema.json"] = hashlib.sha256(
        (changed / "feature_schema.json").read_bytes()
    ).hexdigest()
    (changed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"credit_score\.high"):
        with TestClient(create_app(ServeSettings(bundle=changed))):
            pass


def test_bundle_that_cannot_score_is_refused_at_startup(bundle_path, monkeypatch):
    def broken(self, loans, top_k):
        raise ValueError("outlier detector expects 10 features, got 7")

    monkeypatch.setattr(Scorer, "explain", broken)
    with pytest.raises(BundleError, match="loads but cannot score a loan.*expects 10 features.*versions.json"):
        with TestClient(create_app(ServeSettings(bundle=bundle_path))):
            pass


def test_settings_reach_uvicorn_workers_through_the_environment(bundle_path, monkeypatch):
    settings = ServeSettings(bundle=bundle_path, port=9123, workers=3, max_batch=7, access_log=False, top_k=2)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    assert ServeSettings() == settings


def test_serve_defaults_have_one_home(monkeypatch):
    """conf/serve.yaml composes over ServeSettings' defaults: the same keys and values as `uvicorn --factory` gets from
    ServeSettings(); a misspelt key fails at composition (Hydra) or validation (`+key=`), naming it."""
    import importlib.util

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf
    from pydantic import ValidationError

    for name in [n for n in os.environ if n.startswith("LOAN_DEFAULT_SERVE_") or n == "LOAN_DEFAULT_ROOT"]:
        monkeypatch.delenv(name)
    spec = importlib.util.spec_from_file_location("serve_entry", REPO / "serve.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers ServeSettings' defaults with Hydra
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("serve"), resolve=True)
        assert set(cfg) == set(ServeSettings.model_fields)
        assert ServeSettings(**cfg) == ServeSettings()
        assert ServeSettings(**cfg).bundle_root == Path("logs")
        assert compose("serve", overrides=["port=8080"]).port == 8080
        with pytest.raises(ConfigCompositionException, match="prot"):
            compose("serve", overrides=["prot=8080"])
        appended = OmegaConf.to_container(compose("serve", overrides=["+prot=8080"]))
    with pytest.raises(ValidationError, match="prot"):
        ServeSettings(**appended)


def test_serve_without_bundle_tells_the_user_to_train(tmp_path):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run(
        [sys.executable, str(REPO / "serve.py"), f"bundle_root={tmp_path / 'logs'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "python train.py" in result.stderr
    assert list(tmp_path.iterdir()) == []  # Hydra wrote no run folder


# ---------------------------------------------------------------------------------------------------------------------
# Metadata, docs, explanations
# ---------------------------------------------------------------------------------------------------------------------
def test_metadata_describes_the_served_model(client, bundle):
    meta = client.get("/metadata").json()
    assert meta["model_name"] == bundle.model_info["name"] == "loan-default-demo"
    assert meta["threshold"] == pytest.approx(bundle.threshold)
    assert [b["name"] for b in meta["risk_bands"]] == ["low", "moderate", "high", "very high"]
    features = {f["name"]: f for f in meta["features"]}
    assert set(features) == set(bundle.feature_schema)
    assert features["credit_score"]["low"] == 300 and features["credit_score"]["high"] == 850
    assert features["credit_score"]["missing_codes"] == ["9999"]
    assert set(features["occupancy"]["codes"]) == {"P", "I", "S"}
    assert features["orig_rate"]["required"] and not features["dti"]["required"]
    assert meta["metrics"] == bundle.metrics
    assert meta["outlier_detector"]["detectors"] == ["HBOS", "COPOD"]
    assert meta["versions"]["torch"]


def test_openapi_documents_fields_and_examples(client):
    spec = client.get("/openapi.json").json()
    loan = spec["components"]["schemas"]["Loan"]
    assert loan["additionalProperties"] is False
    assert loan["examples"][0] == EXAMPLE_LOAN
    assert {"first_payment_date", "orig_upb", "orig_rate", "orig_term"} <= set(loan["required"])
    score = loan["properties"]["credit_score"]["anyOf"]
    assert {"type": "integer", "minimum": 300, "maximum": 850} in score and {"const": 9999} in score
    assert set(spec["paths"]) >= {"/predict", "/explain", "/invocations", "/health", "/ready", "/metadata"}
    body = spec["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert "examples" in body["application/json"] and "text/csv" in body
    # Generated from the pydantic models: one format or the other, each closed to extra keys.
    refs = [ref["$ref"].rsplit("/", 1)[1] for ref in body["application/json"]["schema"]["oneOf"]]
    branches = [spec["components"]["schemas"][name] for name in refs]
    assert [b["required"] for b in branches] == [["dataframe_split"], ["dataframe_records"]]
    assert all(b["additionalProperties"] is False for b in branches)
    date = loan["properties"]["first_payment_date"]["anyOf"]
    assert {"type": "integer", "minimum": 201901, "maximum": 201912} in date and len(date) == 2099 - 1900 + 2
    assert {"type": "integer", "enum": [1, 2, 3, 4, 9]} in loan["properties"]["valuation_method"]["anyOf"]
    assert "security" not in spec["paths"]["/predict"]["post"]  # this client's server has no API key
    assert client.get("/docs").status_code == 200


def test_explain_reasons_are_plain_words_and_additive(client, bundle, loans):
    sample = loans[:20]
    response = client.post("/explain?top_k=3", json=sample)
    assert response.status_code == 200, response.text
    x_num, x_cat = bundle.transform(sample)
    shap_values, base = bundle.explain(x_num, x_cat)
    columns = bundle.preprocessor.numeric_names + bundle.preprocessor.categorical_names
    for i, (loan, got) in enumerate(zip(sample, response.json()["predictions"], strict=True)):
        contributions = got["contributions"]
        total = got["base_value"] + sum(c["contribution"] for c in contributions)
        assert total == pytest.approx(got["logit"], abs=1e-4)
        assert 1 / (1 + math.exp(-got["logit"])) == pytest.approx(got["default_probability"], abs=TOL)
        assert got["base_value"] == pytest.approx(base)
        # Grouping: the credit score's contribution is its value column plus its missing indicator.
        by_feature = {c["feature"]: c for c in contributions}
        own = [j for j, name in enumerate(columns) if name in ("credit_score", "credit_score_missing")]
        assert by_feature["credit_score"]["contribution"] == pytest.approx(shap_values[i, own].sum(), abs=1e-9)
        reasons = got["reasons"]
        assert len(reasons) <= 3 and all(r["contribution"] > 0 for r in reasons)
        assert [r["contribution"] for r in reasons] == sorted((r["contribution"] for r in reasons), reverse=True)
        raised = sorted((c["contribution"] for c in contributions if c["contribution"] > 0), reverse=True)[:3]
        assert [r["contribution"] for r in reasons] == pytest.approx(raised)
        for c in contributions:
            word = "raised" if c["contribution"] > 0 else "lowered" if c["contribution"] < 0 else "did not change"
            assert c["text"].startswith(c["label"]) and c["text"].endswith(f"{word} the risk")
        score = loan.get("credit_score")
        expected_text = f"Credit score {score}" if score not in (None, 9999) else "Credit score not available"
        assert by_feature["credit_score"]["text"].startswith(expected_text)


def test_explain_words_for_codes_money_and_percent(client):
    loan = {**EXAMPLE_LOAN, "occupancy": "I", "dti": 45, "orig_upb": 250000, "credit_score": 612}
    body = client.post("/explain", json=loan).json()["predictions"][0]
    texts = {c["feature"]: c["text"] for c in body["contributions"]}
    assert texts["occupancy"].startswith("Occupancy: investment ")
    assert texts["dti"].startswith("Debt-to-income 45% ")
    assert texts["orig_upb"].startswith("Loan amount $250,000 ")
    assert texts["credit_score"].startswith("Credit score 612 ")
    values = {c["feature"]: c["value"] for c in body["contributions"]}
    assert values["credit_score"] == 612 and values["occupancy"] == "I"


@pytest.mark.slow
def test_serve_py_serves_with_two_workers(bundle_path, tmp_path):
    """The real entry point: Hydra config -> environment -> two uvicorn workers, each loading the bundle."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(REPO / "serve.py"), f"bundle={bundle_path}", f"port={port}", "workers=2", "max_batch=2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                assert server.poll() is None and time.time() < deadline, "server did not start"
                time.sleep(0.5)
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json=[EXAMPLE_LOAN, EXAMPLE_SPARSE_LOAN])
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        assert httpx.post(f"http://127.0.0.1:{port}/predict", json=[EXAMPLE_LOAN] * 3).status_code == 413
        for _ in range(4):  # whichever worker answers, /metrics adds up both (multiprocess mode, set by serve.py)
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            scored = [line for line in text.splitlines() if line.startswith("loan_default_default_probability_count")]
            assert scored == ["loan_default_default_probability_count 2.0"]
    finally:
        server.send_signal(2)
        output = server.communicate(timeout=60)[0]
    assert "Serving loan-default-demo" in output
