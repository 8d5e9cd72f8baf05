"""ERC-792 arbitration through the service, end to end (SPEC §4.1): a merchant creates an order naming an
appointed ERC-792 arbitrator (the test double ``CentralizedArbitrator``) and its extraData, the buyer signs
and funds it, an oracle attests the shipment, the buyer opens the dispute from its own wallet paying the
arbitration cost, both sides anchor evidence, the arbitrator rules through ``rule()``, the keeper executes the
ruling, and the index, ``GET /v1/orders/{id}`` and the credits show the split. Platform arbitration keeps its
signed routes; and every refused input (unknown arbitrator, bad extraData, a missing or short fee) changes
nothing."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from fastapi.testclient import TestClient
from web3.contract import Contract

from app.chain.eip712 import sign_typed_data
from app.chain.escrow import ZERO_HASH
from app.client import demo
from app.client.demo import Wallets
from app.db.models import ChainEvent, Intent, Order
from app.domain.money import ruling_share_bps, ruling_split
from app.services.index import indexer
from app.services.outbox.relayer import relay
from app.services.runtime import Runtime
from app.services.settlement import keeper
from tests.api.conftest import Keys, assert_problem, auth

FEE = 10**16  # the arbitrator's arbitrationCost, in wei
EXTRA = bytes.fromhex("00000000000000000000000000000000000000000000000000000000000000010003")


def _court(rt: Runtime, wallets: Wallets, *, appoint: bool = True) -> Contract:
    """A CentralizedArbitrator owned by the dev arbitrator wallet, appointed on the escrow and active."""
    deployer = rt.dev_accounts["deployer"]
    court = rt.chain.deploy("CentralizedArbitrator", wallets.arbitrator.address, FEE, 0, 0, sender=deployer)
    if appoint:
        rt.chain.send(rt.escrow.contract.functions.addArbitrator(court.address), deployer)
        delay = int(rt.chain.call(rt.escrow.contract.functions.ROLE_DELAY()))
        rt.chain.advance_time(delay + 1)
    return court


def _send(rt: Runtime, wallet: LocalAccount, answer: dict[str, Any]) -> dict[str, Any]:
    """Sign and send the answered transaction as a wallet would (nonce and fees its own); the receipt."""
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
    receipt = dict(rt.chain.w3.eth.wait_for_transaction_receipt(tx_hash))
    assert receipt["status"] == 1
    return receipt


def _get(client: TestClient, path: str, key: str, **params: Any) -> dict[str, Any]:
    resp = client.get(path, params=params, headers=auth(key))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _shipped(d: demo.Demo, order: dict[str, Any], ref: str, serial: int) -> None:
    sscc = d.ship(order, serial)
    d.epcis(sscc, "shipping", d.chain_time() - 60, order_ref=ref)
    d.wait_status(order["id"], "shipped")


def _rows(rt: Runtime) -> tuple[int, int]:
    with rt.db() as s:
        return s.query(Order).count(), s.query(Intent).count()


def test_an_order_arbitrated_by_an_erc792_arbitrator_runs_end_to_end(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime, keys: Keys
) -> None:
    rt = runtime
    court = _court(rt, wallets)
    d = demo.Demo(client, admin_key, wallets, lambda _line: None)
    ref, amount = f"ERC792-{d.run_id}", d.units(500)
    created = client.post(
        "/v1/orders",
        json={
            "order_ref": ref,
            "buyer": wallets.buyer.address,
            "amount": str(amount),
            "currency": d.currency,
            "destination_country": "DE",
            "goods_category": "apparel",
            "arbitrator": court.address,
            "arbitrator_extra_data": "0x" + EXTRA.hex(),
        },
        headers=auth(d.parties.merchant),
    )
    assert created.status_code == 201, created.text
    signed = created.json()["sign"]["authorization"]
    assert signed["domain"]["version"] == "2"
    assert signed["message"]["arbitrator"] == court.address
    assert signed["message"]["arbitratorExtraDataHash"] == "0x" + keccak(EXTRA).hex()
    arbitration = created.json()["order"]["arbitration"]
    assert arbitration["kind"] == "erc792" and arbitration["extra_data"] == "0x" + EXTRA.hex()
    assert arbitration["dispute_id"] is None and arbitration["ruling"] is None
    oid = created.json()["order"]["id"]
    # the buyer funds it from what was answered (the arbitrator and the extraData hash are signed)
    d.post(d.parties.admin, "/v1/dev/faucet", {"address": wallets.buyer.address, "amount": str(amount)}, 200)
    permit = created.json()["sign"]["permit"]
    body = {
        "signature": "0x" + sign_typed_data(wallets.buyer.key, signed).hex(),
        "permit": {
            "deadline": int(permit["message"]["deadline"]),
            "signature": "0x" + sign_typed_data(wallets.buyer.key, permit).hex(),
        },
    }
    d.post(d.parties.buyer, f"/v1/orders/{oid}/funding", body, 202)
    order = d.wait_status(oid, "funded")
    onchain = dict(zip(order["onchain"]["terms_fields"], order["onchain"]["terms"], strict=True))
    assert onchain["arbitrator"] == court.address
    _shipped(d, order, ref, 7921)

    # the relayer cannot pay the fee: the signed route refuses, naming the wallet transaction
    refused = client.post(
        f"/v1/orders/{oid}/disputes",
        json={"signature": "0x" + "11" * 65, "valid_until": d.chain_time() + 3600},
        headers=auth(d.parties.buyer),
    )
    assert_problem(refused, 409, "erc792_dispute_conflict")
    assert_problem(client.get(f"/v1/orders/{oid}/dispute-transaction", headers=auth(d.parties.merchant)), 403)
    assert_problem(client.get(f"/v1/orders/{oid}/dispute-transaction", headers=auth(keys.other_buyer)), 404)
    # before any dispute, nothing to execute: the escrow's own NoRuling
    early = client.get(f"/v1/orders/{oid}/execute-ruling-transaction", headers=auth(d.parties.merchant))
    assert assert_problem(early, 409)["error"] == "NoRuling"

    evidence = bytes(range(32))
    answer = _get(
        client, f"/v1/orders/{oid}/dispute-transaction", d.parties.buyer, evidence_hash="0x" + evidence.hex()
    )
    tx = answer["transaction"]
    assert int(tx["value"], 16) == FEE and answer["arbitration_cost"] == str(FEE)
    assert tx["to"] == rt.escrow.address and answer["arbitrator"] == court.address
    balance_before = rt.chain.balance(court.address)
    receipt = _send(rt, wallets.buyer, answer)
    assert rt.chain.balance(court.address) - balance_before == FEE  # all of it, to the arbitrator
    assert rt.chain.balance(rt.escrow.address) == 0
    assert receipt["to"] == rt.escrow.address
    indexer.sync(rt)
    disputed = d.order(d.parties.buyer, oid)
    assert disputed["status"] == "disputed"
    assert disputed["arbitration"]["dispute_id"] == "0"  # the court's first dispute
    assert int(court.functions.disputeCount().call()) == 1

    # evidence from both sides, relayed as for any order (ERC-1497 Evidence names the order's arbitrator)
    d.evidence(disputed, "buyer", b"the parcel arrived empty", "empty.txt")
    d.evidence(disputed, "merchant", b"scale ticket: 2.4 kg at dispatch", "scale.txt")
    indexer.sync(rt)
    with rt.db() as s:
        anchored = [e.args for e in s.query(ChainEvent).filter_by(name="Evidence", order_id=oid).all()]
    assert len(anchored) == 3 and {a["_arbitrator"] for a in anchored} == {court.address}

    # a platform Ruling is refused for it; the court's owner rules 7 → (7 - 1) * 1111 bps to the buyer
    assert_problem(
        client.post(
            f"/v1/orders/{oid}/ruling",
            json={
                "buyer_share_bps": 5000,
                "rationale_hash": "0x" + "22" * 32,
                "valid_until": d.chain_time() + 3600,
                "signature": "0x" + "11" * 65,
            },
            headers=auth(d.parties.arbitrator),
        ),
        409,
        "erc792_ruling_conflict",
    )
    rt.chain.send(court.functions.giveRuling(0, 7), wallets.arbitrator)
    indexer.sync(rt)
    ruled = d.order(d.parties.merchant, oid)
    assert ruled["status"] == "disputed"
    assert ruled["arbitration"]["ruling"] == 7 and ruled["arbitration"]["ruling_buyer_share_bps"] == 6666
    expected = ruling_split(amount, ruling_share_bps(7), ruled["commission_bps"], ruled["tax_bps"])
    assert ruled["split"] == {
        "final": False,
        "buyer_refund": str(expected.buyer_refund),
        "commission": str(expected.commission),
        "tax": str(expected.tax),
        "seller_net": str(expected.seller_net),
    }
    assert any(t["kind"] == "RulingRecorded" for t in ruled["timeline"])
    offered = _get(client, f"/v1/orders/{oid}/execute-ruling-transaction", d.parties.merchant)
    assert "6666 bps" in offered["description"]

    # the keeper executes the ruling (anyone may), once
    report = keeper.sweep(rt)
    assert report.intents == [("execute_ruling", oid)]
    relay(rt)
    indexer.sync(rt)
    assert keeper.sweep(rt).submitted == 0
    resolved = d.order(d.parties.buyer, oid)
    assert resolved["status"] == "resolved"
    assert resolved["split"] == {**ruled["split"], "final": True}
    assert resolved["arbitration"]["ruling"] == 7
    assert any(t["kind"] == "DisputeResolved" for t in resolved["timeline"])

    owed = {i["currency"]: i["amount"] for i in _get(client, "/v1/credits", d.parties.buyer)["items"]}
    assert owed[d.currency] == str(expected.buyer_refund)
    seller = {i["currency"]: i["amount"] for i in _get(client, "/v1/credits", d.parties.merchant)["items"]}
    assert seller[d.currency] == str(expected.seller_net)
    # the escrow holds what it owes (conservation), and nothing of the fee
    token = rt.chain.contract("TestUSD", next(iter(rt.tokens)))
    assert int(token.functions.balanceOf(rt.escrow.address).call()) >= amount
    assert rt.chain.balance(rt.escrow.address) == 0
    # after the settlement, no second dispute and no second execution
    assert (
        assert_problem(
            client.get(f"/v1/orders/{oid}/dispute-transaction", headers=auth(d.parties.buyer)), 409
        )["error"]
        == "InvalidStatus"
    )


def test_creation_refuses_a_bad_arbitration_and_stores_nothing(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime, keys: Keys
) -> None:
    rt = runtime
    appointed = _court(rt, wallets)
    stranger = _court(rt, wallets, appoint=False)  # a real IArbitrator, never appointed on the escrow
    d = demo.Demo(client, admin_key, wallets, lambda _line: None)

    def create(**arbitration: Any) -> Any:
        body = {
            "order_ref": f"BAD-{d.run_id}",
            "buyer": wallets.buyer.address,
            "amount": "1000",
            "currency": d.currency,
            "destination_country": "DE",
            "goods_category": "apparel",
            **arbitration,
        }
        return client.post("/v1/orders", json=body, headers=auth(d.parties.merchant))

    before = _rows(rt)
    body = assert_problem(create(arbitrator=stranger.address), 422, "invalid_arbitrator")
    assert body["error"] == "InvalidArbitration"
    assert body["errors"][0]["field"] == "arbitrator"
    # an appointed address that is not an ERC-792 arbitrator (the platform arbitrator's own wallet)
    assert_problem(create(arbitrator=wallets.arbitrator.address), 422, "not_erc792_arbitrator")
    assert_problem(create(arbitrator_extra_data="0x01"), 422, "extra_data_without_arbitrator")
    too_big = "0x" + "ab" * 1025
    assert_problem(create(arbitrator=appointed.address, arbitrator_extra_data=too_big), 422)
    assert_problem(create(arbitrator=appointed.address, arbitrator_extra_data="0x123"), 422)  # odd digits
    assert_problem(create(arbitrator=appointed.address, arbitrator_extra_data="zz"), 422)
    assert_problem(create(arbitrator="0x1234"), 422)
    assert _rows(rt) == before

    # a fresh appointment counts only after ROLE_DELAY: refused until then, as the escrow would at funding
    pending = _court(rt, wallets, appoint=False)
    rt.chain.send(rt.escrow.contract.functions.addArbitrator(pending.address), rt.dev_accounts["deployer"])
    assert_problem(create(arbitrator=pending.address), 422, "invalid_arbitrator")
    assert _rows(rt) == before

    # no arbitrator: platform arbitration, unchanged (zero address and zero hash signed)
    made = create()
    assert made.status_code == 201, made.text
    message = made.json()["sign"]["authorization"]["message"]
    assert message["arbitrator"] == "0x0000000000000000000000000000000000000000"
    assert message["arbitratorExtraDataHash"] == "0x" + ZERO_HASH.hex()
    shown = made.json()["order"]["arbitration"]
    assert shown["kind"] == "platform" and shown["arbitrator"] is None


@pytest.mark.parametrize("value", ["none", "short"])
def test_a_dispute_without_the_full_fee_is_refused_on_chain_and_changes_nothing(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime, keys: Keys, value: str
) -> None:
    rt = runtime
    court = _court(rt, wallets)
    d = demo.Demo(client, admin_key, wallets, lambda _line: None)
    order = d.create_and_fund(
        f"FEE-{d.run_id}", d.units(20), arbitrator=court.address, arbitrator_extra_data="0x" + EXTRA.hex()
    )
    oid = order["id"]
    answer = _get(client, f"/v1/orders/{oid}/dispute-transaction", d.parties.buyer)
    tx = answer["transaction"]
    paid = 0 if value == "none" else FEE - 1
    state_before = d.order(d.parties.buyer, oid)["onchain"]["state"]
    signed = wallets.buyer.sign_transaction(
        {
            "to": tx["to"],
            "data": tx["data"],
            "value": paid,
            "gas": int(tx["gas"], 16),
            "chainId": tx["chainId"],
            "nonce": rt.chain.nonce(wallets.buyer.address),
            **rt.chain.fees().fields(),
        }
    )
    try:
        tx_hash = rt.chain.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = rt.chain.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 0  # the arbitrator's InsufficientPayment reverts the whole call
    except Exception as exc:  # eth-tester refuses a reverting transaction at once
        assert "InsufficientPayment" in str(exc) or "revert" in str(exc).lower(), exc
    indexer.sync(rt)
    after = d.order(d.parties.buyer, oid)
    assert after["status"] == "funded" and after["onchain"]["state"] == state_before
    assert after["arbitration"]["dispute_id"] is None
    assert int(court.functions.disputeCount().call()) == 0
    # the order can still be disputed, paying the fee
    _send(rt, wallets.buyer, _get(client, f"/v1/orders/{oid}/dispute-transaction", d.parties.buyer))
    indexer.sync(rt)
    assert d.order(d.parties.buyer, oid)["status"] == "disputed"


def test_a_platform_order_is_not_offered_the_erc792_transactions(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime, keys: Keys
) -> None:
    d = demo.Demo(client, admin_key, wallets, lambda _line: None)
    order = d.create_and_fund(f"PLAT-{d.run_id}", d.units(10))
    for path, key in (
        ("dispute-transaction", d.parties.buyer),
        ("execute-ruling-transaction", d.parties.merchant),
    ):
        assert_problem(
            client.get(f"/v1/orders/{order['id']}/{path}", headers=auth(key)),
            409,
            "platform_arbitration_conflict",
        )
