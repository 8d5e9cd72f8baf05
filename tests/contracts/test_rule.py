"""rule() and submitRuling(): every revert path of `rule`, `submitRuling` and `_rule`, exact ruling splits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.chain.escrow import Order
from app.domain.ids import content_hash
from app.domain.money import BPS, ruling_split
from app.domain.order_state import Status
from tests.factories import DAY, OrderFactory, malleable, recover, reverts

RATIONALE = content_hash(b"ruling rationale v1")


def _disputed(factory: OrderFactory, **overrides: object) -> Order:
    return factory.in_status(Status.DISPUTED, **overrides)


def _deadline(order: Order) -> int:
    disputed_at = order.decoded.disputed_at
    assert disputed_at is not None
    return disputed_at + order.terms.arbitration_seconds


def _sign(
    factory: OrderFactory, order: Order, share: int, *, key: bytes | None = None, valid: int = DAY
) -> tuple[bytes, int]:
    """The arbitrator's (or ``key``'s) Ruling signature, valid for ``valid`` seconds."""
    valid_until = factory.chain.now() + valid
    sig = factory.escrow.sign_ruling(
        key or factory.actors.arbitrator.key, order.order_id, share, RATIONALE, valid_until
    )
    return sig, valid_until


# ------------------------------------------------------------------ splits


#: (buyerShareBps, amount): each amount makes every floor of the split drop a remainder.
SPLIT_CASES = [
    (0, 1_000_003),
    (10_000, 1_000_003),
    (5_000, 1_000_007),
    (3_333, 1_000_003),
]


@pytest.mark.parametrize("relayed", [False, True], ids=["direct", "relayed"])
@pytest.mark.parametrize(("share", "amount"), SPLIT_CASES, ids=[f"{s}bps" for s, _ in SPLIT_CASES])
def test_rules_with_exact_split_and_event(
    factory: OrderFactory, share: int, amount: int, relayed: bool
) -> None:
    a = factory.actors
    order = _disputed(factory, amount=amount)
    refund = amount * share // BPS
    gross = amount - refund
    # the floors are real: no leg divides evenly (except legs that are zero by construction)
    if 0 < share < BPS:
        assert amount * share % BPS != 0
    if gross:
        assert gross * 200 % BPS != 0 and gross * 1000 % BPS != 0

    if relayed:
        sig, valid_until = _sign(factory, order, share)
        res = factory.escrow.submit_ruling(order, share, RATIONALE, valid_until, sig, a.relayer)
    else:
        res = factory.escrow.rule(order, a.arbitrator, share, RATIONALE)

    split = ruling_split(amount, share, 200, 1000)
    assert split.buyer_refund + split.commission + split.tax + split.seller_net == amount
    assert split.buyer_refund == refund
    assert split.commission == gross * 200 // BPS and split.tax == gross * 1000 // BPS
    assert [e.name for e in res.events] == ["DisputeResolved"]
    (ev,) = res.events
    resolved_state = order.decoded.with_status(Status.RESOLVED).pack()
    assert ev.args == {
        "orderId": order.order_id,
        "arbitrator": a.arbitrator.address,
        "state": resolved_state,
        "buyerShareBps": share,
        "rationaleHash": RATIONALE,
        "buyerRefund": split.buyer_refund,
        "commission": split.commission,
        "tax": split.tax,
        "sellerNet": split.seller_net,
    }
    token = factory.token.address
    assert factory.escrow.credit(token, a.buyer.address) == split.buyer_refund
    assert factory.escrow.credit(token, a.treasury.address) == split.commission
    assert factory.escrow.credit(token, a.tax.address) == split.tax
    assert factory.escrow.credit(token, a.seller.address) == split.seller_net
    assert factory.balance(factory.escrow.address) == amount  # credited, not paid out
    assert factory.current(order).state == resolved_state


def test_full_release_ruling_with_zero_tax_credits_no_tax_recipient(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory, amount=999_999, tax_bps=0)
    res = factory.escrow.rule(order, a.arbitrator, 0, RATIONALE)
    split = ruling_split(999_999, 0, 200, 0)
    (ev,) = res.named("DisputeResolved")
    assert (ev.args["buyerRefund"], ev.args["commission"], ev.args["tax"], ev.args["sellerNet"]) == (
        0,
        split.commission,
        0,
        split.seller_net,
    )
    token = factory.token.address
    assert factory.escrow.credit(token, a.seller.address) == split.seller_net
    assert factory.escrow.credit(token, a.treasury.address) == split.commission
    assert factory.escrow.credit(token, a.tax.address) == 0


def test_rules_after_seller_responded(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    factory.escrow.submit_evidence(order, a.seller, content_hash(b"seller reply"))
    order = factory.current(order)
    assert order.decoded.responded
    factory.escrow.rule(order, a.arbitrator, 2_500, RATIONALE)
    assert factory.current(order).status == Status.RESOLVED


# ------------------------------------------------------------------ arbitration deadline


@pytest.mark.parametrize("relayed", [False, True], ids=["direct", "relayed"])
def test_rules_at_exactly_the_arbitration_deadline(factory: OrderFactory, relayed: bool) -> None:
    a = factory.actors
    order = _disputed(factory)
    deadline = _deadline(order)
    sig, valid_until = _sign(factory, order, 5_000, valid=30 * DAY)
    factory.chain.set_next_block_time(deadline)
    if relayed:
        factory.escrow.submit_ruling(order, 5_000, RATIONALE, valid_until, sig, a.relayer)
    else:
        factory.escrow.rule(order, a.arbitrator, 5_000, RATIONALE)
    assert factory.current(order).status == Status.RESOLVED


@pytest.mark.parametrize("relayed", [False, True], ids=["direct", "relayed"])
def test_reverts_one_second_after_the_arbitration_deadline(factory: OrderFactory, relayed: bool) -> None:
    a = factory.actors
    order = _disputed(factory)
    deadline = _deadline(order)
    sig, valid_until = _sign(factory, order, 5_000, valid=30 * DAY)
    factory.chain.set_next_block_time(deadline + 1)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=deadline):
        if relayed:
            factory.escrow.submit_ruling(order, 5_000, RATIONALE, valid_until, sig, a.relayer)
        else:
            factory.escrow.rule(order, a.arbitrator, 5_000, RATIONALE)


def test_arbitration_deadline_uses_the_window_locked_at_funding(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    factory.admin("setDisputeWindows", 3600, 7200)  # much shorter windows for new orders only
    deadline = _deadline(order)
    assert order.terms.arbitration_seconds == 14 * DAY
    factory.chain.set_next_block_time(deadline)
    factory.escrow.rule(order, a.arbitrator, 0, RATIONALE)
    assert factory.current(order).status == Status.RESOLVED


def test_freeze_extends_the_arbitration_deadline(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    deadline = _deadline(order)
    factory.escrow.freeze(order, a.regulator, 2 * DAY, content_hash(b"aml review"))
    order = factory.current(order)
    assert _deadline(order) == deadline + 2 * DAY
    factory.chain.set_next_block_time(deadline + 2 * DAY + 1)
    with reverts("DeadlinePassed", orderId=order.order_id, deadline=deadline + 2 * DAY):
        factory.escrow.rule(order, a.arbitrator, 0, RATIONALE)


def test_rules_at_extended_deadline_after_freeze(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    deadline = _deadline(order)
    factory.escrow.freeze(order, a.regulator, 2 * DAY, content_hash(b"aml review"))
    order = factory.current(order)
    factory.chain.set_next_block_time(deadline + 2 * DAY)
    factory.escrow.rule(order, a.arbitrator, 0, RATIONALE)
    assert factory.current(order).status == Status.RESOLVED


# ------------------------------------------------------------------ who may rule


@pytest.mark.parametrize(
    "caller", ["stranger", "relayer", "admin", "buyer", "seller", "oracle1", "regulator"]
)
def test_reverts_when_caller_is_not_an_arbitrator(factory: OrderFactory, caller: str) -> None:
    order = _disputed(factory)
    acct = getattr(factory.actors, caller)
    with reverts("NotArbitrator", account=acct.address):
        factory.escrow.rule(order, acct, 5_000, RATIONALE)


def test_reverts_when_ruling_is_signed_by_a_stranger(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    sig, valid_until = _sign(factory, order, 10_000, key=a.stranger.key)
    with reverts("NotArbitrator", account=a.stranger.address):
        factory.escrow.submit_ruling(order, 10_000, RATIONALE, valid_until, sig, a.relayer)


def test_reverts_when_relayed_share_differs_from_the_signed_one(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    sig, valid_until = _sign(factory, order, 0)
    msg = {
        "orderId": order.order_id,
        "buyerShareBps": 10_000,
        "rationaleHash": RATIONALE,
        "validUntil": valid_until,
    }
    recovered = recover(factory.digest("Ruling", msg), sig)
    assert recovered != a.arbitrator.address
    with reverts("NotArbitrator", account=recovered):
        factory.escrow.submit_ruling(order, 10_000, RATIONALE, valid_until, sig, a.relayer)


def test_reverts_when_arbitrator_was_removed(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    sig, valid_until = _sign(factory, order, 5_000)
    factory.admin("removeArbitrator", a.arbitrator.address)
    with reverts("NotArbitrator", account=a.arbitrator.address):
        factory.escrow.rule(order, a.arbitrator, 5_000, RATIONALE)
    with reverts("NotArbitrator", account=a.arbitrator.address):
        factory.escrow.submit_ruling(order, 5_000, RATIONALE, valid_until, sig, a.relayer)


def test_new_arbitrator_rules_only_on_orders_funded_once_it_was_active(factory: OrderFactory) -> None:
    """Escrow v2: an arbitrator is bound to orders funded after it became active (as oracles are), so one
    appointed while a dispute is open can never rule on it, not even after its role delay."""
    a = factory.actors
    order = _disputed(factory)
    res = factory.admin("addArbitrator", a.stranger.address)
    (ev,) = res.named("ArbitratorAdded")
    active_from = ev.args["activeFrom"]
    assert active_from == factory.chain.now() + DAY
    assert active_from < _deadline(order)
    sig, valid_until = _sign(factory, order, 5_000, key=a.stranger.key, valid=2 * DAY)

    with reverts("NotArbitrator", account=a.stranger.address):
        factory.escrow.rule(order, a.stranger, 5_000, RATIONALE)
    factory.chain.set_next_block_time(active_from - 1)
    with reverts("NotArbitrator", account=a.stranger.address):
        factory.escrow.submit_ruling(order, 5_000, RATIONALE, valid_until, sig, a.relayer)
    factory.chain.set_next_block_time(active_from)
    with reverts("NotArbitrator", account=a.stranger.address):
        factory.escrow.submit_ruling(order, 5_000, RATIONALE, valid_until, sig, a.relayer)
    with reverts("NotArbitrator", account=a.stranger.address):
        factory.escrow.rule(order, a.stranger, 5_000, RATIONALE)

    # an order funded once it is active is its to rule on; the old dispute stays the old arbitrator's
    later = _disputed(factory)
    res = factory.escrow.rule(later, a.stranger, 5_000, RATIONALE)
    (resolved,) = res.named("DisputeResolved")
    assert resolved.args["arbitrator"] == a.stranger.address
    res = factory.escrow.rule(order, a.arbitrator, 5_000, RATIONALE)
    assert res.named("DisputeResolved")[0].args["arbitrator"] == a.arbitrator.address


def test_re_adding_an_arbitrator_restarts_its_delay(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    factory.admin("removeArbitrator", a.arbitrator.address)
    factory.admin("addArbitrator", a.arbitrator.address)
    with reverts("NotArbitrator", account=a.arbitrator.address):
        factory.escrow.rule(order, a.arbitrator, 5_000, RATIONALE)


def test_not_arbitrator_is_checked_before_status(factory: OrderFactory) -> None:
    order = factory.fund()
    with reverts("NotArbitrator", account=factory.actors.stranger.address):
        factory.escrow.rule(order, factory.actors.stranger, 5_000, RATIONALE)


# ------------------------------------------------------------------ status, freeze, bps


@pytest.mark.parametrize(
    "status",
    [Status.FUNDED, Status.SHIPPED, Status.DELIVERED, Status.RELEASED, Status.REFUNDED, Status.RESOLVED],
)
@pytest.mark.parametrize("relayed", [False, True], ids=["direct", "relayed"])
def test_reverts_when_not_disputed(factory: OrderFactory, status: Status, relayed: bool) -> None:
    a = factory.actors
    order = factory.in_status(status)
    with reverts("InvalidStatus", orderId=order.order_id, status=status):
        if relayed:
            sig, valid_until = _sign(factory, order, 5_000)
            factory.escrow.submit_ruling(order, 5_000, RATIONALE, valid_until, sig, a.relayer)
        else:
            factory.escrow.rule(order, a.arbitrator, 5_000, RATIONALE)


def test_relayed_ruling_cannot_be_replayed(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    sig, valid_until = _sign(factory, order, 0)
    factory.escrow.submit_ruling(order, 0, RATIONALE, valid_until, sig, a.relayer)
    with reverts("OrderDataMismatch", orderId=order.order_id):  # the old state no longer opens the commitment
        factory.escrow.submit_ruling(order, 0, RATIONALE, valid_until, sig, a.relayer)
    resolved = factory.current(order)
    with reverts("InvalidStatus", orderId=order.order_id, status=Status.RESOLVED):
        factory.escrow.submit_ruling(resolved, 0, RATIONALE, valid_until, sig, a.relayer)


@pytest.mark.parametrize("relayed", [False, True], ids=["direct", "relayed"])
def test_reverts_when_frozen(factory: OrderFactory, relayed: bool) -> None:
    a = factory.actors
    order = _disputed(factory)
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"sanctions hit"))
    order = factory.current(order)
    with reverts("OrderIsFrozen", orderId=order.order_id, frozenUntil=order.decoded.frozen_until):
        if relayed:
            sig, valid_until = _sign(factory, order, 5_000)
            factory.escrow.submit_ruling(order, 5_000, RATIONALE, valid_until, sig, a.relayer)
        else:
            factory.escrow.rule(order, a.arbitrator, 5_000, RATIONALE)


def test_rules_once_the_freeze_ran_out(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    factory.escrow.freeze(order, a.regulator, DAY, content_hash(b"sanctions hit"))
    order = factory.current(order)
    factory.chain.set_next_block_time(order.decoded.frozen_until)
    factory.escrow.rule(order, a.arbitrator, 5_000, RATIONALE)
    assert factory.current(order).status == Status.RESOLVED


@pytest.mark.parametrize("bps", [10_001, 65_535])
@pytest.mark.parametrize("relayed", [False, True], ids=["direct", "relayed"])
def test_reverts_when_share_above_10000_bps(factory: OrderFactory, bps: int, relayed: bool) -> None:
    a = factory.actors
    order = _disputed(factory)
    with reverts("InvalidBps", bps=bps):
        if relayed:
            sig, valid_until = _sign(factory, order, bps)
            factory.escrow.submit_ruling(order, bps, RATIONALE, valid_until, sig, a.relayer)
        else:
            factory.escrow.rule(order, a.arbitrator, bps, RATIONALE)


# ------------------------------------------------------------------ order data


def test_reverts_when_order_unknown(factory: OrderFactory) -> None:
    order = _disputed(factory)
    ghost = replace(order, order_id=b"\x42" * 32)
    with reverts("UnknownOrder", orderId=ghost.order_id):
        factory.escrow.rule(ghost, factory.actors.arbitrator, 5_000, RATIONALE)


def test_reverts_when_terms_are_tampered(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    forged = replace(order, terms=replace(order.terms, seller=a.stranger.address))
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.rule(forged, a.arbitrator, 10_000, RATIONALE)
    # the buyer is part of the order's storage key (escrow v2): a forged buyer finds no order at all
    forged = replace(order, terms=replace(order.terms, buyer=a.stranger.address))
    with reverts("UnknownOrder", orderId=order.order_id):
        factory.escrow.rule(forged, a.arbitrator, 10_000, RATIONALE)


def test_order_data_is_checked_before_the_arbitrator(factory: OrderFactory) -> None:
    order = _disputed(factory)
    stale = replace(order, state=order.state ^ 1)
    with reverts("OrderDataMismatch", orderId=order.order_id):
        factory.escrow.rule(stale, factory.actors.stranger, 5_000, RATIONALE)


# ------------------------------------------------------------------ signatures (submitRuling only)


def test_relayed_ruling_valid_until_exactly_now_is_accepted(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    valid_until = factory.chain.now() + 100
    sig = factory.escrow.sign_ruling(a.arbitrator.key, order.order_id, 0, RATIONALE, valid_until)
    factory.chain.set_next_block_time(valid_until)
    factory.escrow.submit_ruling(order, 0, RATIONALE, valid_until, sig, a.relayer)
    assert factory.current(order).status == Status.RESOLVED


def test_reverts_when_relayed_ruling_expired(factory: OrderFactory) -> None:
    a = factory.actors
    order = _disputed(factory)
    valid_until = factory.chain.now() + 100
    sig = factory.escrow.sign_ruling(a.arbitrator.key, order.order_id, 0, RATIONALE, valid_until)
    factory.chain.set_next_block_time(valid_until + 1)
    with reverts("SignatureExpired", validUntil=valid_until, nowTime=valid_until + 1):
        factory.escrow.submit_ruling(order, 0, RATIONALE, valid_until, sig, a.relayer)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda s: s[:64], 2),  # InvalidSignatureLength
        (lambda s: s + b"\x00", 2),
        (malleable, 3),  # InvalidSignatureS
        (lambda s: s[:64] + b"\x00", 1),  # v = 0: ecrecover gives the zero address
    ],
    ids=["short", "long", "malleable", "bad-v"],
)
def test_reverts_when_ruling_signature_malformed(factory: OrderFactory, mangle: object, reason: int) -> None:
    a = factory.actors
    order = _disputed(factory)
    sig, valid_until = _sign(factory, order, 0)
    with reverts("MalformedSignature", reason=reason):
        factory.escrow.submit_ruling(order, 0, RATIONALE, valid_until, mangle(sig), a.relayer)  # type: ignore[operator]


def test_arbitrator_may_still_rule_after_a_silent_sellers_response_window(factory: OrderFactory) -> None:
    """Documents current behaviour: once a silent seller's response window is over, both the buyer's
    ResponseTimeout refund and a ruling are open until the arbitration deadline (whichever lands first wins),
    although the README says each state's own actions close when its timer expires "so no two exits race"."""
    a = factory.actors
    order = _disputed(factory)
    disputed_at = order.decoded.disputed_at
    assert disputed_at is not None
    factory.chain.set_next_block_time(disputed_at + order.terms.response_seconds + 1)
    factory.escrow.rule(order, a.arbitrator, 0, RATIONALE)  # a full release to the seller who never answered
    assert factory.current(order).status == Status.RESOLVED
