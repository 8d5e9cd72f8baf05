"""The OpenAPI documents every problem a route can answer, and the service answers as documented.

scripts/fuzz_api.py (and tests/api/test_schemathesis.py) hold the service to the ``x-schema-valid-input``
marks; these tests pin the document's shape and the defects the fuzzer found.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.openapi import VALID_INPUT
from app.api.schemas import UINT64_MAX
from tests.api.conftest import Keys, assert_problem, auth

#: Routes that need no API key.
PUBLIC = {
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/v1/chain"),
    ("post", "/v1/carriers/{carrier}/webhooks"),
}


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    doc: dict[str, Any] = resp.json()
    return doc


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]


def test_every_operation_documents_its_problems(document: dict[str, Any]) -> None:
    """Every authenticated operation documents 401 and 503; every write 400, 409, 413 and 422; every problem
    is application/problem+json with the Problem schema and at least one example of its own status."""
    ops = _operations(document)
    assert len(ops) >= 28
    for method, path, op in ops:
        responses = op["responses"]
        where = f"{method.upper()} {path}"
        if (method, path) not in PUBLIC:
            assert {"401", "503"} <= set(responses), where
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(responses), where
        if op.get("parameters") or "requestBody" in op:
            assert "422" in responses, where
        for status, response in responses.items():
            if not status.startswith(("4", "5")):
                continue
            content = response["content"]
            assert list(content) == ["application/problem+json"], (where, status)
            examples = content["application/problem+json"]["examples"]
            assert examples and all(e["value"]["status"] == int(status) for e in examples.values()), where
            assert content["application/problem+json"]["schema"]["title"] == "Problem"


def test_schema_valid_rejections_are_marked_with_examples(document: dict[str, Any]) -> None:
    """The 422s that schema-valid input can get are marked and named by example (issue 7 item 6)."""
    marked = {
        f"{method.upper()} {path}": {
            int(status): set(response["content"]["application/problem+json"]["examples"])
            for status, response in op["responses"].items()
            if response.get(VALID_INPUT)
        }
        for method, path, op in _operations(document)
    }
    assert {"unknown_currency", "invalid_schedule", "invalid_amount"} <= marked["POST /v1/orders"][422]
    assert "order_exists" in marked["POST /v1/orders"][409]
    assert "invalid_signature" in marked["POST /v1/orders/{order_id}/funding"][422]
    assert "invalid_cursor" in marked["GET /v1/orders"][422]
    assert "invalid_address" in marked["POST /v1/principals"][422]
    assert "empty_file" in marked["POST /v1/orders/{order_id}/evidence"][422]
    assert "unsupported_document" in marked["POST /v1/epcis/capture"][422]
    assert 422 not in marked["GET /v1/orders/{order_id}"]  # a well-formed id is found or not: 404
    for op, statuses in marked.items():
        assert all(400 <= s < 500 for s in statuses), op


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/v1/orders", "GET, POST"),
        ("/v1/corridors", "GET, PUT"),
        ("/v1/webhook-endpoints", "GET, POST"),
        ("/v1/orders/0x" + "ab" * 32 + "/evidence", "GET, POST"),
    ],
)
def test_405_allow_names_every_method_of_the_path(
    client: TestClient, keys: Keys, path: str, methods: str
) -> None:
    """``OPTIONS /v1/orders`` answered ``Allow: POST`` although GET exists (issue 7 item 6)."""
    resp = client.request("OPTIONS", path, headers=auth(keys.merchant))
    assert_problem(resp, 405, "method_not_allowed")
    assert resp.headers["allow"] == methods


def test_published_integer_bounds_are_the_enforced_ones(
    client: TestClient, keys: Keys, document: dict[str, Any]
) -> None:
    """The OpenAPI publishes bounds as floats: 2^63-1 read as 2^63, so the document admitted valid_until
    values the service refused (schemathesis: "schema-valid request rejected"). The bound is now exact."""
    permit = document["components"]["schemas"]["PermitIn"]["properties"]["deadline"]
    assert permit["maximum"] == UINT64_MAX and float(UINT64_MAX) == UINT64_MAX
    body = {"signature": "0x" + "11" * 65, "valid_until": UINT64_MAX + 1}
    path = "/v1/orders/0x" + "ab" * 32 + "/confirm-receipt"
    assert_problem(client.post(path, json=body, headers=auth(keys.buyer)), 422, "validation_error")
    body["valid_until"] = UINT64_MAX  # past validation: the order is unknown
    assert_problem(client.post(path, json=body, headers=auth(keys.buyer)), 404, "not_found")
