"""confirmReceipt(): the buyer releases a shipped or delivered order at once; every revert path."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.chain.escrow import ZERO_HASH
from app.domain.ids import content_hash
from app.domain.money import release_split
from app.domain.order_state import OrderState, Status
from tests.factories import DAY, OrderFactory, reverts

EVIDENCE = content_hash(b"unboxing video")


@pytest.mark.parametrize("status", [Status.SHIPPED, Status.DELIVERED])
def test_buyer_confirms_and_order_is_released_with_exact_split(factory: OrderFactory, status: Status) -> None:
    a = factory.actors
    order = factory.in_status(status, amount=55_555_557)
    res = factory.escrow.confirm_receipt(order, a.buyer, EVIDENCE)

    assert [e.name for e in res.events if e.address == factory.escrow.address] == [
        "ReceiptConfirmed",
        "OrderReleased",
    ]
    assert res.named("ReceiptConfirmed")[0].args == {"orderId": order.order_id, "evidenceHash": EVIDENCE}
    split = release_split(55_555_557, 200, 1000)
    released = res.named("OrderReleased")[0].args
    assert OrderState.unpack(released["state"]) == order.decoded.with_status(Status.RELEASED)
    assert (released["commission"], released["tax"], released["sellerNet"]) == (
        split.commission,
        split.tax,
        split.seller_net,
    )
    token = factory.token.address
    assert factory.escrow.credit(token, a.seller.address) == split.seller_net
    assert factory.escrow.credit(token, a.treasury.address) == split.commission
    assert factory.escrow.credit(token, a.tax.address) == split.tax
    assert factory.current(order).status == Status.RELEASED


def test_buyer_confirms_without_evidence_after_release_at(factory: OrderFactory) -> None:
    order = factory.in_status(Status.DELIVERED)
    factory.chain.advance_time(10 * DAY)
    res = factory.escrow.confirm_receipt(order, factory.actors.buyer, ZERO_HASH)
    assert res.named("ReceiptConfirmed")[0].args["evidenceHash"] == ZERO_HASH
    assert factory.current(order).status == Status.RELEASED


@pytest.mark.parametrize("caller", ["seller", "stranger", "relayer", "oracle1", "arbitrator"])
def test_reverts_when_caller_is_not_the_buyer(factory: OrderFactory, caller: str) -> None:
    account = getattr(factory.actors, caller)
    order = factory.in_status(Status.DELIVERED)
    with reverts("Unauthorized", caller=account.address):
        factory.escrow.confirm_receipt(order, account)


def test_reverts_when_caller_passes_itself_as_buyer(factory: OrderFactory) -> None:
    stranger = factory.actors.stranger
    order = factory.in_status(Status.DELIVERED)
    forged = replace(order, terms=replace(order.terms, buyer=stranger.address))
    # escrow v2: the buyer is part of the order's storage key, so a forged buyer finds no order at all
    with reverts("UnknownOrder", orderId=order.order_id):
        factory.escrow.confirm_receipt(forged, stranger)


def test_reverts_when_order_unknown(factory: OrderFactory) -> None:
    order = factory.in_status(Status.DELIVERED)
    ghost = replace(order, order_id=b"\x01" * 32)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.confirm_receipt(ghost, factory.actors.buyer)


def test_reverts_when_state_is_stale(factory: OrderFactory) -> None:
    shipped = factory.in_status(Status.SHIPPED)
    factory.deliver(shipped)
    with reverts("OrderDataMismatch", orderId=shipped.order_id):
        factory.escrow.confirm_receipt(shipped, factory.actors.buyer)


@pytest.mark.parametrize(
    "status", [Status.FUNDED, Status.DISPUTED, Status.RELEASED, Status.REFUNDED, Status.RESOLVED]
)
def test_reverts_when_status_invalid(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        factory.escrow.confirm_receipt(order, factory.actors.buyer)


@pytest.mark.parametrize("status", [Status.SHIPPED, Status.DELIVERED])
def test_reverts_when_frozen_and_confirms_once_the_freeze_ends(factory: OrderFactory, status: Status) -> None:
    a = factory.actors
    order = factory.in_status(status)
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"aml"))
    order = factory.current(order)
    until = order.decoded.frozen_until
    factory.chain.set_next_block_time(until - 1)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=until):
        factory.escrow.confirm_receipt(order, a.buyer)
    factory.chain.set_next_block_time(until)
    factory.escrow.confirm_receipt(order, a.buyer)
    assert factory.current(order).status == Status.RELEASED
