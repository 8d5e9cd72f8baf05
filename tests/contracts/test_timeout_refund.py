"""timeoutRefund(): each RefundReason at its exact boundary, freezes extending deadlines, every revert path.

The README's default (section "Timers and defaults"), as tested here: an order funded but not shipped by
`shipBy`, shipped but not delivered by `deliverBy`, disputed with no seller evidence inside the response
window, or disputed and not ruled within the arbitration window can be refunded **in full to the buyer by
anyone**; a missed deadline charges no commission and no tax. A deadline `D` is still running at `D`
(DeadlineNotReached carrying `D`) and has passed at `D + 1`.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.chain.escrow import Order
from app.domain.ids import content_hash
from app.domain.money import refund_split
from app.domain.order_state import RefundReason, Status
from tests.factories import DAY, OrderFactory, reverts

REASON = content_hash(b"regulator case 17")


def _responded(factory: OrderFactory) -> Order:
    """A disputed order whose seller answered inside the response window."""
    order = factory.in_status(Status.DISPUTED)
    factory.escrow.submit_evidence(order, factory.actors.seller, content_hash(b"seller reply"))
    order = factory.current(order)
    assert order.decoded.responded
    return order


def _silent(factory: OrderFactory) -> Order:
    order = factory.in_status(Status.DISPUTED)
    assert not order.decoded.responded
    return order


def _deadline(order: Order, reason: RefundReason) -> int:
    """The deadline of ``reason`` for ``order``, freezes included."""
    d = order.decoded
    if reason == RefundReason.SHIP_TIMEOUT:
        return order.terms.ship_by + d.frozen_seconds
    if reason == RefundReason.DELIVERY_TIMEOUT:
        return order.terms.deliver_by + d.frozen_seconds
    assert d.disputed_at is not None
    if reason == RefundReason.RESPONSE_TIMEOUT:
        return d.disputed_at + order.terms.response_seconds
    return d.disputed_at + order.terms.arbitration_seconds


#: reason -> how to build an order for it
CASES = {
    RefundReason.SHIP_TIMEOUT: lambda f: f.in_status(Status.FUNDED),
    RefundReason.DELIVERY_TIMEOUT: lambda f: f.in_status(Status.SHIPPED),
    RefundReason.RESPONSE_TIMEOUT: _silent,
    RefundReason.ARBITRATION_TIMEOUT: _responded,
}
REASONS = list(CASES)
IDS = [r.name.lower() for r in REASONS]


# ------------------------------------------------------------------ the exact boundaries


@pytest.mark.parametrize("reason", REASONS, ids=IDS)
def test_reverts_at_exactly_the_deadline(factory: OrderFactory, reason: RefundReason) -> None:
    order = CASES[reason](factory)
    deadline = _deadline(order, reason)
    factory.chain.set_next_block_time(deadline)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=deadline):
        factory.escrow.timeout_refund(order, factory.actors.stranger)


@pytest.mark.parametrize("reason", REASONS, ids=IDS)
def test_refunds_buyer_in_full_one_second_after_the_deadline(
    factory: OrderFactory, reason: RefundReason
) -> None:
    """The README default: a missed deadline refunds the buyer in full, with no commission and no tax."""
    a = factory.actors
    order = CASES[reason](factory)
    deadline = _deadline(order, reason)
    factory.chain.set_next_block_time(deadline + 1)
    res = factory.escrow.timeout_refund(order, a.stranger)

    refunded_state = order.decoded.with_status(Status.REFUNDED).pack()
    assert [e.name for e in res.events] == ["OrderRefunded"]
    assert res.events[0].args == {"orderId": order.order_id, "state": refunded_state, "reason": reason}
    split = refund_split(order.terms.amount)
    token = factory.token.address
    assert factory.escrow.credit(token, a.buyer.address) == split.buyer_refund == order.terms.amount
    assert factory.escrow.credit(token, a.treasury.address) == split.commission == 0
    assert factory.escrow.credit(token, a.tax.address) == split.tax == 0
    assert factory.escrow.credit(token, a.seller.address) == split.seller_net == 0
    assert factory.balance(factory.escrow.address) == order.terms.amount
    assert factory.current(order).state == refunded_state


@pytest.mark.parametrize("caller", ["buyer", "seller", "relayer", "admin", "oracle1"])
def test_anyone_can_trigger_a_timeout_refund(factory: OrderFactory, caller: str) -> None:
    order = factory.fund()
    factory.chain.set_next_block_time(order.terms.ship_by + 1)
    factory.escrow.timeout_refund(order, getattr(factory.actors, caller))
    assert factory.escrow.credit(factory.token.address, factory.actors.buyer.address) == order.terms.amount


def test_silent_seller_refund_waits_for_the_response_window_not_the_arbitration_window(
    factory: OrderFactory,
) -> None:
    order = _silent(factory)
    response = _deadline(order, RefundReason.RESPONSE_TIMEOUT)
    assert response < _deadline(order, RefundReason.ARBITRATION_TIMEOUT)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=response):
        factory.escrow.timeout_refund(order, factory.actors.stranger)


def test_seller_evidence_after_the_response_window_is_no_answer(factory: OrderFactory) -> None:
    a = factory.actors
    order = _silent(factory)
    response = _deadline(order, RefundReason.RESPONSE_TIMEOUT)
    factory.chain.set_next_block_time(response + 1)
    factory.escrow.submit_evidence(order, a.seller, content_hash(b"too late"))
    order = factory.current(order)
    assert not order.decoded.responded
    res = factory.escrow.timeout_refund(order, a.stranger)
    assert res.named("OrderRefunded")[0].args["reason"] == RefundReason.RESPONSE_TIMEOUT


def test_seller_evidence_at_exactly_the_response_deadline_answers(factory: OrderFactory) -> None:
    a = factory.actors
    order = _silent(factory)
    response = _deadline(order, RefundReason.RESPONSE_TIMEOUT)
    factory.chain.set_next_block_time(response)
    factory.escrow.submit_evidence(order, a.seller, content_hash(b"just in time"))
    order = factory.current(order)
    assert order.decoded.responded
    arbitration = _deadline(order, RefundReason.ARBITRATION_TIMEOUT)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=arbitration):
        factory.escrow.timeout_refund(order, a.stranger)


def test_buyer_evidence_does_not_count_as_the_sellers_answer(factory: OrderFactory) -> None:
    a = factory.actors
    order = _silent(factory)
    factory.escrow.submit_evidence(order, a.buyer, content_hash(b"more photos"))
    order = factory.current(order)
    assert not order.decoded.responded
    factory.chain.set_next_block_time(_deadline(order, RefundReason.RESPONSE_TIMEOUT) + 1)
    res = factory.escrow.timeout_refund(order, a.stranger)
    assert res.named("OrderRefunded")[0].args["reason"] == RefundReason.RESPONSE_TIMEOUT


def test_dispute_stops_the_delivery_timer(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.SHIPPED, deliver_by=factory.chain.now() + 6 * DAY)
    order = factory.dispute(order)
    factory.escrow.submit_evidence(order, a.seller, content_hash(b"reply"))
    order = factory.current(order)
    factory.chain.set_next_block_time(order.terms.deliver_by + 1)  # past deliverBy, inside arbitration window
    arbitration = _deadline(order, RefundReason.ARBITRATION_TIMEOUT)
    assert arbitration > order.terms.deliver_by + 1
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=arbitration):
        factory.escrow.timeout_refund(order, a.stranger)


def test_dispute_windows_are_the_ones_locked_at_funding(factory: OrderFactory) -> None:
    order = _silent(factory)
    factory.admin("setDisputeWindows", 3600, 7200)
    response = _deadline(order, RefundReason.RESPONSE_TIMEOUT)
    assert order.terms.response_seconds == 3 * DAY
    factory.chain.set_next_block_time(response)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=response):
        factory.escrow.timeout_refund(order, factory.actors.stranger)


# ------------------------------------------------------------------ status and freeze reverts


@pytest.mark.parametrize("status", [Status.DELIVERED, Status.RELEASED, Status.REFUNDED, Status.RESOLVED])
def test_reverts_when_status_has_no_timeout(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    factory.chain.advance_time(400 * DAY)  # every deadline of the order is long gone
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        factory.escrow.timeout_refund(order, factory.actors.stranger)


@pytest.mark.parametrize("reason", REASONS, ids=IDS)
def test_reverts_while_frozen_even_past_the_deadline(factory: OrderFactory, reason: RefundReason) -> None:
    a = factory.actors
    order = CASES[reason](factory)
    factory.escrow.freeze(order, a.regulator, 30 * DAY, REASON)
    order = factory.current(order)
    until = order.decoded.frozen_until
    factory.chain.set_next_block_time(until - 1)
    assert until - 1 > _deadline(order, reason) - 30 * DAY  # the unfrozen deadline has passed
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=until):
        factory.escrow.timeout_refund(order, a.stranger)


def test_frozen_delivered_order_reports_the_freeze_first(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DELIVERED)
    factory.escrow.freeze(order, a.regulator, DAY, REASON)
    order = factory.current(order)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=order.decoded.frozen_until):
        factory.escrow.timeout_refund(order, a.stranger)


def test_reverts_when_order_unknown(factory: OrderFactory) -> None:
    order = factory.fund()
    ghost = replace(order, order_id=b"\x11" * 32)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.timeout_refund(ghost, factory.actors.stranger)


def test_reverts_when_deadline_forged_in_the_terms(factory: OrderFactory) -> None:
    order = factory.fund()
    forged = replace(order, terms=replace(order.terms, ship_by=order.terms.funded_at + 1))
    factory.chain.advance_time(10)
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.timeout_refund(forged, factory.actors.stranger)


def test_reverts_when_frozen_seconds_forged_in_the_state(factory: OrderFactory) -> None:
    order = factory.fund()
    forged = replace(order, state=replace(order.decoded, frozen_seconds=0, anchor=1).pack())
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.timeout_refund(forged, factory.actors.stranger)


# ------------------------------------------------------------------ freezes extend every deadline


@pytest.mark.parametrize("reason", REASONS, ids=IDS)
def test_freeze_extends_the_deadline_by_the_frozen_time(factory: OrderFactory, reason: RefundReason) -> None:
    a = factory.actors
    order = CASES[reason](factory)
    deadline = _deadline(order, reason)
    freeze_for = 2 * DAY + 17
    factory.escrow.freeze(order, a.regulator, freeze_for, REASON)
    order = factory.current(order)
    assert order.decoded.frozen_until < deadline + freeze_for  # the freeze ends before the extended deadline
    assert _deadline(order, reason) == deadline + freeze_for

    factory.chain.set_next_block_time(deadline + 1)  # the old deadline has passed, the new one has not
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=deadline + freeze_for):
        factory.escrow.timeout_refund(order, a.stranger)
    factory.chain.set_next_block_time(deadline + freeze_for)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=deadline + freeze_for):
        factory.escrow.timeout_refund(order, a.stranger)
    factory.chain.set_next_block_time(deadline + freeze_for + 1)
    res = factory.escrow.timeout_refund(order, a.stranger)
    assert res.named("OrderRefunded")[0].args["reason"] == reason


@pytest.mark.parametrize("reason", REASONS, ids=IDS)
def test_early_unfreeze_gives_back_the_unused_part(factory: OrderFactory, reason: RefundReason) -> None:
    a = factory.actors
    order = CASES[reason](factory)
    deadline = _deadline(order, reason)
    t0 = factory.chain.now() + 10
    factory.chain.set_next_block_time(t0)
    factory.escrow.freeze(order, a.regulator, 10 * DAY, REASON)
    used = DAY + 123
    factory.chain.set_next_block_time(t0 + used)
    factory.escrow.unfreeze(factory.current(order), a.regulator)
    order = factory.current(order)
    assert order.decoded.frozen_seconds == used
    assert order.decoded.frozen_until == t0 + used
    assert _deadline(order, reason) == deadline + used

    factory.chain.set_next_block_time(deadline + used)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=deadline + used):
        factory.escrow.timeout_refund(order, a.stranger)
    factory.chain.set_next_block_time(deadline + used + 1)
    res = factory.escrow.timeout_refund(order, a.stranger)
    assert res.named("OrderRefunded")[0].args["reason"] == reason


def test_two_freezes_add_up(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    deadline = order.terms.ship_by
    factory.escrow.freeze(order, a.regulator, DAY, REASON)
    order = factory.current(order)
    factory.chain.set_next_block_time(order.decoded.frozen_until)
    factory.escrow.freeze(order, a.regulator, 2 * DAY, REASON)
    order = factory.current(order)
    assert order.decoded.frozen_seconds == 3 * DAY
    factory.chain.set_next_block_time(deadline + 3 * DAY)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=deadline + 3 * DAY):
        factory.escrow.timeout_refund(order, a.stranger)
    factory.chain.set_next_block_time(deadline + 3 * DAY + 1)
    factory.escrow.timeout_refund(order, a.stranger)
    assert factory.current(order).status == Status.REFUNDED


def test_dispute_opened_during_a_freeze_starts_its_timers_when_the_freeze_ends(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    factory.escrow.freeze(order, a.regulator, 2 * DAY, REASON)
    until = factory.current(order).decoded.frozen_until
    order = factory.dispute(factory.current(order))
    assert order.decoded.disputed_at == until
    response = until + order.terms.response_seconds
    factory.chain.set_next_block_time(response)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=response):
        factory.escrow.timeout_refund(order, a.stranger)
    factory.chain.set_next_block_time(response + 1)
    res = factory.escrow.timeout_refund(order, a.stranger)
    assert res.named("OrderRefunded")[0].args["reason"] == RefundReason.RESPONSE_TIMEOUT
