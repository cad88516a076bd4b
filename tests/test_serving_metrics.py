"""GET /metrics: counts checked against the answers the client received (not against the code that counts), the API
key rule, and multiprocess collection adding up several worker processes. GET /monitoring: the served window's score
PSI against a hand computation, a shifted population flagged red, an older bundle answered as unavailable."""

from __future__ import annotations

import collections
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_bundle import demo_loans, loan_requests
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from loan_default.serving.app import create_app
from loan_default.serving.schemas import EXAMPLE_LOAN
from loan_default.serving.settings import ServeSettings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(bundle_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServeSettings(bundle=bundle_path, api_key_env="LOAN_DEFAULT_TEST_NO_KEY"))) as c:
        yield c


def samples(client: TestClient) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def delta(after: dict, before: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_what_the_clients_received(client):
    loans = loan_requests(demo_loans(200, seed=5))[:60]
    before = samples(client)
    answer = client.post("/predict", json=loans).json()["predictions"]
    answer += client.post("/invocations", json={"dataframe_records": loans[:10]}).json()["predictions"]
    assert client.post("/predict", json={**EXAMPLE_LOAN, "dti": 70}).status_code == 422
    after = samples(client)

    tally = collections.Counter((p["decision"], p["risk_band"]) for p in answer)
    assert len(tally) >= 2
    for (decision, band), count in tally.items():
        assert delta(after, before, "loan_default_predictions_total", decision=decision, risk_band=band) == count
    assert delta(after, before, "loan_default_outliers_total") == sum(p["is_outlier"] for p in answer)
    assert delta(after, before, "loan_default_default_probability_count") == len(answer)
    total = sum(p["default_probability"] for p in answer)
    assert delta(after, before, "loan_default_default_probability_sum") == pytest.approx(total, rel=1e-9)
    below = sum(p["default_probability"] <= 0.05 for p in answer)
    assert delta(after, before, "loan_default_default_probability_bucket", le="0.05") == below

    http = "loan_default_http_requests_total"
    assert delta(after, before, http, endpoint="/predict", method="POST", status="200") == 1
    assert delta(after, before, http, endpoint="/predict", method="POST", status="422") == 1
    assert delta(after, before, http, endpoint="/invocations", method="POST", status="200") == 1
    latency = "loan_default_http_request_duration_seconds_count"
    assert delta(after, before, latency, endpoint="/predict", method="POST", status="200") == 1
    client.get("/no/such/path")
    assert delta(samples(client), after, http, endpoint="other", method="GET", status="404") == 1


def test_metrics_need_the_api_key_like_metadata(bundle_path, monkeypatch):
    monkeypatch.setenv("LOAN_DEFAULT_TEST_METRICS_KEY", "s3cret")
    settings = ServeSettings(bundle=bundle_path, api_key_env="LOAN_DEFAULT_TEST_METRICS_KEY")
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": "wrong"}).status_code == 403
        assert client.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200


WORKER = """
from loan_default.serving import metrics
metrics.observe_predictions([{"decision": "default", "risk_band": "high", "is_outlier": True,
                              "default_probability": 0.3}] * {n})
"""


def test_several_processes_add_up_in_multiprocess_mode(tmp_path):
    """What `serve.py workers=2` sets up: each worker writes to PROMETHEUS_MULTIPROC_DIR, /metrics sums them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 4):  # two "workers", one after the other, each a process of its own
        subprocess.run([sys.executable, "-c", WORKER.replace("{n}", str(n))], env=env, check=True, cwd=REPO)
    read = "from loan_default.serving import metrics; print(metrics.exposition().decode())"
    text = subprocess.run([sys.executable, "-c", read], env=env, check=True, capture_output=True, text=True).stdout
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    assert values[("loan_default_predictions_total", (("decision", "default"), ("risk_band", "high")))] == 7
    assert values[("loan_default_outliers_total", ())] == 7
    assert values[("loan_default_default_probability_count", ())] == 7


# ---------------------------------------------------------------------------------------------------------------------
# /monitoring
# ---------------------------------------------------------------------------------------------------------------------
def hand_psi(edges: list[float], expected: list[float], scores: list[float], floor: float) -> float:
    """PSI worked out apart from core.drift: right-closed bins on the reference edges, an empty missing bin."""
    counts = [0] * (len(edges) + 2)
    for s in scores:
        counts[sum(s > e for e in edges)] += 1
    actual = [c / len(scores) for c in counts]
    return sum(
        (max(a, floor) - max(e, floor)) * math.log(max(a, floor) / max(e, floor))
        for a, e in zip(actual, expected, strict=True)
    )


def test_monitoring_compares_the_served_window_with_the_reference(bundle_path, bundle):
    loans = loan_requests(demo_loans(600, seed=21))
    settings = ServeSettings(bundle=bundle_path, api_key_env="LOAN_DEFAULT_TEST_NO_KEY", monitoring_window=300)
    with TestClient(create_app(settings)) as client:
        empty = client.get("/monitoring").json()
        assert empty["available"] and empty["window"]["rows"] == 0 and empty["status"] is None
        served = client.post("/predict", json=loans[:200]).json()["predictions"]
        served += client.post("/invocations", json={"dataframe_records": loans[200:400]}).json()["predictions"]
        report = client.get("/monitoring").json()
        window = [p["default_probability"] for p in served][-300:]
        assert report["window"] == {**report["window"], "rows": 300, "max_rows": 300, "served_since_start": 400}
        ref = bundle.monitoring.score
        assert report["psi_score"] == pytest.approx(hand_psi(ref.edges, ref.fractions, window, report["psi_floor"]))
        # (Small samples of the generator cover different vintages, so orig_rate may move; credit scores do not.)
        assert report["csi"]["credit_score"]["light"] != "red" and report["status"] in ("stable", "drifted")
        assert set(report["csi"]) == set(bundle.monitoring.fields)

        # Credit scores 150 points lower: that field goes red and the status says drifted.
        shifted = [{**loan, "credit_score": max(300, loan["credit_score"] - 150)} for loan in loans[400:]
                   if loan.get("credit_score") not in (None, 9999)]  # fmt: skip
        for start in range(0, 300, 100):
            assert client.post("/predict", json=(shifted * 2)[start : start + 100]).status_code == 200
        drifted = client.get("/monitoring").json()
        assert "credit_score" in drifted["fields_red"] and drifted["status"] == "drifted"
        assert drifted["csi"]["credit_score"]["light"] == "red"


def test_monitoring_is_unavailable_for_a_bundle_without_reference(bundle_path, tmp_path):
    older = tmp_path / "bundle"
    shutil.copytree(bundle_path, older)
    (older / "monitoring.json").unlink()
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["files"]["monitoring.json"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    with TestClient(create_app(ServeSettings(bundle=older, api_key_env="LOAN_DEFAULT_TEST_NO_KEY"))) as client:
        assert client.post("/predict", json=EXAMPLE_LOAN).status_code == 200
        answer = client.get("/monitoring")
    assert answer.status_code == 200
    assert answer.json()["available"] is False and "monitoring reference" in answer.json()["reason"]
