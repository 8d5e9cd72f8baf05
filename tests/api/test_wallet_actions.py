"""Transactions the API hands to a party's own wallet (SPEC §4 has no signed message for them): a seller's
refund, a withdrawal of credits, and the escrow admin's registration of an oracle; each sent as answered
works, the indexer follows, and a refusal is the decoded error before anything is signed."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from app.client import demo
from app.client.demo import Wallets
from app.services.index import indexer
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth


def _send(rt: Runtime, wallet: LocalAccount, answer: dict[str, Any]) -> None:
    """Sign and send the answered transaction as a wallet would, unchanged but for nonce and fees."""
    tx = answer["transaction"]
    assert tx["from"] == wallet.address and tx["chainId"] == rt.chain.chain_id
    signed = wallet.sign_transaction(
        {
            "to": tx["to"],
            "data": tx["data"],
            "value": int(tx["value"], 16),
            "gas": int(tx["gas"], 16),
            "chainId": tx["chainId"],
            "nonce": rt.chain.nonce(wallet.address),
            **rt.chain.fees().fields(),
        }
    )
    tx_hash = rt.chain.w3.eth.send_raw_transaction(signed.raw_transaction)
    assert rt.chain.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1


def _get(client: TestClient, path: str, key: str, status: int = 200, **params: Any) -> dict[str, Any]:
    resp = client.get(path, params=params, headers=auth(key))
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_a_seller_refunds_from_its_wallet_and_the_buyer_withdraws_the_credit(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime, keys: Keys
) -> None:
    d = demo.Demo(client, admin_key, wallets, lambda _line: None)
    order = d.create_and_fund(f"REFUND-{d.run_id}", d.units(30))
    path = f"/v1/orders/{order['id']}/refund-transaction"
    assert_problem(client.get(path, headers=auth(d.parties.buyer)), 403)
    assert_problem(client.get(path, headers=auth(keys.other_merchant)), 404)

    answer = _get(client, path, d.parties.merchant)

    assert answer["transaction"]["to"] == runtime.escrow.address and "refund" in answer["description"]
    _send(runtime, wallets.merchant, answer)
    indexer.sync(runtime)
    refunded = d.order(d.parties.buyer, order["id"])
    assert refunded["status"] == "refunded" and refunded["split"]["buyer_refund"] == str(d.units(30))
    assert_problem(client.get(path, headers=auth(d.parties.merchant)), 409)  # decoded: not refundable now

    owed = _get(client, "/v1/credits", d.parties.buyer)
    assert owed["address"] == wallets.buyer.address
    assert [i["amount"] for i in owed["items"] if i["currency"] == d.currency] == [str(d.units(30))]
    token = runtime.chain.contract("TestUSD", next(iter(runtime.tokens)))
    before = int(runtime.chain.call(token.functions.balanceOf(wallets.buyer.address)))

    answer = _get(client, "/v1/credits/withdrawal", d.parties.buyer, currency=d.currency)
    _send(runtime, wallets.buyer, answer)

    after = int(runtime.chain.call(token.functions.balanceOf(wallets.buyer.address)))
    assert after - before == d.units(30)
    assert [i["amount"] for i in _get(client, "/v1/credits", d.parties.buyer)["items"]] == ["0"]
    assert_problem(
        client.get("/v1/credits/withdrawal", params={"currency": d.currency}, headers=auth(d.parties.buyer)),
        422,  # more than is owed (nothing, now): the amount is the input at fault
        "insufficient_credit",
    )
    assert_problem(
        client.get("/v1/credits/withdrawal", params={"currency": "XYZ"}, headers=auth(d.parties.buyer)),
        422,
        "unknown_currency",
    )


def test_the_admin_registers_an_oracle_on_chain_and_sees_when_it_counts(
    client: TestClient, runtime: Runtime, keys: Keys
) -> None:
    fresh = Account.create()
    made = client.post(
        "/v1/principals", json={"role": "oracle", "address": fresh.address}, headers=auth(keys.admin)
    )
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    base = f"/v1/principals/{pid}/onchain"
    assert _get(client, base, keys.admin)["registered"] is False

    answer = _get(client, f"{base}/registration", keys.admin)
    deployer = runtime.dev_accounts["deployer"]
    assert answer["transaction"]["from"] == deployer.address and "ROLE_DELAY" in answer["description"]
    _send(runtime, deployer, answer)

    status = _get(client, base, keys.admin)
    assert status["registered"] is True and status["active"] is False and status["active_from"]
    delay = int(runtime.chain.call(runtime.escrow.contract.functions.ROLE_DELAY()))
    assert (
        client.post("/v1/dev/advance-time", json={"seconds": delay + 1}, headers=auth(keys.admin)).status_code
        == 200
    )
    assert _get(client, base, keys.admin)["active"] is True

    _send(runtime, deployer, _get(client, f"{base}/removal", keys.admin))
    assert _get(client, base, keys.admin)["registered"] is False
    # a removed oracle cannot be removed again: the escrow's own error, before anything is signed
    gone = assert_problem(client.get(f"{base}/removal", headers=auth(keys.admin)), 409, "oracle_config")
    assert gone["error"] == "OracleConfig"

    merchant_id = _get(client, "/v1/principals/me", keys.merchant)["id"]
    assert_problem(
        client.get(f"/v1/principals/{merchant_id}/onchain", headers=auth(keys.admin)), 422, "no_onchain_role"
    )
    assert_problem(client.get(base, headers=auth(keys.merchant)), 403)


def test_a_regulator_freezes_and_unfreezes_an_order_from_its_wallet(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    regulator = runtime.dev_accounts["regulator"]
    made = client.post(
        "/v1/principals", json={"role": "regulator", "address": regulator.address}, headers=auth(admin_key)
    )
    assert made.status_code == 201, made.text
    key = made.json()["api_key"]
    d = demo.Demo(client, admin_key, wallets, lambda _line: None)
    order = d.create_and_fund(f"FREEZE-{d.run_id}", d.units(5))
    path = f"/v1/orders/{order['id']}/freeze-transaction"
    assert_problem(
        client.get(path, params={"seconds": 3600, "reason": "x"}, headers=auth(d.parties.merchant)), 403
    )
    assert _get(client, f"/v1/orders/{order['id']}", key)["id"] == order["id"]  # a regulator sees every order

    answer = _get(client, path, key, seconds=86_400, reason="customs hold: case 42")
    assert "freeze order" in answer["description"]
    _send(runtime, regulator, answer)
    indexer.sync(runtime)
    frozen = d.order(d.parties.merchant, order["id"])
    assert frozen["frozen_until"] is not None
    assert any(t["kind"] == "OrderFrozen" for t in frozen["timeline"])

    _send(runtime, regulator, _get(client, f"/v1/orders/{order['id']}/unfreeze-transaction", key))
    indexer.sync(runtime)
    thawed = d.order(d.parties.merchant, order["id"])
    assert any(t["kind"] == "OrderUnfrozen" for t in thawed["timeline"])
    assert thawed["status"] == "funded"
