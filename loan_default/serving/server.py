"""Start uvicorn on a checked bundle: what `python serve.py` does after Hydra has composed `conf/serve.yaml`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from loan_default.core.bundle import BundleError
from loan_default.serving.settings import ENV_PREFIX, ServeSettings


def serve(config: Mapping[str, Any]) -> None:
    """Validate the settings, find and check the bundle, then run uvicorn until stopped.

    Exits with a one-line message (status 1) when the settings are wrong or there is no usable bundle, rather than
    letting uvicorn start and fail in every worker.
    """
    import uvicorn

    from loan_default.core.loading import open_scorer, resolve_bundle
    from loan_default.serving.app import log_config

    try:
        settings = ServeSettings(**config)
        path = resolve_bundle(settings.bundle, settings.bundle_root)
        open_scorer(path)
    except (ValidationError, BundleError) as err:
        raise SystemExit(f"serve.py: {err}") from None
    settings = settings.model_copy(update={"bundle": path.resolve()})
    # uvicorn's workers build the app from the environment, so every worker gets the same settings.
    os.environ.update(settings_env(settings))
    # Several workers: Prometheus metrics go through files in one folder, which /metrics in any worker adds up.
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="loan-default-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "loan_default.serving.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            access_log=settings.access_log,
            log_config=log_config(settings.log_level),
        )
    finally:
        if metrics_dir is not None:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            shutil.rmtree(metrics_dir, ignore_errors=True)


def settings_env(settings: ServeSettings) -> dict[str, str]:
    """``LOAN_DEFAULT_SERVE_*`` variables that rebuild `settings` (see `settings.get_settings`)."""
    values = settings.model_dump(mode="json", exclude_none=True)
    return {
        f"{ENV_PREFIX}{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in values.items()
    }
