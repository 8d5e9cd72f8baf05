"""Logistics events move only the order they name: SSCCs are not shared between open orders, an order
reference must name the seller, DELIVERED counts only at a registered destination, future events and other
oracles' retractions count for nothing."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from app.client import demo
from app.client.demo import Wallets
from app.services.runtime import Runtime
from tests.api.conftest import assert_problem, auth

UNIT = 10**6


def _demo(client: TestClient, admin_key: str, wallets: Wallets) -> demo.Demo:
    return demo.Demo(client, admin_key, wallets, say=lambda _line: None)


def _capture(d: demo.Demo, event: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    return d.capture(event, key=key)


def _event(when: int, biz_step: str, **extra: Any) -> dict[str, Any]:
    return demo.object_event(when, biz_step, **extra)


def test_an_sscc_belongs_to_one_open_order(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = _demo(client, admin_key, wallets)
    first = d.create_and_fund("SS-1", 10 * UNIT)
    second = d.create_and_fund("SS-2", 10 * UNIT)
    sscc = d.ship(first, 5)
    resp = client.post(
        f"/v1/orders/{second['id']}/shipments",
        json={"carrier": "ups", "tracking_number": "1Z0000", "sscc": sscc},
        headers=auth(d.parties.merchant),
    )
    body = assert_problem(resp, 409, "shipment_exists")
    assert first["id"] not in json.dumps(body)  # which order holds it is not disclosed


def test_a_short_reference_or_another_sellers_reference_moves_nothing(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = _demo(client, admin_key, wallets)
    order = d.create_and_fund("1152", 10 * UNIT)
    now = d.chain_time()
    other_seller = runtime.dev_accounts["treasury"].address.lower()
    for value in (
        "urn:epcglobal:cbv:bt:4012345000009:1152",  # same tail, someone else's invoice
        f"urn:tradeguard:order:{other_seller}:1152",  # the reference under another seller
    ):
        capture = _capture(
            d, _event(now, "shipping", bizTransactionList=[{"type": "inv", "bizTransaction": value}])
        )
        assert capture["outcome"]["matched"] == [] and capture["outcome"]["intents"] == []
    assert d.order(d.parties.merchant, order["id"])["status"] == "funded"
    named = _capture(
        d, _event(now, "shipping", bizTransactionList=[{"type": "po", "bizTransaction": d.order_urn("1152")}])
    )
    assert named["outcome"]["intents"]
    assert d.order(d.parties.merchant, order["id"])["status"] == "shipped"


def test_delivered_counts_only_at_the_registered_destination(
    client: TestClient, admin_key: str, wallets: Wallets
) -> None:
    d = _demo(client, admin_key, wallets)
    order = d.create_and_fund("DST-1", 10 * UNIT)
    sscc = "006141410000000128"
    store = "urn:epc:id:sgln:4012345.00001.0"
    resp = client.post(
        f"/v1/orders/{order['id']}/shipments",
        json={"carrier": "dhl", "tracking_number": "JD-DST-1", "sscc": sscc, "destination": store},
        headers=auth(d.parties.merchant),
    )
    assert resp.status_code == 201, resp.text
    epc = ["urn:epc:id:sscc:0614141.0000000012"]
    now = d.chain_time()
    hub = _capture(
        d, _event(now, "receiving", epcList=epc, bizLocation={"id": "urn:epc:id:sgln:4000001.00000.0"})
    )
    assert hub["outcome"]["not_attested"][0]["reason"].startswith("received somewhere other")
    assert d.order(d.parties.merchant, order["id"])["status"] == "funded"
    there = _capture(d, _event(now, "receiving", epcList=epc, bizLocation={"id": store}))
    assert there["outcome"]["intents"]
    assert d.order(d.parties.merchant, order["id"])["status"] == "delivered"


def test_future_events_are_kept_but_not_attested(
    client: TestClient, admin_key: str, wallets: Wallets
) -> None:
    d = _demo(client, admin_key, wallets)
    order = d.create_and_fund("FUT-1", 10 * UNIT)
    sscc = d.ship(order, 9)
    later = _capture(
        d, _event(d.chain_time() + 30 * 86_400, "receiving", epcList=[f"https://id.gs1.org/00/{sscc}"])
    )
    assert later["outcome"]["events"] == 1 and later["outcome"]["intents"] == []
    assert later["outcome"]["not_attested"][0]["reason"] == "event time is in the future"
    assert d.order(d.parties.merchant, order["id"])["status"] == "funded"


def test_only_the_poster_can_retract_its_event(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = _demo(client, admin_key, wallets)
    order = d.create_and_fund("RET-1", 10 * UNIT)
    sscc = d.ship(order, 10)
    event_id = "urn:uuid:0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
    when = d.chain_time() - 10
    shipped = _event(when, "shipping", eventID=event_id, epcList=[f"https://id.gs1.org/00/{sscc}"])
    assert _capture(d, shipped)["outcome"]["intents"]
    other_oracle = d.post(
        admin_key,
        "/v1/principals",
        {"role": "oracle", "address": runtime.dev_accounts["buyer2"].address},
        201,
    )["api_key"]
    declaration = {
        **shipped,
        "errorDeclaration": {"declarationTime": shipped["eventTime"], "reason": "incorrect_data"},
    }
    assert _capture(d, declaration, key=other_oracle)["outcome"]["retracted"] == 0
    assert d.order(d.parties.merchant, order["id"])["needs_review"] is False
    assert _capture(d, declaration)["outcome"]["retracted"] == 1
    assert d.order(d.parties.merchant, order["id"])["needs_review"] is True


def test_an_event_is_attested_even_when_the_index_lags_the_chain(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    from sqlalchemy import update

    from app.db.models import Order

    d = _demo(client, admin_key, wallets)
    order = d.create_and_fund("LAG-1", 10 * UNIT)
    sscc = d.ship(order, 12)
    with runtime.db() as s, s.begin():  # as if the indexer had not yet seen the funding
        s.execute(update(Order).where(Order.id == order["id"]).values(status="awaiting_funding"))
    capture = _capture(d, _event(d.chain_time() - 5, "shipping", epcList=[f"https://id.gs1.org/00/{sscc}"]))
    assert capture["outcome"]["intents"], capture["outcome"]
