"""A contract refusal answers with its own code (issue 10, item 2): the custom error's name in snake_case, 409
for the state acted on, 422 for the request's content, the Solidity name and arguments beside it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.chain.eip712 import sign_typed_data
from app.client import demo
from app.client.demo import Wallets
from app.db.models import Intent
from app.services.runtime import Runtime
from tests.api.conftest import assert_problem, auth

UNIT = 10**6


def _intents(rt: Runtime) -> int:
    with rt.db() as s:
        return int(s.scalar(select(func.count()).select_from(Intent)) or 0)


def _decision(d: demo.Demo, order: dict[str, Any], decision: int, valid_until: int) -> dict[str, Any]:
    message = {
        "orderId": order["id"],
        "decision": decision,
        "evidenceHash": "0x" + "00" * 32,
        "validUntil": valid_until,
    }
    sig = sign_typed_data(d.wallets.buyer.key, d._typed("BuyerDecision", message))
    return {
        "signature": "0x" + sig.hex(),
        "valid_until": valid_until,
        "evidence_hash": message["evidenceHash"],
    }


def test_a_state_refusal_is_409_with_the_errors_own_code(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    order = d.create_and_fund("EC-STATE", 20 * UNIT)
    before = _intents(runtime)
    # confirming receipt of an order that was never shipped: the escrow refuses by its status
    body = _decision(d, order, 1, d.chain_time() + 3600)
    resp = client.post(f"/v1/orders/{order['id']}/confirm-receipt", json=body, headers=auth(d.parties.buyer))
    problem = assert_problem(resp, 409, "invalid_status")
    assert problem["type"].endswith("/invalid_status")
    assert problem["error"] == "InvalidStatus"
    assert problem["arguments"] == {"orderId": order["id"], "status": 1}  # FUNDED
    assert _intents(runtime) == before


def test_an_input_refusal_is_422_with_the_errors_own_code(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    order = d.create_and_fund("EC-INPUT", 20 * UNIT)
    before = _intents(runtime)
    now = d.chain_time()
    body = _decision(d, order, 2, now - 60)  # a dispute signed with a validUntil already past
    resp = client.post(f"/v1/orders/{order['id']}/disputes", json=body, headers=auth(d.parties.buyer))
    problem = assert_problem(resp, 422, "signature_expired")
    assert problem["error"] == "SignatureExpired"
    assert problem["arguments"]["validUntil"] == now - 60
    assert _intents(runtime) == before
    assert d.order(d.parties.buyer, order["id"])["status"] == "funded"


def test_an_oracle_not_registered_on_chain_gets_not_oracle(
    client: TestClient, admin_key: str, wallets: Wallets, runtime: Runtime
) -> None:
    """The symptom issue 10 describes: an oracle principal whose address the escrow does not know."""
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    order = d.create_and_fund("EC-ORACLE", 20 * UNIT)
    stranger = runtime.dev_accounts["buyer2"]
    created = d.post(admin_key, "/v1/principals", {"role": "oracle", "address": stranger.address}, 201)
    message = {
        "orderId": order["id"],
        "milestone": 1,
        "eventTime": d.chain_time() - 10,
        "trackingHash": "0x" + "11" * 32,
        "evidenceHash": "0x" + "22" * 32,
    }
    sig = sign_typed_data(stranger.key, d._typed("DeliveryAttestation", message))
    body = {
        "order_id": order["id"],
        "milestone": 1,
        "event_time": message["eventTime"],
        "tracking_hash": message["trackingHash"],
        "evidence_hash": message["evidenceHash"],
        "signature": "0x" + sig.hex(),
    }
    before = _intents(runtime)
    resp = client.post("/v1/attestations", json=body, headers=auth(created["api_key"]))
    problem = assert_problem(resp, 409, "not_oracle")
    assert problem["error"] == "NotOracle" and problem["arguments"] == {"signer": stranger.address}
    assert _intents(runtime) == before


def test_a_token_error_has_a_code_too(client: TestClient, admin_key: str, wallets: Wallets) -> None:
    d = demo.Demo(client, admin_key, wallets, say=lambda _line: None)
    too_much = str(10**12 + 1)  # tUSD's faucet gives at most 1,000,000.000000 per call
    resp = client.post(
        "/v1/dev/faucet",
        json={"address": wallets.buyer.address, "amount": too_much},
        headers=auth(d.parties.admin),
    )
    problem = assert_problem(resp, 422, "faucet_limit")
    assert problem["error"] == "FaucetLimit"
    assert problem["arguments"] == {"requested": 10**12 + 1, "limit": 10**12}
