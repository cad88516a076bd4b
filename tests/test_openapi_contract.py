"""The OpenAPI contract: schemathesis runs every check (schema-valid requests accepted, schema-violating ones
refused, status codes, content types and bodies as documented, auth as documented) against the app in process, with
and without an API key. Examples are few and derandomized, so the run is the same every time and takes seconds.

Phases: examples and fuzzing (the coverage phase takes about a minute per operation here; the CLI run,
`schemathesis run http://127.0.0.1:PORT/openapi.json --checks all`, includes it).
(`schemathesis.pytest.from_fixture` fails under pytest 9, so the schema is read from the app at import, which needs no
bundle, and the bundle is given to the app by a fixture before its lifespan starts on the first call.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from loan_default.serving.app import create_app
from loan_default.serving.settings import ServeSettings

# The same configuration as `schemathesis run` from the repository root: /invocations may refuse a schema-valid body
# with 422 (JSON Schema cannot tie a dataframe_split row's values to its columns, nor say what a CSV body holds).
CONFIG = Path(__file__).resolve().parents[1] / "schemathesis.toml"
KEY_ENV = "LOAN_DEFAULT_TEST_CONTRACT_KEY"
KEY = "contract-s3cret"
NO_KEY_ENV = "LOAN_DEFAULT_TEST_CONTRACT_NO_KEY"
SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


def published(api_key_env: str, key: str | None) -> tuple[FastAPI, schemathesis.schemas.BaseSchema]:
    """An app and the schema it publishes (with ``key`` as its API key, as the lifespan will set it)."""
    app = create_app(ServeSettings(api_key_env=api_key_env))
    app.state.api_key = key
    schema = schemathesis.openapi.from_dict(app.openapi(), config=SchemathesisConfig.from_path(CONFIG))
    schema.app = app
    schema.config.generation.update(max_examples=20, deterministic=True)
    schema.config.phases.update(phases=["examples", "fuzzing"])
    if key:
        schema.config.update(headers={"X-API-Key": key})  # as `schemathesis run -H "X-API-Key: ..."` does
    app.openapi_schema = None  # built again after startup, from the real state
    return app, schema


open_app, open_schema = published(NO_KEY_ENV, None)
keyed_app, keyed_schema = published(KEY_ENV, KEY)


@pytest.fixture(scope="module", autouse=True)
def served_bundle(bundle_path: Path):
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(NO_KEY_ENV, raising=False)
        patch.setenv(KEY_ENV, KEY)
        open_app.state.settings = ServeSettings(bundle=bundle_path, api_key_env=NO_KEY_ENV)
        keyed_app.state.settings = ServeSettings(bundle=bundle_path, api_key_env=KEY_ENV)
        yield


@open_schema.parametrize()
@SETTINGS
def test_open_api_keeps_its_contract(case):
    case.call_and_validate()


@keyed_schema.parametrize()
@SETTINGS
def test_api_with_key_keeps_its_contract(case):
    case.call_and_validate()


def test_schema_tested_is_the_schema_served():
    from fastapi.testclient import TestClient

    for app, schema in ((open_app, open_schema), (keyed_app, keyed_schema)):
        with TestClient(app) as client:
            assert client.get("/openapi.json").json() == schema.raw_schema
