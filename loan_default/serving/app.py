"""The FastAPI app: `create_app(settings)`; the bundle loads once, in the lifespan.

Run it with `python serve.py`, or `uvicorn --factory loan_default.serving.app:create_app` (settings from
``LOAN_DEFAULT_SERVE_*`` environment variables).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import FastAPI

from loan_default import __version__
from loan_default.core.loading import open_scorer, resolve_bundle
from loan_default.serving import errors, mlflow, openapi
from loan_default.serving.metadata import metadata
from loan_default.serving.metrics import RequestMetrics
from loan_default.serving.monitoring import Window
from loan_default.serving.routes import explain, health, invocations, monitoring, predict
from loan_default.serving.routes import metrics as metrics_route
from loan_default.serving.settings import ServeSettings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """Scores mortgages at origination for default risk with a model trained on Freddie Mac's Single-Family
Loan-Level Dataset. Fields are named after Freddie Mac's origination file in snake_case; Freddie's "not available"
codes (credit score 9999, DTI 999, ...) are accepted, and optional fields may be left out."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ServeSettings = app.state.settings
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)
    try:
        path = resolve_bundle(settings.bundle, settings.bundle_root)
        scorer = open_scorer(path)  # also warms up: the first caller does not pay for building the SHAP explainer
        bundle = scorer.bundle
        app.state.metadata = metadata(bundle)
        app.state.api_key = os.environ.get(settings.api_key_env) or None
        app.state.monitor = Window(bundle.monitoring, settings.monitoring_window)
        app.state.scorer = scorer
        log.info(
            "Serving %s %s from %s (API key %s)",
            bundle.model_info["name"], bundle.model_info.get("version"), path,
            f"required, from ${settings.api_key_env}" if app.state.api_key else f"not set (${settings.api_key_env})",
        )  # fmt: skip
        yield
    finally:
        app.state.scorer = None
        torch.set_num_threads(threads)  # process-wide: leave an embedding process (a test run) as it was


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The app, configured by `settings` (default: from the environment). Nothing is loaded until startup."""
    settings = settings or get_settings()
    app = FastAPI(
        title="loan-default",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,  # 413 before the body is parsed, Content-Length or chunked
    )
    app.state.settings = settings
    app.state.scorer = None
    app.state.api_key = None
    app.state.monitor = Window(None, 1)
    errors.install(app)
    for router in (
        predict.router,
        explain.router,
        invocations.router,
        health.router,
        metrics_route.router,
        monitoring.router,
    ):
        app.include_router(router)
    app.add_middleware(RequestMetrics)
    openapi.install(app, mlflow.openapi_body()[1])
    return app


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus this package's loggers on the same console handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = {**LOGGING_CONFIG, "loggers": dict(LOGGING_CONFIG["loggers"])}
    config["loggers"]["loan_default"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config
