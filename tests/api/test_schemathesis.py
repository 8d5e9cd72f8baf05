"""Property-based API tests from the OpenAPI document (schemathesis): no server error, answers as documented.

Each operation is called with the key of a principal allowed to use it, so that generated requests get past
authentication and reach the validation and business rules.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from app.api.main import create_app
from app.services.bootstrap import prepare
from app.services.runtime import Runtime, set_runtime
from tests.api.conftest import Keys
from workers.celery_app import celery_app, configure


@pytest.fixture
def api_app(runtime: Runtime) -> FastAPI:
    set_runtime(runtime)
    configure(celery_app, runtime.settings)
    prepare(runtime)
    return create_app()


@pytest.fixture
def api_schema(api_app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", api_app)


#: Business rules refuse many schema-valid requests with a documented 4xx (a well-formed signature by the
#: wrong key, an order in the wrong state, an address the role does not allow): "positive data acceptance"
#: would call each of those a failure. Everything else runs, ``not_a_server_error`` first of all.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


def _key_for(path: str, keys: Keys) -> str:
    if path.startswith(("/v1/principals", "/v1/corridors", "/v1/dev")):
        return keys.admin
    if path.startswith(("/v1/epcis", "/v1/attestations")):
        return keys.oracle
    if path.endswith(("/funding", "/confirm-receipt", "/disputes")):
        return keys.buyer
    if path.endswith("/ruling"):
        return keys.arbitrator
    return keys.merchant


def _checker(operation: Any, headers: dict[str, str]) -> Any:
    @given(case=operation.as_strategy())
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)

    return check


def test_api_conforms_and_never_fails(api_schema: schemathesis.BaseSchema, keys: Keys) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:
        try:
            _checker(operation, {"Authorization": f"Bearer {_key_for(operation.path, keys)}"})()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
