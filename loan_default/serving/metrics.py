"""Prometheus metrics: requests and latency per endpoint and status, predictions per decision and risk band, outliers,
and the distribution of default probabilities; served as text by GET /metrics.

Several uvicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (before this module is imported; `serve.py` sets it
itself when ``workers > 1``), every worker writes its values to files there and /metrics adds up all workers
(prometheus-client's multiprocess mode). Otherwise each process counts for itself (one worker: the whole server).
"""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

REQUESTS = Counter(
    "loan_default_http_requests", "HTTP requests answered", ["endpoint", "method", "status"]
)  # fmt: skip
LATENCY = Histogram(
    "loan_default_http_request_duration_seconds",
    "Time from request to the end of the answer",
    ["endpoint", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
PREDICTIONS = Counter("loan_default_predictions", "Loans scored", ["decision", "risk_band"])
OUTLIERS = Counter("loan_default_outliers", "Loans flagged by the outlier detector")
SCORES = Histogram(
    "loan_default_default_probability",
    "Default probabilities served",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
)


def observe_predictions(records: Iterable[Mapping[str, Any]]) -> None:
    """Count scored loans (`Scorer.predict`/`explain` records): one increment per (decision, band), not per loan."""
    tally: Tally[tuple[str, str]] = Tally()
    outliers = 0
    for record in records:
        tally[record["decision"], record["risk_band"]] += 1
        outliers += bool(record["is_outlier"])
        SCORES.observe(record["default_probability"])
    for (decision, band), count in tally.items():
        PREDICTIONS.labels(decision, band).inc(count)
    if outliers:
        OUTLIERS.inc(outliers)


def exposition() -> bytes:
    """The text /metrics answers: this process's registry, or every worker's files in multiprocess mode."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class RequestMetrics:
    """ASGI middleware counting every HTTP request by route template (bounded labels: unknown paths are "other")."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            labels = (getattr(route, "path", "other"), scope["method"], str(status))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - start)
