"""The OpenAPI document the server publishes: FastAPI's, plus the component schemas of the /invocations body (read
by hand, so generated from its pydantic models in `mlflow.openapi_body`), and without the API-key requirement when
the server runs without a key (then no route asks for one, and the document says so)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def install(app: FastAPI, components: dict[str, Any]) -> None:
    """Replace ``app.openapi``; built on the first request (after startup, when the API key is known), then cached."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            known = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, component in components.items():
                known.setdefault(name, component)
            if getattr(app.state, "api_key", None) is None:
                schema["components"].pop("securitySchemes", None)
                for operations in schema["paths"].values():
                    for operation in operations.values():
                        operation.pop("security", None)
                        for status in ("401", "403"):
                            operation.get("responses", {}).pop(status, None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
