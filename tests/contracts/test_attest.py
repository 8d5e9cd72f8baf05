"""attest(): k-of-n delivery attestations, every revert path of `attest` and `_attest`, batches, timers."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account

from app.chain.escrow import Attestation, Order
from app.domain.ids import content_hash
from app.domain.order_state import Milestone, OrderState, Status
from app.errors import ContractRevert
from tests.factories import DAY, HOLD, OrderFactory, reverts, skipped

SHIPPED, DELIVERED = Milestone.SHIPPED, Milestone.DELIVERED


def _direct(att: Attestation) -> Attestation:
    """The same attestation sent by the oracle itself (empty signature)."""
    return replace(att, signature=b"")


def _k2(factory: OrderFactory) -> Order:
    """An order funded with threshold k=2 (of oracle1..3)."""
    factory.admin("setThreshold", 2)
    return factory.fund()


# ------------------------------------------------------------------ success paths


def test_ships_funded_order_and_emits_attested(factory: OrderFactory) -> None:
    order = factory.fund()
    att = factory.attestation(order, SHIPPED)
    res = factory.escrow.attest([(order, [att])], factory.actors.relayer)
    (ev,) = res.named("Attested")
    assert ev.args == {
        "orderId": order.order_id,
        "oracle": factory.actors.oracle1.address,
        "milestone": SHIPPED,
        "eventTime": att.event_time,
        "trackingHash": att.tracking_hash,
        "evidenceHash": att.evidence_hash,
    }
    (shipped,) = res.named("OrderShipped")
    assert OrderState.unpack(shipped.args["state"]) == OrderState(Status.SHIPPED)
    assert factory.current(order).status == Status.SHIPPED


@pytest.mark.parametrize("start", [Status.FUNDED, Status.SHIPPED])
def test_delivers_and_sets_release_at_to_block_time_plus_hold(factory: OrderFactory, start: Status) -> None:
    order = factory.in_status(start)
    att = factory.attestation(order, DELIVERED)
    t = factory.chain.now() + 1_000
    factory.chain.set_next_block_time(t)
    res = factory.escrow.attest([(order, [att])], factory.actors.relayer)
    (ev,) = res.named("OrderDelivered")
    assert ev.args["releaseAt"] == t + HOLD
    assert OrderState.unpack(ev.args["state"]) == OrderState(Status.DELIVERED, anchor=t + HOLD)
    assert factory.current(order).decoded.release_at == t + HOLD


def test_reverts_while_frozen_and_hold_starts_after_the_freeze(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"kyc"))
    frozen_until = factory.current(order).decoded.frozen_until
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=frozen_until):
        factory.escrow.attest([(factory.current(order), [factory.attestation(order, DELIVERED)])], a.relayer)
    factory.chain.set_next_block_time(frozen_until)
    res = factory.escrow.attest(
        [(factory.current(order), [factory.attestation(order, DELIVERED, event_time=frozen_until - 1)])],
        a.relayer,
    )
    (ev,) = res.named("OrderDelivered")
    assert ev.args["releaseAt"] == frozen_until + HOLD
    assert factory.current(order).decoded.release_at == frozen_until + HOLD


def test_oracle_attests_directly_with_empty_signature(factory: OrderFactory) -> None:
    oracle2 = factory.actors.oracle2
    order = factory.fund()
    att = _direct(factory.attestation(order, SHIPPED, oracle2))
    res = factory.escrow.attest([(order, [att])], oracle2)
    assert res.named("Attested")[0].args["oracle"] == oracle2.address
    assert factory.current(order).status == Status.SHIPPED


def test_k2_counts_across_two_transactions(factory: OrderFactory) -> None:
    a = factory.actors
    order = _k2(factory)
    assert order.terms.threshold == 2
    res = factory.escrow.attest([(order, [factory.attestation(order, SHIPPED, a.oracle2)])], a.relayer)
    assert len(res.named("Attested")) == 1
    assert not res.named("OrderShipped")
    assert factory.current(order).status == Status.FUNDED
    assert factory.partial(order, SHIPPED) == 0b010

    factory.escrow.attest([(order, [factory.attestation(order, SHIPPED, a.oracle3)])], a.relayer)
    assert factory.current(order).status == Status.SHIPPED
    assert factory.partial(order, SHIPPED) == 0


def test_k2_met_in_one_call(factory: OrderFactory) -> None:
    a = factory.actors
    order = _k2(factory)
    atts = [factory.attestation(order, DELIVERED, o) for o in (a.oracle1, a.oracle3)]
    res = factory.escrow.attest([(order, atts)], a.relayer)
    assert [e.args["oracle"] for e in res.named("Attested")] == [a.oracle1.address, a.oracle3.address]
    assert factory.current(order).status == Status.DELIVERED
    assert factory.partial(order, DELIVERED) == 0


def test_removed_oracles_stored_partial_no_longer_counts(factory: OrderFactory) -> None:
    a = factory.actors
    order = _k2(factory)
    factory.escrow.attest([(order, [factory.attestation(order, SHIPPED, a.oracle1)])], a.relayer)
    factory.admin("removeOracle", a.oracle1.address)
    factory.escrow.attest([(order, [factory.attestation(order, SHIPPED, a.oracle2)])], a.relayer)
    assert factory.current(order).status == Status.FUNDED
    assert factory.partial(order, SHIPPED) == 0b011
    factory.escrow.attest([(order, [factory.attestation(order, SHIPPED, a.oracle3)])], a.relayer)
    assert factory.current(order).status == Status.SHIPPED


def test_new_oracle_counts_for_orders_funded_from_its_active_time(factory: OrderFactory) -> None:
    new = Account.create()
    res = factory.admin("addOracle", new.address)
    active_from = res.named("OracleAdded")[0].args["activeFrom"]
    auth = factory.auth(valid_until=active_from)
    factory.prepare([auth])
    sig = factory.escrow.sign_authorization(factory.actors.buyer.key, auth)
    factory.chain.set_next_block_time(active_from)
    factory.escrow.fund([auth], [sig], factory.actors.relayer)
    order = factory.escrow.orders[auth.order_id]
    assert order.terms.funded_at == active_from
    factory.escrow.attest([(order, [factory.attestation(order, SHIPPED, new)])], factory.actors.relayer)
    assert factory.current(order).status == Status.SHIPPED


# ------------------------------------------------------------------ reverts


@pytest.mark.parametrize(
    ("status", "milestone"),
    [
        (Status.SHIPPED, SHIPPED),
        (Status.DELIVERED, SHIPPED),
        (Status.DELIVERED, DELIVERED),
        (Status.DISPUTED, SHIPPED),
        (Status.DISPUTED, DELIVERED),
        (Status.RELEASED, DELIVERED),
        (Status.REFUNDED, SHIPPED),
        (Status.RESOLVED, DELIVERED),
    ],
)
def test_reverts_when_status_does_not_take_milestone(
    factory: OrderFactory, status: Status, milestone: Milestone
) -> None:
    order = factory.in_status(status)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        factory.escrow.attest([(order, [factory.attestation(order, milestone)])], factory.actors.relayer)


@pytest.mark.parametrize("milestone", [0, 3, 255])
def test_reverts_when_milestone_unknown(factory: OrderFactory, milestone: int) -> None:
    order = factory.fund()
    with reverts("InvalidMilestone", milestone=milestone):
        factory.escrow.attest([(order, [factory.attestation(order, milestone)])], factory.actors.relayer)


@pytest.mark.parametrize(("first", "second"), [(SHIPPED, DELIVERED), (DELIVERED, SHIPPED)])
def test_reverts_when_milestones_mixed(factory: OrderFactory, first: int, second: int) -> None:
    a = factory.actors
    order = factory.fund()
    atts = [factory.attestation(order, first, a.oracle1), factory.attestation(order, second, a.oracle2)]
    with reverts("InvalidMilestone", milestone=second):
        factory.escrow.attest([(order, atts)], a.relayer)


def test_reverts_when_event_in_future(factory: OrderFactory) -> None:
    order = factory.fund()
    t = factory.chain.now() + 100
    late = factory.attestation(order, SHIPPED, event_time=t + 1)
    factory.chain.set_next_block_time(t)
    with reverts("EventInFuture", eventTime=t + 1):
        factory.escrow.attest([(order, [late])], factory.actors.relayer)
    factory.escrow.attest(
        [(order, [factory.attestation(order, SHIPPED, event_time=t)])], factory.actors.relayer
    )
    assert factory.current(order).status == Status.SHIPPED


@pytest.mark.parametrize("milestone", [SHIPPED, DELIVERED])
def test_reverts_when_funded_order_attested_after_ship_by(factory: OrderFactory, milestone: int) -> None:
    order = factory.fund()
    ship_by = order.terms.ship_by
    att = factory.attestation(order, milestone)
    factory.chain.set_next_block_time(ship_by + 1)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=ship_by):
        factory.escrow.attest([(order, [att])], factory.actors.relayer)


def test_attests_shipment_at_exactly_ship_by(factory: OrderFactory) -> None:
    order = factory.fund()
    att = factory.attestation(order, SHIPPED)
    factory.chain.set_next_block_time(order.terms.ship_by)
    factory.escrow.attest([(order, [att])], factory.actors.relayer)
    assert factory.current(order).status == Status.SHIPPED


def test_reverts_when_shipped_order_delivered_after_deliver_by(factory: OrderFactory) -> None:
    order = factory.ship(factory.fund())
    deliver_by = order.terms.deliver_by
    att = factory.attestation(order, DELIVERED)
    factory.chain.set_next_block_time(deliver_by + 1)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=deliver_by):
        factory.escrow.attest([(order, [att])], factory.actors.relayer)


def test_attests_delivery_at_exactly_deliver_by(factory: OrderFactory) -> None:
    order = factory.ship(factory.fund())
    att = factory.attestation(order, DELIVERED)
    factory.chain.set_next_block_time(order.terms.deliver_by)
    factory.escrow.attest([(order, [att])], factory.actors.relayer)
    assert factory.current(order).status == Status.DELIVERED


def test_deadline_extends_by_frozen_seconds(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"hold"))
    order = factory.current(order)
    att = factory.attestation(order, SHIPPED)
    factory.chain.set_next_block_time(order.terms.ship_by + DAY + 1)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=order.terms.ship_by + DAY):
        factory.escrow.attest([(order, [att])], a.relayer)


def test_reverts_when_signer_is_a_stranger(factory: OrderFactory) -> None:
    stranger = factory.actors.stranger
    order = factory.fund()
    with reverts("NotOracle", signer=stranger.address):
        factory.escrow.attest(
            [(order, [factory.attestation(order, SHIPPED, stranger)])], factory.actors.relayer
        )


def test_reverts_when_stranger_attests_directly(factory: OrderFactory) -> None:
    stranger = factory.actors.stranger
    order = factory.fund()
    with reverts("NotOracle", signer=stranger.address):
        factory.escrow.attest([(order, [_direct(factory.attestation(order, SHIPPED, stranger))])], stranger)


def test_reverts_when_oracle_was_removed(factory: OrderFactory) -> None:
    oracle1 = factory.actors.oracle1
    order = factory.fund()
    factory.admin("removeOracle", oracle1.address)
    with reverts("NotOracle", signer=oracle1.address):
        factory.escrow.attest(
            [(order, [factory.attestation(order, SHIPPED, oracle1)])], factory.actors.relayer
        )


def test_reverts_when_oracle_added_after_funding(factory: OrderFactory) -> None:
    new = Account.create()
    order = factory.fund()
    factory.admin("addOracle", new.address)
    factory.chain.advance_time(DAY + 1)  # the new oracle is active now, but not for this order
    with reverts("NotOracle", signer=new.address):
        factory.escrow.attest([(order, [factory.attestation(order, SHIPPED, new)])], factory.actors.relayer)


def test_reverts_when_same_oracle_twice_in_one_call(factory: OrderFactory) -> None:
    oracle1 = factory.actors.oracle1
    order = factory.fund()
    atts = [factory.attestation(order, SHIPPED, oracle1), factory.attestation(order, SHIPPED, oracle1, 1)]
    with reverts("DuplicateAttestation", orderId=order.order_id, oracle=oracle1.address):
        factory.escrow.attest([(order, atts)], factory.actors.relayer)


def test_reverts_when_same_oracle_again_in_later_call_with_k2(factory: OrderFactory) -> None:
    a = factory.actors
    order = _k2(factory)
    factory.escrow.attest([(order, [factory.attestation(order, SHIPPED, a.oracle1)])], a.relayer)
    again = factory.attestation(order, SHIPPED, a.oracle1, event_time=factory.chain.now())
    with reverts("DuplicateAttestation", orderId=order.order_id, oracle=a.oracle1.address):
        factory.escrow.attest([(order, [again])], a.relayer)
    with reverts("DuplicateAttestation", orderId=order.order_id, oracle=a.oracle1.address):
        factory.escrow.attest([(order, [_direct(again)])], a.oracle1)


def test_reverts_when_order_unknown(factory: OrderFactory) -> None:
    order = factory.fund()
    ghost = replace(order, order_id=b"\x42" * 32)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.attest([(ghost, [factory.attestation(ghost, SHIPPED)])], factory.actors.relayer)


@pytest.mark.parametrize("field", ["terms", "state"])
def test_reverts_when_order_data_mismatch(factory: OrderFactory, field: str) -> None:
    order = factory.fund()
    if field == "terms":
        wrong = replace(order, terms=replace(order.terms, amount=order.terms.amount + 1))
    else:
        wrong = replace(order, state=OrderState(Status.SHIPPED).pack())
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.attest([(wrong, [factory.attestation(order, DELIVERED)])], factory.actors.relayer)


def test_reverts_when_no_attestations(factory: OrderFactory) -> None:
    order = factory.fund()
    with reverts("NoAttestations"):
        factory.escrow.attest([(order, [])], factory.actors.relayer)


@pytest.mark.parametrize("n", [0, 501])
def test_reverts_when_batch_size_invalid(factory: OrderFactory, n: int) -> None:
    order = factory.fund()
    att = factory.attestation(order, SHIPPED)
    with reverts("InvalidBatch", length=n):
        factory.escrow.attest([(order, [att])] * n, factory.actors.relayer)


# ------------------------------------------------------------------ batches


def _mixed_batch(factory: OrderFactory) -> tuple[list[tuple[Order, list[Attestation]]], list[Order]]:
    a = factory.actors
    good1, shipped, good2, bad_sig, strangers = (
        factory.fund(),
        factory.ship(factory.fund()),
        factory.fund(),
        factory.fund(),
        factory.fund(),
    )
    ghost = replace(good1, order_id=b"\x07" * 32)
    sig_short = replace(factory.attestation(bad_sig, SHIPPED), signature=b"\x01" * 64)
    items = [
        (good1, [factory.attestation(good1, SHIPPED)]),
        (shipped, [factory.attestation(shipped, SHIPPED)]),
        (ghost, [factory.attestation(ghost, SHIPPED)]),
        (good2, [factory.attestation(good2, DELIVERED, a.oracle2)]),
        (bad_sig, [sig_short]),
        (strangers, [factory.attestation(strangers, SHIPPED, a.stranger)]),
    ]
    return items, [good1, shipped, ghost, good2, bad_sig, strangers]


def test_non_strict_batch_skips_ineligible_entries_and_advances_others(factory: OrderFactory) -> None:
    a = factory.actors
    items, (good1, shipped, ghost, good2, bad_sig, strangers) = _mixed_batch(factory)
    res = factory.escrow.attest(items, a.relayer, strict=False)

    reasons = {oid: (e.name, e.args_by_name) for oid, e in skipped(factory.chain, res).items()}
    assert reasons == {
        shipped.order_id: ("InvalidStatus", {"orderId": shipped.order_id, "status": Status.SHIPPED}),
        ghost.order_id: ("UnknownOrder", {"orderId": ghost.order_id}),
        bad_sig.order_id: ("MalformedSignature", {"reason": 2}),
        strangers.order_id: ("NotOracle", {"signer": a.stranger.address}),
    }
    assert factory.current(good1).status == Status.SHIPPED
    assert factory.current(good2).status == Status.DELIVERED
    assert factory.current(bad_sig).status == Status.FUNDED
    assert factory.current(strangers).status == Status.FUNDED
    assert [e.args["orderId"] for e in res.named("Attested")] == [good1.order_id, good2.order_id]


def test_strict_batch_reverts_with_first_failing_entry(factory: OrderFactory) -> None:
    items, (good1, shipped, *_rest) = _mixed_batch(factory)
    with reverts("InvalidStatus", orderId=shipped.order_id, status=Status.SHIPPED):
        factory.escrow.attest(items, factory.actors.relayer, strict=True)
    assert factory.current(good1).status == Status.FUNDED


def test_skipped_entry_records_no_partial(factory: OrderFactory) -> None:
    a = factory.actors
    order = _k2(factory)
    atts = [factory.attestation(order, SHIPPED, a.oracle1), factory.attestation(order, SHIPPED, a.stranger)]
    res = factory.escrow.attest([(order, atts)], a.relayer, strict=False)
    assert skipped(factory.chain, res)[order.order_id].name == "NotOracle"
    assert not res.named("Attested")
    assert factory.partial(order, SHIPPED) == 0


def test_same_order_twice_in_a_batch_advances_once(factory: OrderFactory) -> None:
    a = factory.actors
    order = factory.fund()
    items = [
        (order, [factory.attestation(order, SHIPPED, a.oracle1)]),
        (order, [factory.attestation(order, SHIPPED, a.oracle2)]),
    ]
    res = factory.escrow.attest(items, a.relayer, strict=False)
    reason = skipped(factory.chain, res)[order.order_id]
    assert (reason.name, reason.args_by_name) == ("OrderDataMismatch", {"orderId": order.order_id})
    assert len(res.named("OrderShipped")) == 1


@pytest.mark.parametrize("start", [Status.FUNDED, Status.SHIPPED])
def test_reverts_when_deadline_passed_before_a_freeze(factory: OrderFactory, start: Status) -> None:
    """A freeze pauses timers that are still running; it must not revive one that already ran out. Here the
    ship-by (or deliver-by) deadline passes, the buyer may already claim a timeout refund, then a regulator
    freezes the order: an attestation during the freeze must still be refused."""
    a = factory.actors
    order = factory.in_status(start)
    deadline = order.terms.ship_by if start == Status.FUNDED else order.terms.deliver_by
    milestone = SHIPPED if start == Status.FUNDED else DELIVERED
    factory.chain.set_next_block_time(deadline + 3_600)
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"compliance review"))
    order = factory.current(order)
    att = factory.attestation(order, milestone)
    with pytest.raises(ContractRevert) as err:
        factory.escrow.attest([(order, [att])], a.relayer)
    assert (err.value.name, err.value.args_by_name) in [
        ("DeadlinePassed", {"orderId": order.order_id, "deadline": deadline}),
        ("OrderIsFrozen", {"orderId": order.order_id, "frozenUntil": order.decoded.frozen_until}),
    ]
