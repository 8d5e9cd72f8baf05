"""A buyer's cart through the API: orders from two sellers funded with one permit, in one transaction that
pulls the total once; a cart that cannot be funded stores nothing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app.chain.eip712 import sign_typed_data
from app.client.demo import Wallets
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth
from tests.api.test_bad_input import counts
from tests.api.test_order_rules import body as order_body


def _order(client: TestClient, key: str, wallets: Wallets, ref: str, amount: int) -> str:
    resp = client.post(
        "/v1/orders", json=order_body(wallets, order_ref=ref, amount=str(amount)), headers=auth(key)
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order"]["id"])


def _signed_cart(client: TestClient, keys: Keys, wallets: Wallets, ids: list[str]) -> dict[str, Any]:
    resp = client.post("/v1/carts/signing", json={"order_ids": ids}, headers=auth(keys.buyer))
    assert resp.status_code == 200, resp.text
    docs = resp.json()
    return {
        "items": [
            {
                "order_id": item["order_id"],
                "signature": "0x" + sign_typed_data(wallets.buyer.key, item["authorization"]).hex(),
            }
            for item in docs["orders"]
        ],
        "permit": {
            "deadline": int(docs["permit"]["message"]["deadline"]),
            "signature": "0x" + sign_typed_data(wallets.buyer.key, docs["permit"]).hex(),
        },
        "docs": docs,
    }


def test_a_cart_across_two_sellers_is_funded_with_one_permit_in_one_transfer(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    faucet = {"address": wallets.buyer.address, "amount": "10000000"}
    assert client.post("/v1/dev/faucet", json=faucet, headers=auth(keys.admin)).status_code == 200
    ids = [
        _order(client, keys.merchant, wallets, "CART-A", 1_000_000),
        _order(client, keys.other_merchant, wallets, "CART-B", 2_500_000),
        _order(client, keys.merchant, wallets, "CART-C", 500_000),
    ]
    cart = _signed_cart(client, keys, wallets, ids)
    assert cart["docs"]["total"] == "4000000"
    assert cart["docs"]["permit"]["message"]["value"] == 4_000_000

    resp = client.post(
        "/v1/carts/funding",
        json={"items": cart["items"], "permit": cart["permit"]},
        headers=auth(keys.buyer),
    )

    assert resp.status_code == 202, resp.text
    items = resp.json()["items"]
    assert [i["order"]["id"] for i in items] == ids
    funded = [client.get(f"/v1/orders/{oid}", headers=auth(keys.buyer)).json() for oid in ids]
    assert [o["status"] for o in funded] == ["funded"] * 3
    txs = {t["tx_hash"] for o in funded for t in o["timeline"] if t["kind"] == "OrderFunded"}
    assert len(txs) == 1  # the three orders went on chain together
    receipt = runtime.chain.receipt(txs.pop())
    assert receipt is not None
    token = next(iter(runtime.tokens))
    pulls = [
        ev
        for ev in runtime.chain.events(receipt)
        if ev.name == "Transfer" and ev.address == token and ev.args["from"] == wallets.buyer.address
    ]
    assert [int(ev.args["value"]) for ev in pulls] == [4_000_000]  # one transfer for the total


def test_an_order_of_the_cart_that_is_not_awaiting_funding_refuses_the_cart(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    faucet = {"address": wallets.buyer.address, "amount": "10000000"}
    assert client.post("/v1/dev/faucet", json=faucet, headers=auth(keys.admin)).status_code == 200
    first = _order(client, keys.merchant, wallets, "CART-D", 1_000_000)
    second = _order(client, keys.merchant, wallets, "CART-E", 1_000_000)
    lone = _signed_cart(client, keys, wallets, [first])
    resp = client.post(
        "/v1/carts/funding", json={"items": lone["items"], "permit": lone["permit"]}, headers=auth(keys.buyer)
    )
    assert resp.status_code == 202, resp.text

    before = counts(runtime)
    assert_problem(
        client.post("/v1/carts/signing", json={"order_ids": [first, second]}, headers=auth(keys.buyer)),
        409,
        "invalid_state",
    )
    cart = _signed_cart(client, keys, wallets, [second])
    tampered = {**cart["permit"], "deadline": cart["permit"]["deadline"] - 1}  # not what was signed
    assert_problem(
        client.post(
            "/v1/carts/funding", json={"items": cart["items"], "permit": tampered}, headers=auth(keys.buyer)
        ),
        422,
        "invalid_signature",
    )
    twice = [cart["items"][0], cart["items"][0]]
    assert_problem(
        client.post(
            "/v1/carts/funding", json={"items": twice, "permit": cart["permit"]}, headers=auth(keys.buyer)
        ),
        422,
        "invalid_cart",
    )
    # another buyer's cart holding this buyer's order: it is not theirs to see
    assert_problem(
        client.post("/v1/carts/signing", json={"order_ids": [second]}, headers=auth(keys.other_buyer)),
        404,
    )
    assert_problem(
        client.post("/v1/carts/signing", json={"order_ids": [second]}, headers=auth(keys.merchant)),
        403,
    )
    assert counts(runtime) == before
