"""An ``Idempotency-Key`` nobody holds is claimed by the request's own first write transaction (one write
transaction less per POST, issue 8); a key with a record goes through the full claim as before. A request
that writes nothing, or whose write is refused, still leaves its answer under the key for a retry."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.client.demo import Wallets
from app.db.models import IdempotencyRecord, Principal, utcnow
from app.db.session import transaction, write
from app.domain.order_state import Decision
from app.errors import IdempotencyConflict, NotFound
from app.services import idempotency, principals
from app.services.runtime import Runtime
from app.services.trade import orders
from tests.api.conftest import Keys, assert_problem, auth
from tests.api.test_order_rules import body as order_body


def write_counts(client: TestClient) -> dict[str, float]:
    """Write transactions so far by the function that opened them (``/metrics``, hold phase)."""
    out: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("tradeguard_db_write_seconds_count{") and 'phase="hold"' in line:
            site = line.split('site="', 1)[1].split('"', 1)[0]
            out[site] = float(line.rsplit(" ", 1)[1])
    return out


def grown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def body(wallets: Wallets, ref: str) -> dict[str, Any]:
    return order_body(wallets, order_ref=ref)


def record(runtime: Runtime, key: str) -> IdempotencyRecord | None:
    with runtime.db() as s:
        return s.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == key))


def test_a_new_key_is_claimed_in_the_requests_own_write(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    key = uuid.uuid4().hex
    before = write_counts(client)
    made = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-1"), headers=auth(keys.merchant, key))
    assert made.status_code == 201, made.text
    writes = grown(before, write_counts(client))
    # the order's own write and the kept answer: no separate claim
    assert "app.services.idempotency.claim" not in writes, writes
    assert writes.get("app.services.trade.orders.create") == 1, writes
    assert writes.get("app.services.idempotency.finish") == 1, writes
    kept = record(runtime, key)
    assert kept is not None and kept.status_code == 201 and kept.response_body == made.content
    again = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-1"), headers=auth(keys.merchant, key))
    assert (again.status_code, again.content) == (201, made.content)
    assert again.headers["idempotent-replayed"] == "true"


def test_a_refusal_that_wrote_nothing_is_kept_under_its_key_and_replayed(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    first = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-2"), headers=auth(keys.merchant))
    assert first.status_code == 201, first.text
    key = uuid.uuid4().hex
    taken = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-2"), headers=auth(keys.merchant, key))
    problem = assert_problem(taken, 409, "order_exists")
    kept = record(runtime, key)
    assert kept is not None and kept.status_code == 409
    again = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-2"), headers=auth(keys.merchant, key))
    assert again.headers["idempotent-replayed"] == "true"
    assert (again.status_code, again.json()["code"]) == (409, problem["code"])
    other = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-3"), headers=auth(keys.merchant, key))
    assert_problem(other, 422, "idempotency_key_reused")


def test_a_key_with_a_record_is_claimed_as_before(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime
) -> None:
    """A retry of an unanswered request (its record in flight past the lease: the first attempt died) takes
    the key over through the full claim, and its answer is kept."""
    key = uuid.uuid4().hex
    made = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-4"), headers=auth(keys.merchant, key))
    assert made.status_code == 201
    with runtime.db() as s, s.begin():
        row = s.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == key))
        assert row is not None
        row.status_code = row.response_body = row.content_type = None  # as if the first attempt died
        row.created_at = row.created_at.replace(year=row.created_at.year - 1)
    before = write_counts(client)
    retried = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-5"), headers=auth(keys.merchant, key))
    assert_problem(retried, 422, "idempotency_key_reused")  # another body: refused, not taken over
    assert "app.services.idempotency.claim" in grown(before, write_counts(client))
    same = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-4"), headers=auth(keys.merchant, key))
    assert_problem(same, 409, "order_exists")  # taken over; the order was made by the first attempt
    kept = record(runtime, key)
    assert kept is not None and kept.status_code == 409


def test_a_twin_that_claimed_the_key_first_fails_the_requests_write_and_keeps_its_record(
    keys: Keys, runtime: Runtime
) -> None:
    """The key was free when the request looked, and a twin request claimed it before the request's first
    write: that write is refused as a whole (409 in flight), and the twin's record is left alone."""
    with runtime.db() as s:
        owner = s.scalars(select(Principal.id)).first()
    assert owner is not None
    key = uuid.uuid4().hex
    assert not idempotency.recorded(runtime, owner, key)
    mine = idempotency.DeferredClaim(runtime, owner, key, "a" * 64, "POST", "/v1/orders")
    twin = idempotency.DeferredClaim(runtime, owner, key, "a" * 64, "POST", "/v1/orders")
    with twin.carried():
        write(runtime.db, lambda s: None)
    assert twin.made and idempotency.recorded(runtime, owner, key)

    def own_data(s: Any) -> None:
        s.add(
            IdempotencyRecord(
                principal_id=owner,
                key="own-" + key,
                request_hash="b" * 64,
                method="POST",
                path="/x",
                expires_at=utcnow(),
            )
        )

    with mine.carried():
        try:
            write(runtime.db, own_data)
        except IdempotencyConflict as exc:
            assert exc.code == "idempotency_key_in_flight"
        else:
            raise AssertionError("the write went through")
    assert mine.refused and not mine.made
    idempotency.finish(runtime, owner, key, 409, "application/problem+json", b"{}", mine)
    # a request that wrote nothing and found the key held when it answers: the twin's record is left alone
    idle = idempotency.DeferredClaim(runtime, owner, key, "a" * 64, "POST", "/v1/orders")
    idempotency.finish(runtime, owner, key, 422, "application/problem+json", b"{}", idle)
    with transaction(runtime.db) as s:
        kept = s.get(IdempotencyRecord, (owner, key))
        assert kept is not None and kept.status_code is None  # the twin's, still in flight, untouched
        assert s.get(IdempotencyRecord, (owner, "own-" + key)) is None  # nothing of the refused write


def test_the_reads_before_a_signed_action_take_no_write_lock(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    """A buyer decision, an evidence submission and a ruling look the order up before they check the
    signature and the chain: a read transaction, not a write (which would queue on SQLite's write lock)."""
    missing = "0x" + "ee" * 32
    buyer = principals.resolve(runtime.db, keys.buyer)
    arbitrator = principals.resolve(runtime.db, keys.arbitrator)
    before = write_counts(client)
    calls = [
        lambda: orders.buyer_decision(runtime, buyer, missing, Decision.OPEN_DISPUTE, b"", 0, bytes(32)),
        lambda: orders.add_evidence(
            runtime,
            buyer,
            missing,
            filename="f",
            content_type="text/plain",
            data=b"x",
            signature=b"",
            valid_until=0,
        ),
        lambda: orders.rule(runtime, arbitrator, missing, 5_000, bytes(32), 0, b""),
    ]
    for call in calls:
        try:
            call()
        except NotFound:
            pass
        else:
            raise AssertionError("an order that does not exist was found")
    opened = grown(before, write_counts(client))
    assert not [site for site in opened if site.startswith("app.services.trade.orders")], opened


def test_only_posts_whose_effects_are_writes_defer_their_claim(
    client: TestClient, keys: Keys, runtime: Runtime
) -> None:
    """The dev faucet sends a transaction and writes nothing: its key is claimed before it runs, so that a
    twin sent meanwhile is refused before it mints again."""
    assert idempotency.deferrable("POST", "/v1/orders")
    assert idempotency.deferrable("POST", "/v1/orders/0xab/funding")
    assert idempotency.deferrable("POST", "/v1/epcis/capture")
    assert not idempotency.deferrable("POST", "/v1/dev/faucet")
    assert not idempotency.deferrable("POST", "/v1/orders/0xab/funding/x")
    assert not idempotency.deferrable("PUT", "/v1/orders")
    before = write_counts(client)
    key = uuid.uuid4().hex
    resp = client.post(
        "/v1/dev/faucet",
        json={"address": "0x" + "cd" * 20, "amount": "1"},
        headers=auth(keys.admin, key),
    )
    writes = grown(before, write_counts(client))
    assert writes.get("app.services.idempotency.claim") == 1, (resp.status_code, resp.text, writes)
    kept = record(runtime, key)
    assert kept is not None and kept.status_code == resp.status_code


def test_a_5xx_after_the_claim_was_made_frees_the_key(
    client: TestClient, keys: Keys, wallets: Wallets, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order was written (and the claim with it), then the answer failed: the record is deleted, so the
    client's retry runs again instead of being told the key is in flight."""
    key = uuid.uuid4().hex

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the answer could not be built")

    monkeypatch.setattr(orders, "public", broken)
    failed = client.post("/v1/orders", json=body(wallets, "IDEM-CLAIM-500"), headers=auth(keys.merchant, key))
    assert failed.status_code == 500
    assert record(runtime, key) is None
    monkeypatch.undo()
    retried = client.post(
        "/v1/orders", json=body(wallets, "IDEM-CLAIM-500"), headers=auth(keys.merchant, key)
    )
    assert_problem(retried, 409, "order_exists")  # it ran again: the first attempt's order is there
    assert "idempotent-replayed" not in retried.headers
