"""Property-based API tests from the OpenAPI document (schemathesis), with every check.

``positive_data_acceptance`` is included: a request valid against the published schema may be refused only
with a status its operation marks ``x-schema-valid-input`` in the document (app/api/openapi.py), so the
OpenAPI has to document every 4xx that schema-valid input can get.

- ``test_live_api_fuzz_short``: scripts/fuzz_api.py, i.e. a real ``tradeguard run`` over HTTP, with
  ``--checks all`` for an admin and a merchant key, fixed seed, derandomized, small budget (``make fuzz``
  runs the long one). Marked ``api_fuzz``: deselect with ``-m "not api_fuzz"``.
- ``test_api_conforms_for_every_role``: in process, each operation called with the key of a principal allowed
  to use it (buyer, oracle and arbitrator routes too), so that generated requests get past the role check and
  reach the validation and business rules.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from app.main import create_app
from app.services.bootstrap import prepare
from app.services.runtime import Runtime, set_runtime
from tests.api.conftest import Keys
from workers.celery_app import celery_app, configure

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fuzz_api.py"


def _fuzz_api() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_api", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.api_fuzz
@pytest.mark.slow
@pytest.mark.sqlite_only
def test_live_api_fuzz_short() -> None:
    """0 failures of any check and 0 server errors over HTTP, for an admin and a merchant key."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--max-examples", "5", "--seed", "1", "--deterministic"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(done.stdout)
    summary = {
        role: {k: run[k] for k in ("cases", "failures", "failing_operations", "errors", "output_tail")}
        for role, run in result.get("runs", {}).items()
    }
    assert done.returncode == 0 and result["ok"], json.dumps({**result, "runs": summary}, indent=2)
    assert result["server_errors"] == 0 and result["server_tracebacks"] == 0
    for role in ("admin", "merchant"):
        assert result["runs"][role]["cases"] >= 800, role  # every operation ran: ~1,100 cases a key


@pytest.fixture
def api_app(runtime: Runtime) -> FastAPI:
    set_runtime(runtime)
    configure(celery_app, runtime.settings)
    prepare(runtime)
    return create_app()


@pytest.fixture
def api_schema(api_app: FastAPI) -> Any:
    fuzz_api = _fuzz_api()
    document = api_app.openapi()
    config = SchemathesisConfig.from_str(fuzz_api.config_toml(fuzz_api.valid_input_statuses(document)))
    return schemathesis.openapi.from_asgi("/openapi.json", api_app, config=config)


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
        case.call_and_validate(headers=headers)

    return check


def test_api_conforms_for_every_role(api_schema: Any, keys: Keys) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 28
    for operation in operations:
        try:
            _checker(operation, {"Authorization": f"Bearer {_key_for(operation.path, keys)}"})()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_an_unmarked_rejection_of_valid_input_fails(api_app: FastAPI, keys: Keys) -> None:
    """The harness is not blind: without the document's marks, the business-rule 422s of schema-valid
    requests (a cursor this API did not hand out) fail positive_data_acceptance."""
    fuzz_api = _fuzz_api()
    document = api_app.openapi()
    marks = fuzz_api.valid_input_statuses(document)
    assert "422" in marks["GET /v1/orders"]
    del marks["GET /v1/orders"]
    config = SchemathesisConfig.from_str(fuzz_api.config_toml(marks))
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app, config=config)
    operation = schema["/v1/orders"]["GET"]
    refused: list[int] = []

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(case: schemathesis.Case) -> None:
        case.query = {"cursor": "AAAA"}  # schema-valid (a string of at most 500), not a cursor of ours
        with pytest.raises(BaseExceptionGroup) as failed:  # one failure per failed check
            case.call_and_validate(headers={"Authorization": f"Bearer {keys.merchant}"})
        refused.extend(type(e).__name__ for e in failed.value.exceptions)

    check()
    assert refused == ["RejectedPositiveData"]
