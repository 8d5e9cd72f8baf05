"""A request id follows a request into its intents and their transactions (issue 10, item 5): the intent and
the timeline entry it wrote keep the X-Request-Id, and so does the chain fact its transaction produced."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app.chain.eip712 import sign_typed_data
from app.client import demo
from app.client.demo import Wallets
from tests.api.conftest import auth

UNIT = 10**6


def _by_kind(timeline: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(item for item in timeline if item["kind"] == kind)


def test_a_funding_and_a_capture_are_traced_to_their_transactions(
    client: TestClient, admin_key: str, wallets: Wallets
) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    p = d.parties
    d.post(p.admin, "/v1/dev/faucet", {"address": wallets.buyer.address, "amount": str(10 * UNIT)}, 200)
    body = {
        "order_ref": "RQ-1",
        "buyer": wallets.buyer.address,
        "amount": str(10 * UNIT),
        "currency": "tUSD",
        "destination_country": "DE",
        "goods_category": "apparel",
    }
    created = d.post(p.merchant, "/v1/orders", body, 201)
    oid = created["order"]["id"]
    permit = created["sign"]["permit"]
    funding = {
        "signature": "0x" + sign_typed_data(wallets.buyer.key, created["sign"]["authorization"]).hex(),
        "permit": {
            "deadline": int(permit["message"]["deadline"]),
            "signature": "0x" + sign_typed_data(wallets.buyer.key, permit).hex(),
        },
    }
    resp = client.post(
        f"/v1/orders/{oid}/funding", json=funding, headers={**auth(p.buyer), "X-Request-Id": "fund-req-7"}
    )
    assert resp.status_code == 202, resp.text
    intent = resp.json()["intent"]
    assert intent["request_id"] == "fund-req-7"

    sscc = d.ship(d.order(p.merchant, oid), 71)
    event = demo.object_event(
        d.chain_time() - 30,
        "shipping",
        epcList=[f"https://id.gs1.org/00/{sscc}"],
        bizTransactionList=[{"type": "po", "bizTransaction": d.order_urn("RQ-1")}],
    )
    captured = client.post(
        "/v1/epcis/capture",
        content=demo.epcis_document(event),
        headers={**auth(p.oracle), "Content-Type": "application/ld+json", "X-Request-Id": "capture-req-3"},
    )
    assert captured.status_code == 202, captured.text

    timeline = d.order(p.merchant, oid)["timeline"]
    submitted = _by_kind(timeline, "fund.submitted")
    assert submitted["request_id"] == "fund-req-7" and submitted["data"]["intent_id"] == intent["id"]
    funded = _by_kind(timeline, "OrderFunded")
    assert funded["request_id"] == "fund-req-7" and funded["tx_hash"]
    # the capture was processed inline (eager): its attestation's transaction is traced to the capture
    assert _by_kind(timeline, "logistics.shipping")["request_id"] == "capture-req-3"
    assert _by_kind(timeline, "OrderShipped")["request_id"] == "capture-req-3"
    assert _by_kind(timeline, "order.created")["request_id"] not in (None, "fund-req-7")  # its own request
