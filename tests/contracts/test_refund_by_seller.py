"""refundBySeller(): the merchant gives an order up in any non-final status; every revert path."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.domain.ids import content_hash
from app.domain.order_state import RefundReason, Status
from tests.factories import DAY, OrderFactory, reverts

OPEN = [Status.FUNDED, Status.SHIPPED, Status.DELIVERED, Status.DISPUTED]
FINAL = [Status.RELEASED, Status.REFUNDED, Status.RESOLVED]


@pytest.mark.parametrize("status", OPEN)
def test_refunds_buyer_in_full_from_every_open_status(factory: OrderFactory, status: Status) -> None:
    a = factory.actors
    order = factory.in_status(status, amount=123_456_789)
    res = factory.escrow.refund_by_seller(order, a.seller)

    refunded_state = order.decoded.with_status(Status.REFUNDED).pack()
    assert [e.name for e in res.events] == ["OrderRefunded"]
    assert res.events[0].args == {
        "orderId": order.order_id,
        "state": refunded_state,
        "reason": RefundReason.SELLER_REFUND,
    }
    token = factory.token.address
    assert factory.escrow.credit(token, a.buyer.address) == 123_456_789
    for payee in (a.seller, a.treasury, a.tax):  # a refund charges neither commission nor tax
        assert factory.escrow.credit(token, payee.address) == 0
    assert factory.balance(factory.escrow.address) == 123_456_789
    assert factory.current(order).state == refunded_state


def test_refunds_delivered_order_after_release_at_while_not_yet_released(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DELIVERED)
    factory.chain.advance_time(order.terms.hold_seconds + DAY)
    factory.escrow.refund_by_seller(order, a.seller)
    assert factory.current(order).status == Status.REFUNDED


def test_refunds_funded_order_after_ship_by(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    factory.chain.set_next_block_time(order.terms.ship_by + 1)
    factory.escrow.refund_by_seller(order, a.seller)
    assert factory.escrow.credit(factory.token.address, a.buyer.address) == order.terms.amount


def test_refunds_disputed_order_after_arbitration_deadline(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DISPUTED)
    factory.chain.advance_time(order.terms.arbitration_seconds + DAY)
    factory.escrow.refund_by_seller(order, a.seller)
    assert factory.current(order).status == Status.REFUNDED


def test_refund_keeps_freeze_fields_after_the_freeze_ran_out(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"kyc"))
    order = factory.current(order)
    factory.chain.set_next_block_time(order.decoded.frozen_until)
    res = factory.escrow.refund_by_seller(order, a.seller)
    (ev,) = res.named("OrderRefunded")
    assert ev.args["state"] == order.decoded.with_status(Status.REFUNDED).pack()


@pytest.mark.parametrize(
    "caller", ["buyer", "stranger", "relayer", "admin", "arbitrator", "regulator", "seller2"]
)
def test_reverts_when_caller_is_not_the_seller(factory: OrderFactory, caller: str) -> None:
    order = factory.in_status(Status.DISPUTED)
    acct = getattr(factory.actors, caller)
    with reverts("Unauthorized", caller=acct.address):
        factory.escrow.refund_by_seller(order, acct)


@pytest.mark.parametrize("status", OPEN)
def test_reverts_for_the_buyer_in_every_open_status(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    with reverts("Unauthorized", caller=factory.actors.buyer.address):
        factory.escrow.refund_by_seller(order, factory.actors.buyer)


@pytest.mark.parametrize("status", FINAL)
def test_reverts_when_order_is_final(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        factory.escrow.refund_by_seller(order, factory.actors.seller)


@pytest.mark.parametrize("status", FINAL)
def test_unauthorized_is_checked_before_final_status(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    with reverts("Unauthorized", caller=factory.actors.stranger.address):
        factory.escrow.refund_by_seller(order, factory.actors.stranger)


def test_refund_cannot_run_twice(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    factory.escrow.refund_by_seller(order, a.seller)
    with reverts("OrderDataMismatch", orderId=order.order_id):  # the stale funded state
        factory.escrow.refund_by_seller(order, a.seller)
    with reverts("InvalidStatus", orderId=order.order_id, status=Status.REFUNDED):
        factory.escrow.refund_by_seller(factory.current(order), a.seller)
    assert factory.escrow.credit(factory.token.address, a.buyer.address) == order.terms.amount


@pytest.mark.parametrize("status", OPEN)
def test_reverts_when_frozen(factory: OrderFactory, status: Status) -> None:
    a = factory.actors
    order = factory.in_status(status)
    factory.escrow.freeze(order, a.regulator, 7 * DAY, content_hash(b"compliance"))
    order = factory.current(order)
    until = order.decoded.frozen_until
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=until):
        factory.escrow.refund_by_seller(order, a.seller)
    factory.chain.set_next_block_time(until - 1)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=until):
        factory.escrow.refund_by_seller(order, a.seller)
    factory.chain.set_next_block_time(until)  # frozen means now < frozenUntil
    factory.escrow.refund_by_seller(order, a.seller)
    assert factory.current(order).status == Status.REFUNDED


def test_unauthorized_is_checked_before_freeze(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"compliance"))
    with reverts("Unauthorized", caller=a.buyer.address):
        factory.escrow.refund_by_seller(factory.current(order), a.buyer)


def test_reverts_when_order_unknown(factory: OrderFactory) -> None:
    order = factory.fund()
    ghost = replace(order, order_id=b"\x07" * 32)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.refund_by_seller(ghost, factory.actors.seller)


def test_reverts_when_seller_is_forged_in_the_terms(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    forged = replace(order, terms=replace(order.terms, seller=a.stranger.address))
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.refund_by_seller(forged, a.stranger)


def test_refund_leaves_other_orders_alone(factory: OrderFactory) -> None:
    a = factory.actors
    mine = factory.fund(amount=1_000)
    other = factory.fund(buyer=a.buyer2, seller=a.seller2, amount=2_000)
    factory.escrow.refund_by_seller(mine, a.seller)
    token = factory.token.address
    assert factory.escrow.credit(token, a.buyer.address) == 1_000
    assert factory.escrow.credit(token, a.buyer2.address) == 0
    assert factory.current(other).status == Status.FUNDED
    with reverts("Unauthorized", caller=a.seller.address):
        factory.escrow.refund_by_seller(other, a.seller)
