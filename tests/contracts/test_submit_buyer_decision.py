"""submitBuyerDecision(): a relayed, buyer-signed confirm-receipt or open-dispute; every revert path."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.chain.escrow import Order
from app.domain.ids import content_hash
from app.domain.money import release_split
from app.domain.order_state import Decision, OrderState, Status
from tests.factories import DAY, OrderFactory, recover, reverts

EVIDENCE = content_hash(b"buyer's statement")
CONFIRM, DISPUTE = Decision.CONFIRM_RECEIPT, Decision.OPEN_DISPUTE


def _signed(
    factory: OrderFactory,
    order: Order,
    decision: int,
    valid_until: int | None = None,
    key: bytes | None = None,
) -> tuple[int, bytes]:
    valid_until = factory.chain.now() + DAY if valid_until is None else valid_until
    sig = factory.escrow.sign_buyer_decision(
        key or factory.actors.buyer.key, order.order_id, decision, EVIDENCE, valid_until
    )
    return valid_until, sig


def _submit(factory: OrderFactory, order: Order, decision: int, valid_until: int, sig: bytes) -> object:
    return factory.escrow.submit_buyer_decision(
        order, decision, EVIDENCE, valid_until, sig, factory.actors.relayer
    )


def _digest(factory: OrderFactory, order: Order, decision: int, valid_until: int) -> bytes:
    msg = {
        "orderId": order.order_id,
        "decision": decision,
        "evidenceHash": EVIDENCE,
        "validUntil": valid_until,
    }
    return factory.digest("BuyerDecision", msg)


# ------------------------------------------------------------------ success paths


@pytest.mark.parametrize("status", [Status.SHIPPED, Status.DELIVERED])
def test_relayed_confirm_releases_with_exact_split(factory: OrderFactory, status: Status) -> None:
    a = factory.actors
    order = factory.in_status(status, amount=10_000_003)
    vu, sig = _signed(factory, order, CONFIRM)
    res = _submit(factory, order, CONFIRM, vu, sig)
    assert res.named("ReceiptConfirmed")[0].args == {"orderId": order.order_id, "evidenceHash": EVIDENCE}
    split = release_split(10_000_003, 200, 1000)
    ev = res.named("OrderReleased")[0].args
    assert (ev["commission"], ev["tax"], ev["sellerNet"]) == (split.commission, split.tax, split.seller_net)
    assert factory.escrow.credit(factory.token.address, a.seller.address) == split.seller_net
    assert factory.current(order).status == Status.RELEASED


@pytest.mark.parametrize("status", [Status.FUNDED, Status.SHIPPED, Status.DELIVERED])
def test_relayed_open_dispute(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    vu, sig = _signed(factory, order, DISPUTE)
    t = factory.chain.now() + 10
    factory.chain.set_next_block_time(t)
    res = _submit(factory, order, DISPUTE, vu, sig)
    opened = res.named("DisputeOpened")[0].args
    assert opened["evidenceHash"] == EVIDENCE
    assert OrderState.unpack(opened["state"]) == OrderState(Status.DISPUTED, anchor=t)
    assert [e.name for e in res.events] == ["DisputeOpened"]  # platform arbitration: no ERC-1497 events


def test_accepts_valid_until_equal_to_block_time(factory: OrderFactory) -> None:
    order = factory.in_status(Status.SHIPPED)
    t = factory.chain.now() + 100
    _, sig = _signed(factory, order, CONFIRM, valid_until=t)
    factory.chain.set_next_block_time(t)
    _submit(factory, order, CONFIRM, t, sig)
    assert factory.current(order).status == Status.RELEASED


def test_buyer_may_relay_its_own_signature(factory: OrderFactory) -> None:
    buyer = factory.actors.buyer
    order = factory.fund()
    vu, sig = _signed(factory, order, DISPUTE)
    factory.escrow.submit_buyer_decision(order, DISPUTE, EVIDENCE, vu, sig, buyer)
    assert factory.current(order).status == Status.DISPUTED


# ------------------------------------------------------------------ reverts


def test_reverts_when_expired(factory: OrderFactory) -> None:
    order = factory.in_status(Status.SHIPPED)
    t = factory.chain.now() + 100
    _, sig = _signed(factory, order, CONFIRM, valid_until=t - 1)
    factory.chain.set_next_block_time(t)
    with reverts("SignatureExpired", validUntil=t - 1, nowTime=t):
        _submit(factory, order, CONFIRM, t - 1, sig)


@pytest.mark.parametrize("decision", [0, 3, 255])
def test_reverts_when_decision_unknown(factory: OrderFactory, decision: int) -> None:
    order = factory.in_status(Status.SHIPPED)
    vu, sig = _signed(factory, order, decision)
    with reverts("InvalidDecision", decision=decision):
        _submit(factory, order, decision, vu, sig)


@pytest.mark.parametrize("signer", ["seller", "stranger", "relayer"])
def test_reverts_when_signed_by_someone_else(factory: OrderFactory, signer: str) -> None:
    a = factory.actors
    account = getattr(a, signer)
    order = factory.in_status(Status.SHIPPED)
    vu, sig = _signed(factory, order, CONFIRM, key=account.key)
    with reverts("InvalidSignature", expected=a.buyer.address, recovered=account.address):
        _submit(factory, order, CONFIRM, vu, sig)


def test_reverts_when_decision_differs_from_signed_one(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.SHIPPED)
    vu, sig = _signed(factory, order, DISPUTE)
    recovered = recover(_digest(factory, order, CONFIRM, vu), sig)
    assert recovered != a.buyer.address
    with reverts("InvalidSignature", expected=a.buyer.address, recovered=recovered):
        _submit(factory, order, CONFIRM, vu, sig)


def test_reverts_when_signature_is_for_another_order(factory: OrderFactory) -> None:
    a = factory.actors
    order, other = factory.in_status(Status.SHIPPED), factory.in_status(Status.SHIPPED)
    vu, sig = _signed(factory, other, CONFIRM)
    recovered = recover(_digest(factory, order, CONFIRM, vu), sig)
    with reverts("InvalidSignature", expected=a.buyer.address, recovered=recovered):
        _submit(factory, order, CONFIRM, vu, sig)


def test_reverts_when_terms_name_the_signer_as_buyer(factory: OrderFactory) -> None:
    """A stranger signing with itself as `terms.buyer` passes the signature check, not the commitment."""
    stranger = factory.actors.stranger
    order = factory.in_status(Status.SHIPPED)
    forged = replace(order, terms=replace(order.terms, buyer=stranger.address))
    vu, sig = _signed(factory, order, CONFIRM, key=stranger.key)
    # escrow v2: the buyer is part of the order's storage key, so a forged buyer finds no order at all
    with reverts("UnknownOrder", orderId=order.order_id):
        _submit(factory, forged, CONFIRM, vu, sig)


def test_reverts_when_signature_empty(factory: OrderFactory) -> None:
    """Escrow v2: an empty signature means the sender decides itself, and the relayer is not the buyer."""
    order = factory.in_status(Status.SHIPPED)
    with reverts("Unauthorized", caller=factory.actors.relayer.address):
        _submit(factory, order, CONFIRM, factory.chain.now() + DAY, b"")


def test_reverts_when_signature_too_short(factory: OrderFactory) -> None:
    order = factory.in_status(Status.SHIPPED)
    with reverts("MalformedSignature", reason=2):
        _submit(factory, order, CONFIRM, factory.chain.now() + DAY, b"\x01" * 64)


def test_reverts_when_confirming_a_funded_order(factory: OrderFactory) -> None:
    order = factory.fund()
    vu, sig = _signed(factory, order, CONFIRM)
    with reverts("InvalidStatus", orderId=order.order_id, status=Status.FUNDED):
        _submit(factory, order, CONFIRM, vu, sig)


def test_reverts_when_dispute_window_closed(factory: OrderFactory) -> None:
    order = factory.in_status(Status.DELIVERED)
    release_at = order.decoded.release_at
    vu, sig = _signed(factory, order, DISPUTE, valid_until=release_at + DAY)
    factory.chain.set_next_block_time(release_at)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=release_at):
        _submit(factory, order, DISPUTE, vu, sig)


def test_reverts_when_confirming_a_frozen_order(factory: OrderFactory) -> None:
    order = factory.in_status(Status.DELIVERED)
    factory.escrow.freeze(order, factory.actors.regulator, DAY, content_hash(b"aml"))
    order = factory.current(order)
    vu, sig = _signed(factory, order, CONFIRM)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=order.decoded.frozen_until):
        _submit(factory, order, CONFIRM, vu, sig)


@pytest.mark.parametrize(("decision", "after"), [(CONFIRM, Status.RELEASED), (DISPUTE, Status.DISPUTED)])
def test_reverts_when_replayed(factory: OrderFactory, decision: int, after: Status) -> None:
    order = factory.in_status(Status.SHIPPED)
    vu, sig = _signed(factory, order, decision)
    _submit(factory, order, decision, vu, sig)
    order = factory.current(order)
    assert order.status == after
    with reverts("InvalidStatus", orderId=order.order_id, status=after):
        _submit(factory, order, decision, vu, sig)


def test_reverts_when_order_unknown(factory: OrderFactory) -> None:
    order = factory.in_status(Status.SHIPPED)
    ghost = replace(order, order_id=b"\x03" * 32)
    vu, sig = _signed(factory, ghost, CONFIRM)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        _submit(factory, ghost, CONFIRM, vu, sig)
