"""Expired Idempotency-Key records (issue 10, item 6): removed by the keeper's sweep, not by the requests'
claims (which write their own row only); an expired key not purged yet is free again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.client.demo import Wallets
from app.db.models import IdempotencyRecord, utcnow
from app.services import idempotency
from app.services.runtime import Runtime
from tests.api.conftest import Keys, assert_problem, auth
from workers.tasks import sweep_all


def _order(wallets: Wallets, ref: str) -> dict[str, Any]:
    return {
        "order_ref": ref,
        "buyer": wallets.buyer.address,
        "amount": "1000000",
        "currency": "tUSD",
        "destination_country": "DE",
        "goods_category": "apparel",
    }


def _keys(rt: Runtime) -> set[str]:
    with rt.db() as s:
        return set(s.scalars(select(IdempotencyRecord.key)))


def _expire(rt: Runtime, *keys: str) -> None:
    """As if the TTL had passed for these keys (the wall clock cannot be moved)."""
    with rt.db() as s, s.begin():
        s.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key.in_(keys))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


def test_the_keeper_removes_expired_records_and_a_claim_does_not(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    for ref in ("IK-1", "IK-2"):
        resp = client.post("/v1/orders", json=_order(wallets, ref), headers=auth(keys.merchant, f"key-{ref}"))
        assert resp.status_code == 201, resp.text
    _expire(runtime, "key-IK-1")
    resp = client.post("/v1/orders", json=_order(wallets, "IK-3"), headers=auth(keys.merchant, "key-IK-3"))
    assert resp.status_code == 201, resp.text
    assert {"key-IK-1", "key-IK-2", "key-IK-3"} <= _keys(runtime)  # the claim left the expired row alone
    sweep_all()  # beat's next tick: the keeper's sweep purges
    remaining = _keys(runtime)
    assert "key-IK-1" not in remaining and {"key-IK-2", "key-IK-3"} <= remaining


def test_an_expired_key_not_purged_yet_is_free_again(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    first = client.post("/v1/orders", json=_order(wallets, "IK-A"), headers=auth(keys.merchant, "reused-key"))
    assert first.status_code == 201, first.text
    other = _order(wallets, "IK-B")
    assert_problem(
        client.post("/v1/orders", json=other, headers=auth(keys.merchant, "reused-key")),
        422,
        "idempotency_key_reused",
    )
    _expire(runtime, "reused-key")
    resp = client.post("/v1/orders", json=other, headers=auth(keys.merchant, "reused-key"))
    assert resp.status_code == 201 and "Idempotent-Replayed" not in resp.headers, resp.text
    assert resp.json()["order"]["order_ref"] == "IK-B"
    # the key now belongs to the second request, for a whole TTL again
    again = client.post("/v1/orders", json=other, headers=auth(keys.merchant, "reused-key"))
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == resp.json()


def test_a_purge_takes_a_bounded_batch(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    refs = [f"IB-{n}" for n in range(5)]
    for ref in refs:
        resp = client.post(
            "/v1/orders", json=_order(wallets, ref), headers=auth(keys.merchant, f"batch-{ref}")
        )
        assert resp.status_code == 201, resp.text
    _expire(runtime, *(f"batch-{ref}" for ref in refs))
    assert idempotency.purge_expired(runtime, limit=3) == 3
    assert idempotency.purge_expired(runtime, limit=3) == 2
    assert idempotency.purge_expired(runtime, limit=3) == 0
    assert not {f"batch-{ref}" for ref in refs} & _keys(runtime)
