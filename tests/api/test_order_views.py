"""Evidence listing and download, settlements (JSON, CSV), pagination, webhooks, attestations, retractions."""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.client import demo
from app.client.demo import Wallets
from app.db.models import WebhookDelivery
from app.domain.encoding import rfc3339
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth

UNIT = 10**6
EVENT_ID = "urn:uuid:6d7f3a8e-2b1c-4c55-9f0e-0d6a1c2b3e4f"


def _demo(client: TestClient, admin_key: str, wallets: Wallets) -> demo.Demo:
    return demo.Demo(client, admin_key, wallets, say=lambda _line: None)


def test_evidence_is_listed_with_its_anchor_and_downloadable(
    client: TestClient, admin_key: str, wallets: Wallets
) -> None:
    d = _demo(client, admin_key, wallets)
    order = d.create_and_fund("EV-1", 50 * UNIT)
    d.decision(order, 2)
    content = b"unboxing video transcript: item missing"
    d.evidence(order, "buyer", content, "missing.txt")
    listed = d.get(d.parties.buyer, f"/v1/orders/{order['id']}/evidence")["items"]
    [item] = listed
    assert item["sha256"] == "0x" + hashlib.sha256(content).hexdigest()
    assert item["anchored"] is True and item["matches_chain"] is True and item["anchor_tx"].startswith("0x")
    assert item["intent"]["status"] == "confirmed"
    # arbitrators see disputed orders and their evidence; other merchants do not
    assert (
        client.get(f"/v1/orders/{order['id']}/evidence", headers=auth(d.parties.arbitrator)).status_code
        == 200
    )
    body = client.get(
        f"/v1/orders/{order['id']}/evidence/{item['id']}/content", headers=auth(d.parties.merchant)
    )
    assert body.status_code == 200 and body.content == content


def test_evidence_signed_by_someone_else_is_refused(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = _demo(client, admin_key, wallets)
    order = d.create_and_fund("EV-2", 50 * UNIT)
    forged = demo.Wallets(wallets.buyer, wallets.merchant, wallets.arbitrator, wallets.oracle_address)
    d.wallets = forged  # the buyer's upload signed with the merchant's key
    resp = client.post(
        f"/v1/orders/{order['id']}/evidence",
        files={"file": ("x.txt", b"x", "text/plain")},
        data={"signature": "0x" + "22" * 65, "valid_until": str(d.chain_time() + 100)},
        headers=auth(d.parties.buyer),
    )
    assert_problem(resp, 422, "invalid_signature")
    assert d.get(d.parties.buyer, f"/v1/orders/{order['id']}/evidence")["items"] == []


def test_settlements_as_json_and_csv(client: TestClient, admin_key: str, wallets: Wallets) -> None:
    d = _demo(client, admin_key, wallets)
    d.happy_path()
    d.create_and_fund("SET-2", 10 * UNIT)
    report = d.get(d.parties.merchant, "/v1/settlements")
    totals = report["totals"]["tUSD"]
    assert totals["released"]["count"] == 1 and totals["released"]["seller_net"] == str(197_500_000)
    assert totals["in_escrow"]["amount"] == str(10 * UNIT)
    resp = client.get("/v1/settlements", headers={**auth(d.parties.merchant), "Accept": "text/csv"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert {r["status"] for r in rows} == {"released", "funded"}
    released = next(r for r in rows if r["status"] == "released")
    assert (released["commission"], released["tax"], released["seller_net"]) == (
        "5000000",
        "47500000",
        "197500000",
    )


def test_orders_are_paginated_by_cursor(client: TestClient, keys: Keys, wallets: Wallets) -> None:
    for i in range(5):
        body = {
            "order_ref": f"PG-{i}",
            "buyer": wallets.buyer.address,
            "amount": "1000",
            "currency": "tUSD",
            "destination_country": "CN",
            "goods_category": "toys",
        }
        assert client.post("/v1/orders", json=body, headers=auth(keys.merchant)).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/orders", params=params, headers=auth(keys.merchant)).json()
        seen += [o["order_ref"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"PG-{i}" for i in range(5)] and len(seen) == 5
    assert_problem(client.get("/v1/orders", params={"cursor": "!!"}, headers=auth(keys.merchant)), 422)


def test_webhook_endpoint_gets_a_delivery_per_status_change(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = _demo(client, admin_key, wallets)
    created = d.post(d.parties.merchant, "/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hook"}, 201)
    assert created["secret"].startswith("whsec_")
    d.create_and_fund("WH-1", 20 * UNIT)
    with runtime.db() as s:
        deliveries = list(
            s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == created["id"]))
        )
    assert deliveries, "the funding should have queued a webhook"
    log = d.get(d.parties.merchant, f"/v1/webhook-endpoints/{created['id']}/deliveries")
    assert log["items"]
    assert_problem(
        client.get(f"/v1/webhook-endpoints/{created['id']}/deliveries", headers=auth(keys_other(d))), 404
    )
    assert_problem(
        client.post(
            "/v1/webhook-endpoints", json={"url": "ftp://x.example/hook"}, headers=auth(d.parties.merchant)
        ),
        422,
    )


def keys_other(d: demo.Demo) -> str:
    return d.parties.buyer


def test_independent_oracle_attestation_counts(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = _demo(client, admin_key, wallets)
    order = d.create_and_fund("AT-1", 30 * UNIT)
    oracle = runtime.dev_accounts["oracle"]
    now = d.chain_time()
    message = {
        "orderId": order["id"],
        "milestone": 2,
        "eventTime": now,
        "trackingHash": "0x" + "00" * 32,
        "evidenceHash": "0x" + hashlib.sha256(b"pod").hexdigest(),
    }
    from app.chain.eip712 import sign_typed_data

    sig = sign_typed_data(oracle.key, d._typed("DeliveryAttestation", message))
    body = {
        "order_id": order["id"],
        "milestone": 2,
        "event_time": now,
        "tracking_hash": message["trackingHash"],
        "evidence_hash": message["evidenceHash"],
        "signature": "0x" + sig.hex(),
    }
    # only an oracle principal, and only for its own address
    assert_problem(client.post("/v1/attestations", json=body, headers=auth(d.parties.merchant)), 403)
    resp = client.post("/v1/attestations", json=body, headers=auth(d.parties.oracle))
    assert resp.status_code == 202, resp.text
    assert d.order(d.parties.merchant, order["id"])["status"] == "delivered"
    again = client.post("/v1/attestations", json=body, headers=auth(d.parties.oracle))
    assert again.status_code == 202 and again.json()["duplicate"] is True, again.text
    assert again.json()["intent"]["id"] == resp.json()["intent"]["id"]


def test_error_declaration_retracts_and_flags_the_order(
    client: TestClient, admin_key: str, wallets: Wallets
) -> None:
    d = _demo(client, admin_key, wallets)
    ref = "ED-1"
    order = d.create_and_fund(ref, 40 * UNIT)
    sscc = d.ship(order, 77)
    when = d.chain_time() - 30
    first = d.epcis(sscc, "shipping", when, order_ref=ref, event_id=EVENT_ID)
    assert first["outcome"]["intents"], first
    assert d.order(d.parties.merchant, order["id"])["status"] == "shipped"
    # the same event, re-published with an errorDeclaration (EPCIS 2.0 §7.4.1.5)
    capture = _declaration(d, sscc, when, first)
    assert capture["outcome"]["retracted"] == 1
    view = d.order(d.parties.merchant, order["id"])
    assert view["needs_review"] is True
    assert any(item["kind"] == "logistics.retracted" for item in view["timeline"])


def _declaration(d: demo.Demo, sscc: str, when: int, first: dict[str, Any]) -> dict[str, Any]:
    event = demo.object_event(
        when,
        "shipping",
        eventID=EVENT_ID,
        epcList=[f"https://id.gs1.org/00/{sscc}"],
        errorDeclaration={"declarationTime": rfc3339(when), "reason": "incorrect_data"},
    )
    return d.capture(event)


def test_an_evidence_upload_retried_with_its_idempotency_key_is_stored_once(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    from app.chain.eip712 import sign_typed_data
    from app.db.models import Evidence

    d = _demo(client, admin_key, wallets)
    order = d.create_and_fund("EV-IDEM", 10 * UNIT)
    content = b"receipt scan"
    valid_until = d.chain_time() + 3600
    message = {
        "orderId": order["id"],
        "party": wallets.buyer.address,
        "evidenceHash": "0x" + hashlib.sha256(content).hexdigest(),
        "validUntil": valid_until,
    }
    sig = "0x" + sign_typed_data(wallets.buyer.key, d._typed("EvidenceSubmission", message)).hex()
    answers = [
        client.post(  # httpx picks a new multipart boundary on every request
            f"/v1/orders/{order['id']}/evidence",
            files={"file": ("r.txt", content, "text/plain")},
            data={"signature": sig, "valid_until": str(valid_until)},
            headers=auth(d.parties.buyer, "upload-1"),
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    assert answers[1].headers.get("idempotent-replayed") == "true"
    with runtime.db() as s:
        assert len(s.scalars(select(Evidence)).all()) == 1


def test_the_onchain_reference_lets_the_seller_act_on_chain_without_the_service(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    """SPEC §1: GET /v1/orders/{id} gives the Terms tuple and the packed state word, which is all the
    escrow's functions need; the seller refunds straight on chain from them, and the service follows."""
    from app.chain.escrow import TERMS_FIELDS, Terms
    from app.chain.escrow import Order as ChainOrder
    from app.services.index import indexer

    d = demo.Demo(client, admin_key, wallets, lambda _line: None)
    order = d.create_and_fund(f"ONCHAIN-{d.run_id}", d.units(12))
    view = d.order(d.parties.merchant, order["id"])
    onchain = view["onchain"]
    assert onchain["order_id"] == order["id"] and onchain["terms_fields"] == list(TERMS_FIELDS)
    values = dict(zip(TERMS_FIELDS, onchain["terms"], strict=True))
    assert values["amount"] == str(d.units(12)) and values["seller"] == wallets.merchant.address
    ref = ChainOrder(
        bytes.fromhex(order["id"][2:]),
        Terms.from_event({k: int(v) if str(v).isdigit() else v for k, v in values.items()}),
        int(onchain["state"]),
    )
    # the escrow checks the ref against it
    assert runtime.escrow.commitment(ref.order_id, ref.terms.buyer) != bytes(32)

    result = runtime.escrow.refund_by_seller(ref, wallets.merchant)

    assert int(result.receipt["status"]) == 1
    indexer.sync(runtime)
    after = d.order(d.parties.buyer, order["id"])
    assert after["status"] == "refunded" and after["split"]["buyer_refund"] == str(d.units(12))
