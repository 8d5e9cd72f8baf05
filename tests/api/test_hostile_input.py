"""Hostile input found by an outside probe (issue 7): each is a 4xx problem+json and changes nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.client.demo import epcis_document, object_event
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth
from tests.api.test_bad_input import counts

MALFORMED = {"nonsense": [1, 2, 3]}


@pytest.mark.parametrize(
    ("method", "path", "who"),
    [
        ("POST", "/v1/principals", "merchant"),
        ("POST", "/v1/principals", "oracle"),
        ("PUT", "/v1/corridors", "buyer"),
        ("POST", "/v1/orders", "buyer"),
        ("POST", "/v1/orders", "admin"),
        ("POST", "/v1/webhook-endpoints", "buyer"),
        ("POST", "/v1/attestations", "merchant"),
        ("POST", f"/v1/orders/0x{'11' * 32}/funding", "merchant"),
        ("POST", f"/v1/orders/0x{'11' * 32}/ruling", "buyer"),
        ("POST", f"/v1/orders/0x{'11' * 32}/shipments", "buyer"),
        ("POST", f"/v1/orders/0x{'11' * 32}/confirm-receipt", "arbitrator"),
    ],
)
def test_the_role_is_checked_before_the_body(
    client: TestClient, keys: Keys, runtime: Runtime, method: str, path: str, who: str
) -> None:
    before = counts(runtime)
    resp = client.request(method, path, json=MALFORMED, headers=auth(getattr(keys, who)))
    assert_problem(resp, 403, "forbidden")
    assert counts(runtime) == before


def test_advance_time_is_admin_only_before_the_body(client: TestClient, keys: Keys) -> None:
    resp = client.post("/v1/dev/advance-time", json={"seconds": "soon"}, headers=auth(keys.merchant))
    assert_problem(resp, 403, "forbidden")


@pytest.mark.parametrize(
    "fields",
    [
        {"epcList": ["urn:epc:id:sscc:0614141.1234567890\x00"]},
        {"eventID": "urn:uuid:6d2e3c3e-0000-4000-8000-\x00000000000000"},
        {"bizLocation": {"id": "urn:epc:id:sgln:0614141.00777.0\n"}},
        {"bizTransactionList": [{"type": "po", "bizTransaction": "urn:tradeguard:order:x\x00:1"}]},
        {"epcList": ["urn:epc:id:sscc:" + "9" * 3000]},
    ],
)
def test_control_characters_in_epcis_identifiers_are_refused(
    client: TestClient, keys: Keys, runtime: Runtime, fields: dict[str, object]
) -> None:
    before = counts(runtime)
    event = object_event(runtime.chain.now(), "shipping", **fields)
    resp = client.post(
        "/v1/epcis/capture",
        content=epcis_document(event),
        headers={**auth(keys.oracle), "Content-Type": "application/json"},
    )
    problem = assert_problem(resp, 422, "malformed")
    assert "event 0" in problem["detail"]
    assert counts(runtime) == before
