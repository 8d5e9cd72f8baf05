"""freeze() and unfreeze(): the regulator's bounded, public hold; every revert path; what a freeze blocks.

A freeze stops every money movement (release, confirm receipt, rulings, seller and timeout refunds) and
delivery attestations, and extends every timer by the frozen time; it never stops evidence or dispute opening.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_utils import keccak

from app.chain.escrow import Order
from app.domain.ids import content_hash
from app.domain.order_state import Decision, Milestone, OrderState, Status
from app.errors import ContractRevert
from tests.factories import DAY, HOLD, OrderFactory, reverts

REASON = content_hash(b"OFAC screening case 2024-117")
REGULATOR_ROLE = keccak(text="REGULATOR_ROLE")
MAX_FREEZE = 30 * DAY
OPEN = [Status.FUNDED, Status.SHIPPED, Status.DELIVERED, Status.DISPUTED]
FINAL = [Status.RELEASED, Status.REFUNDED, Status.RESOLVED]


def _freeze(factory: OrderFactory, order: Order, duration: int = DAY, at: int | None = None) -> Order:
    if at is not None:
        factory.chain.set_next_block_time(at)
    factory.escrow.freeze(order, factory.actors.regulator, duration, REASON)
    return factory.current(order)


# ------------------------------------------------------------------ freeze: success


@pytest.mark.parametrize("status", OPEN)
def test_freezes_open_order_and_emits_order_frozen(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    t = factory.chain.now() + 5
    factory.chain.set_next_block_time(t)
    res = factory.escrow.freeze(order, factory.actors.regulator, 2 * DAY, REASON)

    expected = replace(order.decoded, frozen_seconds=2 * DAY, frozen_until=t + 2 * DAY).pack()
    assert [e.name for e in res.events] == ["OrderFrozen"]
    assert res.events[0].args == {
        "orderId": order.order_id,
        "state": expected,
        "frozenUntil": t + 2 * DAY,
        "reasonHash": REASON,
    }
    assert factory.current(order).state == expected


def test_freezes_for_exactly_thirty_days(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), MAX_FREEZE)
    assert order.decoded.frozen_seconds == MAX_FREEZE


def test_thirty_days_in_total_across_two_freezes(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), 20 * DAY)
    order = _freeze(factory, order, 10 * DAY, at=order.decoded.frozen_until)
    assert order.decoded.frozen_seconds == MAX_FREEZE


def test_refreezes_at_exactly_frozen_until(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), DAY)
    until = order.decoded.frozen_until
    order = _freeze(factory, order, DAY, at=until)
    assert order.decoded.frozen_until == until + DAY
    assert order.decoded.frozen_seconds == 2 * DAY


# ------------------------------------------------------------------ freeze: reverts


@pytest.mark.parametrize(
    "caller", ["stranger", "admin", "relayer", "buyer", "seller", "arbitrator", "oracle1"]
)
def test_freeze_reverts_for_non_regulators(factory: OrderFactory, caller: str) -> None:
    order = factory.fund()
    acct = getattr(factory.actors, caller)
    fn = factory.escrow.contract.functions.freeze(*order.ref(), DAY, REASON)
    with reverts("AccessControlUnauthorizedAccount", account=acct.address, neededRole=REGULATOR_ROLE):
        factory.chain.send(fn, acct)


def test_access_control_is_checked_before_the_order(factory: OrderFactory) -> None:
    order = factory.fund()
    ghost = replace(order, order_id=b"\x01" * 32)
    s = factory.actors.stranger
    with reverts("AccessControlUnauthorizedAccount", account=s.address, neededRole=REGULATOR_ROLE):
        factory.chain.send(factory.escrow.contract.functions.freeze(*ghost.ref(), DAY, REASON), s)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.freeze(ghost, factory.actors.regulator, DAY, REASON)


def test_freeze_reverts_when_terms_tampered(factory: OrderFactory) -> None:
    order = factory.fund()
    forged = replace(order, terms=replace(order.terms, amount=1))
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.freeze(forged, factory.actors.regulator, DAY, REASON)


def test_freeze_reverts_with_empty_reason_hash(factory: OrderFactory) -> None:
    order = factory.fund()
    with reverts("EmptyHash"):
        factory.escrow.freeze(order, factory.actors.regulator, DAY, b"\x00" * 32)


def test_freeze_reverts_for_zero_seconds(factory: OrderFactory) -> None:
    order = factory.fund()
    with reverts("FreezeTooLong", orderId=order.order_id, totalSeconds=0):
        factory.escrow.freeze(order, factory.actors.regulator, 0, REASON)


def test_freeze_reverts_for_zero_seconds_after_an_earlier_freeze(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), DAY)
    factory.chain.set_next_block_time(order.decoded.frozen_until)
    with reverts("FreezeTooLong", orderId=order.order_id, totalSeconds=DAY):
        factory.escrow.freeze(order, factory.actors.regulator, 0, REASON)


def test_freeze_reverts_above_thirty_days_at_once(factory: OrderFactory) -> None:
    order = factory.fund()
    with reverts("FreezeTooLong", orderId=order.order_id, totalSeconds=MAX_FREEZE + 1):
        factory.escrow.freeze(order, factory.actors.regulator, MAX_FREEZE + 1, REASON)


def test_freeze_reverts_above_thirty_days_across_two_freezes(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), 20 * DAY)
    factory.chain.set_next_block_time(order.decoded.frozen_until)
    with reverts("FreezeTooLong", orderId=order.order_id, totalSeconds=MAX_FREEZE + 1):
        factory.escrow.freeze(order, factory.actors.regulator, 10 * DAY + 1, REASON)


def test_no_freeze_at_all_once_thirty_days_are_used(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), MAX_FREEZE)
    factory.chain.set_next_block_time(order.decoded.frozen_until)
    with reverts("FreezeTooLong", orderId=order.order_id, totalSeconds=MAX_FREEZE + 1):
        factory.escrow.freeze(order, factory.actors.regulator, 1, REASON)


def test_early_unfreeze_gives_back_budget(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), MAX_FREEZE)
    start = order.decoded.frozen_until - MAX_FREEZE
    factory.chain.set_next_block_time(start + DAY)
    factory.escrow.unfreeze(order, factory.actors.regulator)
    order = _freeze(factory, factory.current(order), MAX_FREEZE - DAY)
    assert order.decoded.frozen_seconds == MAX_FREEZE


@pytest.mark.parametrize("last_second", [False, True])
def test_freeze_reverts_while_already_frozen(factory: OrderFactory, last_second: bool) -> None:
    order = _freeze(factory, factory.fund(), DAY)
    until = order.decoded.frozen_until
    if last_second:
        factory.chain.set_next_block_time(until - 1)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=until):
        factory.escrow.freeze(order, factory.actors.regulator, DAY, REASON)


@pytest.mark.parametrize("status", FINAL)
def test_freeze_reverts_for_final_order(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        factory.escrow.freeze(order, factory.actors.regulator, DAY, REASON)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):  # status before the hash
        factory.escrow.freeze(order, factory.actors.regulator, 0, b"\x00" * 32)


def test_already_frozen_is_checked_before_hash_and_duration(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), DAY)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=order.decoded.frozen_until):
        factory.escrow.freeze(order, factory.actors.regulator, 0, b"\x00" * 32)


def test_empty_hash_is_checked_before_duration(factory: OrderFactory) -> None:
    order = factory.fund()
    with reverts("EmptyHash"):
        factory.escrow.freeze(order, factory.actors.regulator, 0, b"\x00" * 32)


# ------------------------------------------------------------------ unfreeze


def test_unfreezes_early_and_gives_back_the_unused_part(factory: OrderFactory) -> None:
    t0 = factory.chain.now() + 10
    order = _freeze(factory, factory.fund(), 10 * DAY, at=t0)
    factory.chain.set_next_block_time(t0 + 3 * DAY)
    res = factory.escrow.unfreeze(order, factory.actors.regulator)
    tag = order.decoded.buyer_tag
    expected = OrderState(Status.FUNDED, 0, 3 * DAY, t0 + 3 * DAY, buyer_tag=tag).pack()
    assert [e.name for e in res.events] == ["OrderUnfrozen"]
    assert res.events[0].args == {"orderId": order.order_id, "state": expected}
    assert factory.current(order).state == expected


def test_unfreezes_one_second_before_frozen_until(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), DAY)
    until = order.decoded.frozen_until
    factory.chain.set_next_block_time(until - 1)
    factory.escrow.unfreeze(order, factory.actors.regulator)
    assert factory.current(order).decoded.frozen_seconds == DAY - 1


def test_unfreeze_then_refreeze(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), DAY)
    factory.escrow.unfreeze(order, factory.actors.regulator)
    order = factory.current(order)
    used = order.decoded.frozen_seconds
    order = _freeze(factory, order, 2 * DAY)
    assert order.decoded.frozen_seconds == used + 2 * DAY


@pytest.mark.parametrize("caller", ["stranger", "admin", "relayer", "buyer", "seller", "arbitrator"])
def test_unfreeze_reverts_for_non_regulators(factory: OrderFactory, caller: str) -> None:
    order = _freeze(factory, factory.fund())
    acct = getattr(factory.actors, caller)
    fn = factory.escrow.contract.functions.unfreeze(*order.ref())
    with reverts("AccessControlUnauthorizedAccount", account=acct.address, neededRole=REGULATOR_ROLE):
        factory.chain.send(fn, acct)


def test_unfreeze_reverts_when_never_frozen(factory: OrderFactory) -> None:
    order = factory.fund()
    with reverts("OrderNotFrozen", orderId=order.order_id):
        factory.escrow.unfreeze(order, factory.actors.regulator)


def test_unfreeze_reverts_at_frozen_until(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), DAY)
    factory.chain.set_next_block_time(order.decoded.frozen_until)
    with reverts("OrderNotFrozen", orderId=order.order_id):
        factory.escrow.unfreeze(order, factory.actors.regulator)


def test_unfreeze_reverts_when_already_unfrozen(factory: OrderFactory) -> None:
    order = _freeze(factory, factory.fund(), DAY)
    factory.escrow.unfreeze(order, factory.actors.regulator)
    with reverts("OrderNotFrozen", orderId=order.order_id):
        factory.escrow.unfreeze(factory.current(order), factory.actors.regulator)


@pytest.mark.parametrize("status", FINAL)
def test_unfreeze_reverts_for_final_order(factory: OrderFactory, status: Status) -> None:
    order = factory.in_status(status)
    with reverts("OrderNotFrozen", orderId=order.order_id):
        factory.escrow.unfreeze(order, factory.actors.regulator)


def test_unfreeze_reverts_for_unknown_or_stale_order(factory: OrderFactory) -> None:
    order = factory.fund()
    frozen = _freeze(factory, order)
    ghost = replace(frozen, order_id=b"\x02" * 32)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.unfreeze(ghost, factory.actors.regulator)
    with reverts("OrderDataMismatch", orderId=order.order_id):  # the pre-freeze state
        factory.escrow.unfreeze(order, factory.actors.regulator)


# ------------------------------------------------------------------ what a freeze blocks


def _until(order: Order) -> int:
    return order.decoded.frozen_until


def test_blocks_release_and_release_waits_release_at_plus_freeze(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DELIVERED)
    release_at = order.decoded.release_at
    assert release_at is not None
    order = _freeze(factory, order, 5 * DAY)
    assert order.decoded.release_at == release_at + 5 * DAY
    factory.chain.set_next_block_time(_until(order) - 1)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=_until(order)):
        factory.escrow.release([order], a.stranger)
    factory.chain.set_next_block_time(release_at + 5 * DAY - 1)
    with reverts("DeadlineNotReached", orderId=order.order_id, deadline=release_at + 5 * DAY):
        factory.escrow.release([order], a.stranger)
    factory.chain.set_next_block_time(release_at + 5 * DAY)
    factory.escrow.release([order], a.stranger)
    assert factory.current(order).status == Status.RELEASED


def test_freeze_after_release_at_holds_the_money_until_the_freeze_ends(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DELIVERED)
    release_at = order.decoded.release_at
    assert release_at is not None
    order = _freeze(factory, order, 5 * DAY, at=release_at + 10)
    factory.chain.set_next_block_time(_until(order) - 1)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=_until(order)):
        factory.escrow.release([order], a.stranger)
    factory.chain.set_next_block_time(_until(order))
    factory.escrow.release([order], a.stranger)
    assert factory.current(order).status == Status.RELEASED


@pytest.mark.parametrize("status", [Status.SHIPPED, Status.DELIVERED])
def test_blocks_confirm_receipt_direct_and_signed(factory: OrderFactory, status: Status) -> None:
    a = factory.actors
    order = _freeze(factory, factory.in_status(status))
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=_until(order)):
        factory.escrow.confirm_receipt(order, a.buyer)
    vu = factory.chain.now() + DAY
    sig = factory.escrow.sign_buyer_decision(
        a.buyer.key, order.order_id, Decision.CONFIRM_RECEIPT, REASON, vu
    )
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=_until(order)):
        factory.escrow.submit_buyer_decision(order, Decision.CONFIRM_RECEIPT, REASON, vu, sig, a.relayer)


def test_blocks_rule_direct_and_signed(factory: OrderFactory) -> None:
    a = factory.actors
    order = _freeze(factory, factory.in_status(Status.DISPUTED))
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=_until(order)):
        factory.escrow.rule(order, a.arbitrator, 5_000, REASON)
    vu = factory.chain.now() + DAY
    sig = factory.escrow.sign_ruling(a.arbitrator.key, order.order_id, 5_000, REASON, vu)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=_until(order)):
        factory.escrow.submit_ruling(order, 5_000, REASON, vu, sig, a.relayer)


@pytest.mark.parametrize("status", OPEN)
def test_blocks_seller_refund(factory: OrderFactory, status: Status) -> None:
    order = _freeze(factory, factory.in_status(status))
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=_until(order)):
        factory.escrow.refund_by_seller(order, factory.actors.seller)


def test_blocks_timeout_refund(factory: OrderFactory) -> None:
    order = factory.fund()
    order = _freeze(factory, order, MAX_FREEZE, at=order.terms.ship_by + 1)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=_until(order)):
        factory.escrow.timeout_refund(order, factory.actors.stranger)


@pytest.mark.parametrize("milestone", [Milestone.SHIPPED, Milestone.DELIVERED])
def test_blocks_attestations_and_they_count_again_at_frozen_until(
    factory: OrderFactory, milestone: int
) -> None:
    """Since 9566ab0 a freeze stops attestations too (so it cannot revive a missed ship/deliver deadline)."""
    a = factory.actors
    order = _freeze(factory, factory.fund(), 2 * DAY)
    until = _until(order)
    att = factory.attestation(order, milestone)
    for direct in (False, True):
        sent = replace(att, signature=b"") if direct else att
        with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=until):
            factory.escrow.attest([(order, [sent])], a.oracle1 if direct else a.relayer)
    res = factory.escrow.attest([(order, [att])], a.relayer, strict=False)
    (skip,) = res.named("OrderSkipped")
    decoded = factory.chain.abis.decode_error(bytes(skip.args["reason"]))
    assert decoded is not None
    assert (decoded.name, decoded.args_by_name) == (
        "OrderIsFrozen",
        {"orderId": order.order_id, "frozenUntil": until},
    )
    factory.chain.set_next_block_time(until)
    factory.escrow.attest([(order, [att])], a.relayer)
    order = factory.current(order)
    if milestone == Milestone.SHIPPED:
        assert order.status == Status.SHIPPED
    else:
        assert order.status == Status.DELIVERED
        assert order.decoded.release_at == until + HOLD  # the hold window starts when the freeze ends


# ------------------------------------------------------------------ what a freeze does not block


@pytest.mark.parametrize("status", OPEN)
@pytest.mark.parametrize("who", ["buyer", "seller"])
def test_evidence_is_not_blocked(factory: OrderFactory, status: Status, who: str) -> None:
    a = factory.actors
    order = _freeze(factory, factory.in_status(status))
    party = getattr(a, who)
    res = factory.escrow.submit_evidence(order, party, content_hash(b"doc"))
    assert res.named("EvidenceSubmitted")
    order = factory.current(order)
    vu = factory.chain.now() + DAY
    sig = factory.escrow.sign_evidence(party.key, order.order_id, party.address, content_hash(b"doc 2"), vu)
    res = factory.escrow.submit_evidence_signed(
        order, party.address, content_hash(b"doc 2"), vu, sig, a.relayer
    )
    assert res.named("EvidenceSubmitted")


@pytest.mark.parametrize("status", [Status.FUNDED, Status.SHIPPED, Status.DELIVERED])
def test_dispute_opening_is_not_blocked(factory: OrderFactory, status: Status) -> None:
    order = _freeze(factory, factory.in_status(status), 2 * DAY)
    until = _until(order)
    order = factory.dispute(order)
    assert order.status == Status.DISPUTED
    assert order.decoded.disputed_at == until  # dispute timers start when the freeze ends
    assert order.decoded.frozen_until == until


def test_signed_dispute_opening_is_not_blocked(factory: OrderFactory) -> None:
    a = factory.actors
    order = _freeze(factory, factory.in_status(Status.DELIVERED))
    vu = factory.chain.now() + DAY
    sig = factory.escrow.sign_buyer_decision(a.buyer.key, order.order_id, Decision.OPEN_DISPUTE, REASON, vu)
    factory.escrow.submit_buyer_decision(order, Decision.OPEN_DISPUTE, REASON, vu, sig, a.relayer)
    assert factory.current(order).status == Status.DISPUTED


def test_blocked_action_works_again_after_an_early_unfreeze(factory: OrderFactory) -> None:
    a = factory.actors
    order = _freeze(factory, factory.in_status(Status.DELIVERED), 10 * DAY)
    factory.escrow.unfreeze(order, a.regulator)
    factory.escrow.confirm_receipt(factory.current(order), a.buyer)
    assert factory.current(order).status == Status.RELEASED


# ------------------------------------------------------------------ a freeze never revives a deadline
# A freeze extends timers that are still running. A deadline that had already passed when the freeze began
# must stay passed: a compliance hold must not hand a party back a right it had already lost. The first two
# tests fail against the current contract (see the report): `freeze` adds the whole duration to frozenSeconds
# up front, and the actions a freeze does not block (openDispute, submitEvidence) compare against
# `deadline + frozenSeconds`, so during the freeze an expired window is open again.


def test_freeze_does_not_reopen_the_dispute_window_after_release_at(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DELIVERED)
    release_at = order.decoded.release_at
    assert release_at is not None
    factory.chain.set_next_block_time(release_at)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=release_at):
        factory.escrow.open_dispute(order, a.buyer, REASON)
    # the seller is owed the release now; a regulator hold must delay it, not turn it into a dispute
    order = _freeze(factory, order, 10 * DAY, at=release_at + 3600)
    with pytest.raises(ContractRevert) as err:
        factory.escrow.open_dispute(order, a.buyer, REASON)
    assert (err.value.name, err.value.args_by_name["orderId"]) == ("DeadlinePassed", order.order_id)
    factory.chain.set_next_block_time(_until(order))
    factory.escrow.release([order], a.stranger)
    assert factory.current(order).status == Status.RELEASED


def test_freeze_does_not_let_a_silent_seller_answer_after_the_response_window(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.in_status(Status.DISPUTED)
    disputed_at = order.decoded.disputed_at
    assert disputed_at is not None
    response = disputed_at + order.terms.response_seconds
    # the buyer's default refund is due from response + 1; a freeze lands an hour later
    order = _freeze(factory, order, 10 * DAY, at=response + 3600)
    factory.escrow.submit_evidence(order, a.seller, content_hash(b"late answer"))
    order = factory.current(order)
    assert not order.decoded.responded, "late seller evidence during a freeze counted as an answer"
    factory.chain.set_next_block_time(_until(order))
    res = factory.escrow.timeout_refund(order, a.stranger)
    assert res.named("OrderRefunded")[0].args["reason"] == 3  # ResponseTimeout


def test_freeze_does_not_reopen_the_ship_window(factory: OrderFactory) -> None:
    """Fixed in 9566ab0 by refusing attestations while frozen."""
    a = factory.actors
    order = factory.fund()
    ship_by = order.terms.ship_by
    order = _freeze(factory, order, 10 * DAY, at=ship_by + 3600)
    until = _until(order)
    att = factory.attestation(order, Milestone.SHIPPED)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=until):
        factory.escrow.attest([(order, [att])], a.relayer)
    factory.chain.set_next_block_time(until)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=ship_by + 10 * DAY):
        factory.escrow.attest([(order, [att])], a.relayer)
    res = factory.escrow.timeout_refund(order, a.stranger)
    assert res.named("OrderRefunded")[0].args["reason"] == 1  # ShipTimeout
