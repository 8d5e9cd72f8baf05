"""Cursor pagination of the settlement pipeline, an order's evidence and webhook endpoints (issue 10, item 6):
every item once, in the list's order, ``next_cursor`` null at the end, a foreign cursor a 422."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.client import demo
from app.client.demo import Wallets
from tests.api.conftest import Keys, assert_problem, auth

UNIT = 10**6


def walk(client: TestClient, key: str, path: str, limit: int) -> list[dict[str, Any]]:
    """Every page of a list, following ``next_cursor``; each page at most ``limit`` items."""
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = client.get(path, params=params, headers=auth(key))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["items"]) <= limit
        pages.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor does not advance"


def _order(wallets: Wallets, ref: str) -> dict[str, Any]:
    return {
        "order_ref": ref,
        "buyer": wallets.buyer.address,
        "amount": str(3 * UNIT),
        "currency": "tUSD",
        "destination_country": "DE",
        "goods_category": "apparel",
    }


def test_webhook_endpoints_come_newest_first_a_page_at_a_time(client: TestClient, keys: Keys) -> None:
    made = [
        client.post(
            "/v1/webhook-endpoints", json={"url": f"http://127.0.0.1:9/hook/{n}"}, headers=auth(keys.merchant)
        ).json()["id"]
        for n in range(5)
    ]
    pages = walk(client, keys.merchant, "/v1/webhook-endpoints", 2)
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert [item["id"] for p in pages for item in p["items"]] == made[::-1]
    assert all("secret" not in item for p in pages for item in p["items"])
    assert walk(client, keys.other_merchant, "/v1/webhook-endpoints", 2)[0]["items"] == []


def test_the_settlement_pipeline_is_paged_and_its_totals_cover_every_order(
    client: TestClient, keys: Keys, wallets: Wallets
) -> None:
    refs = [f"PG-{n}" for n in range(5)]
    for ref in refs:
        assert (
            client.post("/v1/orders", json=_order(wallets, ref), headers=auth(keys.merchant)).status_code
            == 201
        )
    pages = walk(client, keys.merchant, "/v1/settlements", 2)
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    shown = [item["order_ref"] for p in pages for item in p["items"]]
    assert shown == refs[::-1]  # none due: newest first
    whole = client.get("/v1/settlements", headers=auth(keys.merchant)).json()
    assert whole["next_cursor"] is None and [i["order_ref"] for i in whole["items"]] == shown
    for p in pages:  # every page carries the whole pipeline's totals
        assert p["totals"] == whole["totals"]
        waiting = p["totals"]["tUSD"]["awaiting_funding"]
        assert (waiting["count"], waiting["amount"]) == (5, str(15 * UNIT))
    # the CSV export is every item, unpaged
    csv = client.get(
        "/v1/settlements", params={"limit": 1}, headers={**auth(keys.merchant), "Accept": "text/csv"}
    )
    assert csv.status_code == 200 and len(csv.text.strip().splitlines()) == 1 + 5


def test_an_orders_evidence_comes_oldest_first_a_page_at_a_time(
    client: TestClient, admin_key: str, wallets: Wallets
) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    order = d.create_and_fund("PG-EV", 20 * UNIT)
    d.decision(order, 2)
    uploads = [("buyer", b"photo of the damage"), ("merchant", b"packing list"), ("buyer", b"courier chat")]
    for n, (who, content) in enumerate(uploads):
        d.evidence(order, who, content, f"e{n}.txt")
    pages = walk(client, d.parties.buyer, f"/v1/orders/{order['id']}/evidence", 2)
    assert [len(p["items"]) for p in pages] == [2, 1]
    items = [item for p in pages for item in p["items"]]
    assert [item["filename"] for item in items] == ["e0.txt", "e1.txt", "e2.txt"]
    assert all(item["matches_chain"] for item in items)


@pytest.mark.parametrize(
    "path",
    ["/v1/webhook-endpoints", "/v1/settlements"],
)
def test_a_cursor_this_api_did_not_hand_out_is_a_422(client: TestClient, keys: Keys, path: str) -> None:
    for cursor in ("not-a-cursor", "WzEsMiwzXQ"):  # the second is base64 of [1,2,3]
        resp = client.get(path, params={"cursor": cursor}, headers=auth(keys.merchant))
        assert_problem(resp, 422, "invalid_cursor")


def test_evidence_refuses_a_foreign_cursor_too(client: TestClient, admin_key: str, wallets: Wallets) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    order = d.create_and_fund("PG-EV2", 5 * UNIT)
    resp = client.get(
        f"/v1/orders/{order['id']}/evidence", params={"cursor": "not-a-cursor"}, headers=auth(d.parties.buyer)
    )
    assert_problem(resp, 422, "invalid_cursor")
