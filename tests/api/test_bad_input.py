"""Bad input on every route gets a 4xx problem+json and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.chain.eip712 import sign_typed_data
from app.client.demo import Wallets
from app.db.models import Evidence, IdempotencyRecord, InboxItem, Intent, Order, Principal
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth

UNIT = 10**6


def counts(rt: Runtime) -> dict[str, int]:
    with rt.db() as s:
        return {
            m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Order, Intent, InboxItem, Evidence, Principal)
        }


def new_order(
    client: TestClient, keys: Keys, wallets: Wallets, ref: str = "SO-1", amount: int = 100 * UNIT
) -> dict[str, Any]:
    resp = client.post(
        "/v1/orders",
        json={
            "order_ref": ref,
            "buyer": wallets.buyer.address,
            "amount": str(amount),
            "currency": "tUSD",
            "destination_country": "DE",
            "goods_category": "apparel",
        },
        headers=auth(keys.merchant),
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_unknown_or_missing_api_key_is_401(client: TestClient, runtime: Runtime) -> None:
    before = counts(runtime)
    assert_problem(client.get("/v1/orders"), 401, "unauthorized")
    assert_problem(client.get("/v1/orders", headers={"Authorization": "Bearer tg_nope"}), 401)
    assert_problem(client.post("/v1/principals", json={"role": "admin"}, headers=auth("nope")), 401)
    assert counts(runtime) == before


def test_wrong_role_is_403_and_changes_nothing(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    before = counts(runtime)
    body = {
        "order_ref": "X",
        "buyer": wallets.buyer.address,
        "amount": "1",
        "currency": "tUSD",
        "destination_country": "DE",
        "goods_category": "apparel",
    }
    assert_problem(client.post("/v1/orders", json=body, headers=auth(keys.buyer)), 403, "forbidden")
    assert_problem(client.post("/v1/principals", json={"role": "admin"}, headers=auth(keys.merchant)), 403)
    assert_problem(client.get("/v1/settlements", headers=auth(keys.buyer)), 403)
    assert counts(runtime) == before


def test_someone_elses_order_is_404(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    created = new_order(client, keys, wallets)
    oid = created["order"]["id"]
    assert client.get(f"/v1/orders/{oid}", headers=auth(keys.merchant)).status_code == 200
    assert client.get(f"/v1/orders/{oid}", headers=auth(keys.buyer)).status_code == 200
    before = counts(runtime)
    for key in (keys.other_merchant, keys.other_buyer, keys.arbitrator, keys.oracle):
        assert_problem(client.get(f"/v1/orders/{oid}", headers=auth(key)), 404, "not_found")
    sig = sign_typed_data(wallets.buyer.key, created["sign"]["authorization"])
    assert_problem(
        client.post(
            f"/v1/orders/{oid}/funding", json={"signature": "0x" + sig.hex()}, headers=auth(keys.other_buyer)
        ),
        404,
    )
    listed = client.get("/v1/orders", headers=auth(keys.other_merchant)).json()
    assert listed["items"] == []
    assert counts(runtime) == before


def test_forged_authorization_signature_is_422_and_nothing_is_relayed(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    created = new_order(client, keys, wallets)
    oid = created["order"]["id"]
    forged = sign_typed_data(wallets.merchant.key, created["sign"]["authorization"])  # not the buyer's key
    before = counts(runtime)
    body = assert_problem(
        client.post(
            f"/v1/orders/{oid}/funding", json={"signature": "0x" + forged.hex()}, headers=auth(keys.buyer)
        ),
        422,
        "invalid_signature",
    )
    assert body["recovered"] == wallets.merchant.address
    # a tampered message (another amount) signed by the right key recovers to someone else, too
    doc = json.loads(json.dumps(created["sign"]["authorization"]))
    doc["message"]["amount"] = str(1)
    tampered = sign_typed_data(wallets.buyer.key, doc)
    assert_problem(
        client.post(
            f"/v1/orders/{oid}/funding", json={"signature": "0x" + tampered.hex()}, headers=auth(keys.buyer)
        ),
        422,
        "invalid_signature",
    )
    assert counts(runtime) == before
    assert client.get(f"/v1/orders/{oid}", headers=auth(keys.buyer)).json()["status"] == "awaiting_funding"


def test_funding_without_allowance_names_the_contract_error(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    created = new_order(client, keys, wallets)
    oid = created["order"]["id"]
    sig = sign_typed_data(wallets.buyer.key, created["sign"]["authorization"])
    before = counts(runtime)
    resp = client.post(
        f"/v1/orders/{oid}/funding", json={"signature": "0x" + sig.hex()}, headers=auth(keys.buyer)
    )
    # the buyer's allowance is the token's state, not the request's content: 409 (issue 10's status rule)
    body = assert_problem(resp, 409, "erc20_insufficient_allowance")
    assert body["error"] == "ERC20InsufficientAllowance"
    assert counts(runtime) == before


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"amount": 100}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "1.5"}, "amount"),
        ({"buyer": "0x1234"}, "buyer"),
        ({"currency": "EUR"}, None),
        ({"destination_country": "Germany"}, "destination_country"),
        ({"unexpected": True}, "unexpected"),
        ({"ship_by": "2000-01-01T00:00:00Z"}, None),
    ],
)
def test_order_fields_are_validated(
    client: TestClient,
    keys: Keys,
    wallets: Wallets,
    runtime: Runtime,
    patch: dict[str, Any],
    field: str | None,
) -> None:
    body = {
        "order_ref": "SO-V",
        "buyer": wallets.buyer.address,
        "amount": "100",
        "currency": "tUSD",
        "destination_country": "DE",
        "goods_category": "apparel",
        **patch,
    }
    before = counts(runtime)
    problem = assert_problem(client.post("/v1/orders", json=body, headers=auth(keys.merchant)), 422)
    if field is not None:
        assert any(field in e["field"] for e in problem["errors"]), problem
    assert counts(runtime) == before


def test_duplicate_order_ref_is_409(client: TestClient, keys: Keys, wallets: Wallets) -> None:
    new_order(client, keys, wallets, ref="SO-DUP")
    resp = client.post(
        "/v1/orders",
        json={
            "order_ref": "SO-DUP",
            "buyer": wallets.buyer.address,
            "amount": "5",
            "currency": "tUSD",
            "destination_country": "DE",
            "goods_category": "apparel",
        },
        headers=auth(keys.merchant),
    )
    assert_problem(resp, 409, "order_exists")


def test_malformed_epcis_is_refused_and_not_stored(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    before = counts(runtime)
    bad_bodies = [
        b"not json",
        b"[]",
        json.dumps({"type": "EPCISDocument", "epcisBody": {}}).encode(),
        json.dumps({"type": "EPCISQueryDocument", "epcisBody": {"eventList": []}}).encode(),
        json.dumps(
            {
                "type": "EPCISDocument",
                "epcisBody": {"eventList": [{"type": "ObjectEvent", "eventTime": "yesterday"}]},
            }
        ).encode(),
        b"[" * 100_000 + b"]" * 100_000,  # deeper than any parser should recurse
    ]
    for body in bad_bodies:
        resp = client.post(
            "/v1/epcis/capture",
            content=body,
            headers={**auth(keys.oracle), "Content-Type": "application/json"},
        )
        assert 400 <= resp.status_code < 500, (body[:40], resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert counts(runtime) == before


def test_epcis_capture_needs_an_oracle(client: TestClient, keys: Keys, runtime: Runtime) -> None:
    doc = {"type": "EPCISDocument", "schemaVersion": "2.0", "epcisBody": {"eventList": []}}
    assert_problem(client.post("/v1/epcis/capture", json=doc, headers=auth(keys.merchant)), 403)


def _aftership_body() -> bytes:
    return json.dumps(
        {
            "event": "tracking_update",
            "event_id": "evt-1",
            "ts": 1_700_000_000,
            "msg": {"tracking_number": "1Z999", "slug": "ups", "tag": "Delivered", "checkpoints": []},
        }
    ).encode()


def test_bad_webhook_signature_is_401_and_not_stored(client: TestClient, runtime: Runtime) -> None:
    body = _aftership_body()
    before = counts(runtime)
    wrong = base64.b64encode(hmac.digest(b"wrong-secret", body, "sha256")).decode()
    assert_problem(
        client.post(
            "/v1/carriers/aftership/webhooks", content=body, headers={"aftership-hmac-sha256": wrong}
        ),
        401,
        "bad_signature",
    )
    assert_problem(client.post("/v1/carriers/aftership/webhooks", content=body), 401, "bad_signature")
    assert_problem(
        client.post(
            "/v1/carriers/easypost/webhooks", content=body, headers={"X-Hmac-Signature": "hmac-sha256-hex=00"}
        ),
        401,
    )
    assert_problem(client.post("/v1/carriers/fedex/webhooks", content=body), 422)
    assert counts(runtime) == before


def test_signed_webhook_is_stored_once(client: TestClient, runtime: Runtime) -> None:
    body = _aftership_body()
    good = base64.b64encode(hmac.digest(b"aftership-test-secret", body, "sha256")).decode()
    first = client.post(
        "/v1/carriers/aftership/webhooks", content=body, headers={"aftership-hmac-sha256": good}
    )
    assert first.status_code == 202, first.text
    again = client.post(
        "/v1/carriers/aftership/webhooks", content=body, headers={"aftership-hmac-sha256": good}
    )
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["capture_id"] == first.json()["capture_id"]
    with runtime.db() as s:
        item = s.scalars(select(InboxItem)).one()
        assert item.raw == body and item.raw_sha256 == hashlib.sha256(body).hexdigest()


def test_oversized_upload_is_413(client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime) -> None:
    created = new_order(client, keys, wallets)
    oid = created["order"]["id"]
    before = counts(runtime)
    big = b"x" * (runtime.settings.max_upload_bytes + 1)
    resp = client.post(
        f"/v1/orders/{oid}/evidence",
        files={"file": ("big.bin", big, "application/octet-stream")},
        data={"signature": "0x" + "11" * 65, "valid_until": "1"},
        headers=auth(keys.buyer),
    )
    assert_problem(resp, 413, "too_large")
    big_json = b'{"order_ref": "' + b"a" * (runtime.settings.max_body_bytes + 1) + b'"}'
    resp = client.post(
        "/v1/orders", content=big_json, headers={**auth(keys.merchant), "Content-Type": "application/json"}
    )
    assert_problem(resp, 413, "too_large")
    assert counts(runtime) == before


def test_idempotency_key_replays_and_refuses_another_body(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    body = {
        "order_ref": "SO-IDEM",
        "buyer": wallets.buyer.address,
        "amount": "7",
        "currency": "tUSD",
        "destination_country": "DE",
        "goods_category": "apparel",
    }
    headers = auth(keys.merchant, "idem-key-1")
    first = client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == 201
    again = client.post("/v1/orders", json=body, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    before = counts(runtime)
    other = client.post("/v1/orders", json={**body, "amount": "8"}, headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    assert counts(runtime) == before


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/v1/nope"), 404)
    assert_problem(client.delete("/v1/chain"), 405)


def test_signed_event_of_an_unused_kind_is_kept_and_acknowledged(
    client: TestClient, runtime: Runtime
) -> None:
    body = json.dumps(
        {"event": "tracking_created", "event_id": "evt-9", "msg": {"tracking_number": "1Z1"}}
    ).encode()
    good = base64.b64encode(hmac.digest(b"aftership-test-secret", body, "sha256")).decode()
    resp = client.post(
        "/v1/carriers/aftership/webhooks", content=body, headers={"aftership-hmac-sha256": good}
    )
    assert resp.status_code == 202 and resp.json()["status"] == "ignored", resp.text
    with runtime.db() as s:
        item = s.scalars(select(InboxItem)).one()
        assert item.raw == body and item.status == "ignored" and item.outcome and "ignored" in item.outcome


def test_idempotency_never_stores_a_secret_and_needs_a_valid_key(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    headers = auth(keys.admin, "make-merchant-1")
    body = {"role": "merchant", "address": wallets.merchant.address}
    first = client.post("/v1/principals", json=body, headers=headers)
    assert first.status_code == 201 and first.json()["api_key"].startswith("tg_merchant_")
    again = client.post("/v1/principals", json=body, headers=headers)
    assert_problem(again, 409, "idempotent_replay_withheld")
    with runtime.db() as s:
        stored = s.scalars(select(IdempotencyRecord)).all()
        assert all(r.response_body is None or b"tg_merchant_" not in r.response_body for r in stored)
    # a request with an unknown API key is not recorded at all (and is a 401)
    assert_problem(client.post("/v1/principals", json=body, headers=auth("nope", "make-merchant-1")), 401)


def test_a_disabled_principal_is_locked_out(client: TestClient, keys: Keys) -> None:
    me = client.get("/v1/principals/me", headers=auth(keys.other_merchant)).json()
    assert_problem(client.post(f"/v1/principals/{me['id']}/disable", headers=auth(keys.merchant)), 403)
    resp = client.post(f"/v1/principals/{me['id']}/disable", headers=auth(keys.admin))
    assert resp.status_code == 200, resp.text
    assert_problem(client.get("/v1/orders", headers=auth(keys.other_merchant)), 401)
    assert_problem(client.post("/v1/principals/pr_nope/disable", headers=auth(keys.admin)), 404)


def test_webhook_urls_to_internal_addresses_are_refused_outside_dev(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    from app.services.outbox import webhooks

    assert webhooks.private_address_refusal("http://127.0.0.1:8080/hook") is not None
    assert webhooks.private_address_refusal("http://169.254.169.254/latest") is not None
    assert webhooks.private_address_refusal("http://10.1.2.3/x") is not None
