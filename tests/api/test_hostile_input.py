"""Hostile input found by an outside probe (issue 7): each is a 4xx problem+json and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.routes import orders as orders_routes
from app.chain.eip712 import sign_typed_data
from app.client.demo import Wallets, epcis_document, object_event
from app.services.runtime import Runtime
from app.services.trade import orders as trade_orders
from tests.api.conftest import Keys, assert_problem, auth
from tests.api.test_bad_input import counts
from workers.tasks import sweep_all

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


def _order(client: TestClient, keys: Keys, wallets: Wallets, ref: str) -> dict[str, Any]:
    body = {
        "order_ref": ref,
        "buyer": wallets.buyer.address,
        "amount": "5000000",
        "currency": "tUSD",
        "destination_country": "DE",
        "goods_category": "apparel",
    }
    resp = client.post("/v1/orders", json=body, headers=auth(keys.merchant))
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _funding(wallets: Wallets, sign: dict[str, Any]) -> dict[str, Any]:
    return {
        "signature": "0x" + sign_typed_data(wallets.buyer.key, sign["authorization"]).hex(),
        "permit": {
            "deadline": int(sign["permit"]["message"]["deadline"]),
            "signature": "0x" + sign_typed_data(wallets.buyer.key, sign["permit"]).hex(),
        },
    }


def test_a_funding_reads_its_order_and_its_permit_nonce_use_in_one_read_transaction(
    client: TestClient, keys: Keys, wallets: Wallets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The permit's nonce use (spent by another of our fundings?) is read with the order, not in a read
    transaction of its own (issue 8: a read transaction is ~1.5 ms of a funding's 13 ms of CPU)."""
    faucet = {"address": wallets.buyer.address, "amount": "100000000"}
    assert client.post("/v1/dev/faucet", json=faucet, headers=auth(keys.admin)).status_code == 200
    created = _order(client, keys, wallets, "ONE-READ-1")
    monkeypatch.setattr(orders_routes, "wake", lambda _name: None)
    opened: list[str] = []
    real = trade_orders.read_transaction

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append("read")
        return real(*args, **kwargs)

    monkeypatch.setattr(trade_orders, "read_transaction", counting)
    funded = client.post(
        f"/v1/orders/{created['order']['id']}/funding",
        json=_funding(wallets, created["sign"]),
        headers=auth(keys.buyer),
    )
    assert funded.status_code == 202, funded.text
    assert opened == ["read"]


def test_a_permit_nonce_funds_one_order_only(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    faucet = {"address": wallets.buyer.address, "amount": "100000000"}
    assert client.post("/v1/dev/faucet", json=faucet, headers=auth(keys.admin)).status_code == 200
    first, second = _order(client, keys, wallets, "CART-1"), _order(client, keys, wallets, "CART-2")
    assert first["sign"]["permit"]["message"]["nonce"] == second["sign"]["permit"]["message"]["nonce"]
    monkeypatch.setattr(orders_routes, "wake", lambda _name: None)  # the relayer has not run yet

    one = client.post(
        f"/v1/orders/{first['order']['id']}/funding",
        json=_funding(wallets, first["sign"]),
        headers=auth(keys.buyer),
    )
    assert one.status_code == 202, one.text
    before = counts(runtime)
    two = client.post(
        f"/v1/orders/{second['order']['id']}/funding",
        json=_funding(wallets, second["sign"]),
        headers=auth(keys.buyer),
    )
    problem = assert_problem(two, 409, "permit_nonce_conflict")
    assert problem["order_id"] == first["order"]["id"]
    assert counts(runtime) == before

    sweep_all()  # the first funding is mined: the nonce moves on
    stale = client.post(
        f"/v1/orders/{second['order']['id']}/funding",
        json=_funding(wallets, second["sign"]),
        headers=auth(keys.buyer),
    )
    assert_problem(stale, 422, "invalid_signature")
    fresh = client.get(f"/v1/orders/{second['order']['id']}/signing", headers=auth(keys.buyer)).json()
    assert fresh["permit"]["message"]["nonce"] == first["sign"]["permit"]["message"]["nonce"] + 1
    ok = client.post(
        f"/v1/orders/{second['order']['id']}/funding", json=_funding(wallets, fresh), headers=auth(keys.buyer)
    )
    assert ok.status_code == 202, ok.text
    sweep_all()
    for created in (first, second):
        view = client.get(f"/v1/orders/{created['order']['id']}", headers=auth(keys.buyer)).json()
        assert view["status"] == "funded"
