"""openDispute(): the buyer's dispute window in each status, ERC-1497 events, every revert path."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.chain.escrow import ZERO_HASH, Order
from app.domain.ids import content_hash
from app.domain.order_state import OrderState, Status
from tests.factories import DAY, OrderFactory, reverts

EVIDENCE = content_hash(b"photo of the damaged parcel")


def _deadline(order: Order) -> int:
    """The last second (FUNDED, SHIPPED) or the first refused second (DELIVERED) of the window."""
    if order.status == Status.FUNDED:
        return order.terms.ship_by
    if order.status == Status.SHIPPED:
        return order.terms.deliver_by
    release_at = order.decoded.release_at
    assert release_at is not None
    return release_at


# ------------------------------------------------------------------ success paths


@pytest.mark.parametrize("status", [Status.FUNDED, Status.SHIPPED, Status.DELIVERED])
def test_buyer_opens_dispute(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    t = factory.chain.now() + 50
    factory.chain.set_next_block_time(t)
    res = factory.escrow.open_dispute(order, factory.actors.buyer, EVIDENCE)

    # Platform arbitration: DisputeOpened only. ERC-1497 Dispute/Evidence are for an ERC-792 arbitrator's
    # readers (SPEC §4.1), emitted for such orders only (forge: EscrowV2.t.sol, tests/api/test_erc792.py).
    assert [e.name for e in res.events] == ["DisputeOpened"]
    (opened,) = res.named("DisputeOpened")
    assert opened.args["orderId"] == order.order_id
    assert opened.args["evidenceHash"] == EVIDENCE
    assert OrderState.unpack(opened.args["state"]) == OrderState(Status.DISPUTED, anchor=t)
    assert factory.current(order).decoded.disputed_at == t


def test_dispute_without_evidence(factory: OrderFactory) -> None:
    order = factory.fund()
    res = factory.escrow.open_dispute(order, factory.actors.buyer, ZERO_HASH)
    assert [e.name for e in res.events] == ["DisputeOpened"]
    assert res.named("DisputeOpened")[0].args["evidenceHash"] == ZERO_HASH


def test_order_locks_the_current_meta_evidence_id(factory: OrderFactory) -> None:
    factory.admin("setMetaEvidence", "ipfs://tradeguard/meta-evidence/v2.json")
    order = factory.fund()
    assert order.terms.meta_evidence_id == 1
    factory.escrow.open_dispute(order, factory.actors.buyer, EVIDENCE)  # the order's commitment holds it


def test_dispute_opened_while_frozen_starts_its_timers_after_the_freeze(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"kyc"))
    order = factory.current(order)
    factory.escrow.open_dispute(order, a.buyer, EVIDENCE)
    assert factory.current(order).decoded.disputed_at == order.decoded.frozen_until


# ------------------------------------------------------------------ window edges


@pytest.mark.parametrize("status", [Status.FUNDED, Status.SHIPPED])
def test_opens_at_exactly_the_deadline(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    factory.chain.set_next_block_time(_deadline(order))
    factory.escrow.open_dispute(order, factory.actors.buyer, EVIDENCE)
    assert factory.current(order).status == Status.DISPUTED


@pytest.mark.parametrize("status", [Status.FUNDED, Status.SHIPPED])
def test_reverts_one_second_after_the_deadline(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    deadline = _deadline(order)
    factory.chain.set_next_block_time(deadline + 1)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=deadline):
        factory.escrow.open_dispute(order, factory.actors.buyer, EVIDENCE)


def test_delivered_opens_one_second_before_release_at(factory: OrderFactory) -> None:
    order = factory.in_status(Status.DELIVERED)
    factory.chain.set_next_block_time(_deadline(order) - 1)
    factory.escrow.open_dispute(order, factory.actors.buyer, EVIDENCE)
    assert factory.current(order).status == Status.DISPUTED


def test_reverts_when_delivered_at_release_at(factory: OrderFactory) -> None:
    order = factory.in_status(Status.DELIVERED)
    release_at = _deadline(order)
    factory.chain.set_next_block_time(release_at)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=release_at):
        factory.escrow.open_dispute(order, factory.actors.buyer, EVIDENCE)


@pytest.mark.parametrize("status", [Status.FUNDED, Status.SHIPPED, Status.DELIVERED])
def test_window_extends_by_frozen_seconds(factory: OrderFactory, status: Status) -> None:
    a = factory.actors
    order = factory.in_status(status)
    factory.escrow.freeze(order, a.regulator, 2 * DAY, content_hash(b"hold"))
    order = factory.current(order)
    deadline = _deadline(order) if status == Status.DELIVERED else _deadline(order) + 2 * DAY
    refused = deadline if status == Status.DELIVERED else deadline + 1
    factory.chain.set_next_block_time(refused)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=deadline):
        factory.escrow.open_dispute(order, a.buyer, EVIDENCE)


# ------------------------------------------------------------------ other reverts


@pytest.mark.parametrize("status", [Status.DISPUTED, Status.RELEASED, Status.REFUNDED, Status.RESOLVED])
def test_reverts_when_status_invalid(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        factory.escrow.open_dispute(order, factory.actors.buyer, EVIDENCE)


@pytest.mark.parametrize("caller", ["seller", "stranger", "relayer", "arbitrator"])
def test_reverts_when_caller_is_not_the_buyer(factory: OrderFactory, caller: str) -> None:
    account = getattr(factory.actors, caller)
    order = factory.fund()
    with reverts("Unauthorized", caller=account.address):
        factory.escrow.open_dispute(order, account, EVIDENCE)


def test_reverts_when_order_unknown(factory: OrderFactory) -> None:
    order = factory.fund()
    ghost = replace(order, order_id=b"\x02" * 32)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.open_dispute(ghost, factory.actors.buyer, EVIDENCE)


def test_reverts_when_terms_do_not_match(factory: OrderFactory) -> None:
    order = factory.fund()
    wrong = replace(order, terms=replace(order.terms, ship_by=order.terms.ship_by + DAY))
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.open_dispute(wrong, factory.actors.buyer, EVIDENCE)
