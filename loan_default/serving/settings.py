"""Server settings, and the one home of their defaults: `serve.py` registers them with Hydra (as `serve_settings`,
under `conf/serve.yaml`, which only overrides), and ``LOAN_DEFAULT_SERVE_*`` environment variables set them for
uvicorn's worker processes and for `uvicorn --factory loan_default.serving.app:create_app`. An unknown key fails at
startup, naming it."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LOAN_DEFAULT_SERVE_"


class ServeSettings(BaseSettings):
    """Where the bundle is, where to listen, who may call, and how much one request may ask for."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    bundle: Path | None = Field(None, description="Bundle folder; None = the newest bundle under bundle_root")
    bundle_root: Path = Field(
        default_factory=lambda: Path(os.environ.get("LOAN_DEFAULT_ROOT", ".")) / "logs",
        description="Where training runs write their bundles: logs/ under $LOAN_DEFAULT_ROOT or the current folder, "
        "as train.py's paths.log_dir",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes (each loads the bundle once)")
    api_key_env: str = Field(
        "LOAN_DEFAULT_API_KEY",
        description="Environment variable holding the API key; when it is set and not empty, scoring endpoints and "
        "/metadata require the header X-API-Key",
    )
    max_batch: int = Field(5000, ge=1, description="Most loans in one /predict or /invocations request (else 413)")
    max_explain_batch: int = Field(100, ge=1, description="Most loans in one /explain request (else 413)")
    max_body_bytes: int = Field(8 << 20, ge=1024, description="Largest request body in bytes (else 413)")
    monitoring_window: int = Field(
        10_000, ge=1, description="Loans each worker keeps (score and fields) for /monitoring: the most recent ones"
    )
    top_k: int = Field(5, ge=1, le=50, description="Reasons per loan from /explain unless the request asks")
    torch_threads: int = Field(
        1, ge=1, description="torch intra-op threads: 1 is fastest for the small matrices of a request"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    access_log: bool = True


@lru_cache
def get_settings() -> ServeSettings:
    """Settings from the environment, read once."""
    return ServeSettings()


HYDRA_NODE = "serve_settings"


def defaults() -> dict[str, Any]:
    """Every setting with its default, as plain YAML values (paths as text)."""
    return ServeSettings.model_construct().model_dump(mode="json")
