"""The inbox worker processes stored captures several to a write transaction (one disk sync for them all, the
document parsed and the attestations signed outside the write lock), each in its own savepoint: an item that
fails rolls back alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from app.chain.messages import DeliveryAttestation
from app.client.demo import epcis_document, object_event
from app.db.models import InboxItem, Intent, LogisticsEvent
from app.db.session import read_transaction
from app.services.inbox import ingestion
from app.services.runtime import Runtime
from tests.services.test_order_gateway import _oracle_principal, fund
from tests.services.test_relayer_support import Svc, hex32, write_sites


def _captures(rt: Runtime, svc: Svc, n: int) -> list[str]:
    """``n`` funded orders (indexed), each named by one stored shipping capture; the captures' ids."""
    oracle = _oracle_principal(rt)
    ids = []
    for _ in range(n):
        order = fund(svc)
        svc.project(order)
        names = [{"type": "po", "bizTransaction": hex32(order.order_id)}]
        doc = epcis_document(object_event(rt.chain.now(), "shipping", bizTransactionList=names))
        ids.append(ingestion.accept_epcis(rt, oracle, doc, "application/ld+json").item.id)
    return ids


def _item(rt: Runtime, item_id: str) -> InboxItem:
    with read_transaction(rt.db) as s:
        item = s.get(InboxItem, item_id)
        assert item is not None
        return item


def _count(rt: Runtime, model: Any, **where: Any) -> int:
    with read_transaction(rt.db) as s:
        q = select(func.count()).select_from(model)
        for column, value in where.items():
            q = q.where(getattr(model, column) == value)
        return int(s.scalar(q) or 0)


@pytest.mark.parametrize(
    ("hold", "transactions"),
    [(60.0, 1), (0.0, 3)],  # however slow the machine / every item is past it: the rest to the next one
    ids=["one-transaction", "past-the-hold-time"],
)
def test_captures_share_a_write_transaction_until_it_has_held_the_lock_long_enough(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, hold: float, transactions: int
) -> None:
    monkeypatch.setattr(ingestion, "PROCESS_HOLD_SECONDS", hold)
    svc = Svc(runtime)
    ids = _captures(runtime, svc, 3)

    with write_sites() as sites:
        report = ingestion.process_pending(runtime)

    assert (report.processed, report.intents, report.failed) == (3, 3, [])
    assert sites.count("app.services.inbox.ingestion.process_pending") == transactions, sites
    for item_id in ids:
        item = _item(runtime, item_id)
        assert item.status == "processed" and item.outcome is not None
        assert len(item.outcome["intents"]) == 1
    assert _count(runtime, Intent, kind="attest") == 3


def test_an_item_that_fails_rolls_back_alone(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = Svc(runtime)
    first, bad, last = _captures(runtime, svc, 3)
    real = ingestion._process_item

    def failing(rt: Runtime, session: Any, item: InboxItem, *args: Any) -> dict[str, Any]:
        outcome = real(rt, session, item, *args)  # its rows are written, then it fails: all must go
        if item.id == bad:
            raise RuntimeError("disk hiccup on this item")
        return outcome

    monkeypatch.setattr(ingestion, "_process_item", failing)
    report = ingestion.process_pending(runtime)

    assert (report.processed, report.intents, report.failed) == (2, 2, [bad])
    assert _item(runtime, first).status == _item(runtime, last).status == "processed"
    failed = _item(runtime, bad)
    assert failed.status == "received" and failed.attempts == 1  # retried by a later sweep
    assert failed.error == "RuntimeError: disk hiccup on this item"
    assert _count(runtime, LogisticsEvent, inbox_id=bad) == 0  # nothing of it was kept
    assert _count(runtime, Intent, kind="attest") == 2

    monkeypatch.setattr(ingestion, "_process_item", real)
    again = ingestion.process_pending(runtime)
    assert (again.processed, again.intents, again.failed) == (1, 1, [])
    assert _item(runtime, bad).status == "processed"
    assert _count(runtime, LogisticsEvent, inbox_id=bad) == 1


def _signed_inside(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each oracle signature the inbox makes from now on: whether a write transaction of the inbox was
    open at the time."""
    inside = [False]
    seen: list[bool] = []
    real_transaction, real_sign = ingestion.transaction, runtime.escrow.sign

    @contextmanager
    def transaction(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with real_transaction(*args, **kwargs) as s:
            inside[0] = True
            try:
                yield s
            finally:
                inside[0] = False

    def sign(key: Any, message: Any) -> bytes:
        seen.append(inside[0])
        return real_sign(key, message)

    monkeypatch.setattr(ingestion, "transaction", transaction)
    monkeypatch.setattr(runtime.escrow, "sign", sign)
    return seen


def _attest_signers(runtime: Runtime) -> list[str]:
    """Who signed each queued attestation, recovered from its intent's payload."""
    with read_transaction(runtime.db) as s:
        payloads = list(s.scalars(select(Intent.payload).where(Intent.kind == "attest")))
    escrow = runtime.escrow
    return [
        DeliveryAttestation.from_payload(p).recover(
            bytes.fromhex(p["signature"][2:]), runtime.chain.chain_id, escrow.address
        )
        for p in payloads
    ]


def test_attestations_are_signed_before_the_write_transaction(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Svc(runtime)
    _captures(runtime, svc, 3)
    signed_inside = _signed_inside(runtime, monkeypatch)

    report = ingestion.process_pending(runtime)

    assert (report.processed, report.intents, report.failed) == (3, 3, [])
    assert signed_inside == [False, False, False]  # and once each, however the batch was cut
    assert runtime.oracle is not None
    assert _attest_signers(runtime) == [runtime.oracle.address] * 3


def test_a_fact_whose_order_moved_since_the_read_is_signed_as_it_stands(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signature made before the transaction serves only the very message built inside it: here the
    view's are dropped (as if every order had changed meanwhile), and each is signed in the transaction."""
    svc = Svc(runtime)
    _captures(runtime, svc, 2)
    signed_inside = _signed_inside(runtime, monkeypatch)
    real_view = ingestion._chain_view

    def stale_view(rt: Runtime, parsed: Any, signed: Any = None) -> Any:
        view = real_view(rt, parsed, signed)
        view.signed.clear()
        return view

    monkeypatch.setattr(ingestion, "_chain_view", stale_view)
    report = ingestion.process_pending(runtime)

    assert (report.processed, report.intents) == (2, 2)
    assert signed_inside.count(True) == 2  # each made inside; those made before were not used
    assert runtime.oracle is not None
    assert _attest_signers(runtime) == [runtime.oracle.address] * 2
